"""The verdict: runs as the report sees them (run), the rules, intervals, the report's numbers (ICL's points, trained
arms, summary, data efficiency), its words, plots and report.md, the report folder (report) and the `report` command."""
