"""`lightning-adapt report RUN_DIR... --out_dir DIR`: the comparison report of finished runs, read from their folders,
and the recommendation printed."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from lightning_adapt.verdict.report import build_report, report_with_data
from lightning_adapt.verdict.text import recommendation_lines


def report_command(args: list[str]) -> None:
    """Build the comparison report from runs launched separately: `report RUN_DIR... --out_dir DIR`."""
    parser = ArgumentParser(prog="lightning-adapt report", description=report_command.__doc__)
    parser.add_argument("--config", action=ActionConfigFile, help="A YAML with these keys.")
    parser.add_argument("run_dirs", type=Path, nargs="+",
                        help="Run directories (each with accounting.json and metrics.csv).")
    parser.add_function_arguments(build_report, skip={"run_dirs", "extra", "overwrite_hint"}, as_positional=False)
    parsed = parser.parse_args(args)
    out, report = report_with_data(parsed.run_dirs, parsed.out_dir, parsed.metric, parsed.answer_tokens, parsed.margin,
                                   overwrite=parsed.overwrite, overwrite_hint="--overwrite true")
    print(f"Wrote {out / 'report.md'} and {out / 'report.html'} (one page with the plots, for a browser)")
    for line in recommendation_lines(report):
        print(line)
