"""The verdict: runs as the report sees them (run), the rules, intervals, the report's numbers (ICL's points, trained
arms, summary, data efficiency), its words (text), plots, the report as blocks (blocks, sections, document) rendered
as report.md (markdown) and report.html (html), the report folder (report) and the `report` command."""
