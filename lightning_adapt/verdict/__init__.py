"""The verdict: reading run records, the rules, intervals, data efficiency, plots and the report."""
