"""The report's sections, each a list of blocks (`verdict.blocks`) drawn from report.json's numbers: the verdict,
how it was decided and the words it uses, the six dimensions, the prompts, data efficiency, forgetting and the runs;
`verdict.document` puts them in order."""
