"""The comparison report: ICL, fine-tuning and continual pretraining runs on one timeline, the six dimensions measured,
the break-even query count, and a recommendation derived from the numbers by stated rules.

A run directory is anything holding one `accounting.json` (written by the `Accounting` callback, or by
`record_evaluation` for compare's ICL-only run) next to a CSV logger's `metrics.csv`, and, where the evaluations
wrote them, per-query predictions (`lightning_adapt.record.predictions`), from which every score gets a bootstrap 95%
interval and every costlier-vs-cheaper step of the recommendation a paired comparison
(`lightning_adapt.verdict.intervals`; without them intervals read n/a and the tolerance rule alone decides), and
every choice (ICL's k and documents, a run's evaluation step, a search's learning rate) is made on the selection part
of the queries while every score is reported on the test part (without predictions naming the parts, on the same
queries, and report.md says so).
`verdict.summary.report_data` computes the report from runs (read by `verdict.run.load_run`, or measured in memory by
`compare`), `write_report` writes `report.md`, `report.json`, `timeline.png`, `cost.png`, `forgetting.png` and
`data.png` (the plots and the Markdown drawn from the JSON's numbers), and `build_report` does both from run folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_adapt.core.atomic import atomic_directory, check_output_dir
from lightning_adapt.verdict.markdown import markdown
from lightning_adapt.verdict.plots import plot_cost, plot_data, plot_forgetting, plot_timeline
from lightning_adapt.verdict.rules import ANSWER_TOKENS, MARGIN, METRIC
from lightning_adapt.verdict.run import load_run
from lightning_adapt.verdict.summary import report_data

REPORT_KIND = "report"


def write_report(
    report: dict[str, Any], out_dir: str | Path, run_dirs: list[str | Path], overwrite: bool, overwrite_hint: str
) -> Path:
    """Write `report` (from `report_data`) as `out_dir/` with report.json, timeline.png, cost.png, forgetting.png,
    data.png and report.md, atomically; `out_dir` must not be, contain or lie inside one of `run_dirs` (see `build_report`)."""
    with atomic_directory(out_dir, REPORT_KIND, run_dirs, overwrite, overwrite_hint) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        plot_timeline(report, staging / "timeline.png")
        plot_cost(report, staging / "cost.png")
        plot_forgetting(report, staging / "forgetting.png")
        plot_data(report, staging / "data.png")
        (staging / "report.md").write_text(markdown(report))
    return Path(out_dir)


def build_report(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] = METRIC,
    answer_tokens: float = ANSWER_TOKENS,
    margin: float = MARGIN,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Compare runs launched by `compare` or separately, and write `out_dir/` with report.md, report.json and its
    plots (atomically: the folder appears complete or not at all). `out_dir` must not
    be, contain or lie inside a run folder; an earlier report there is replaced only with `overwrite`.

    Args:
        run_dirs: Run directories, each holding one accounting.json + metrics.csv (any depth below).
        out_dir: The report folder to write.
        metric: The ICL metric that scores every task (acc, acc_norm, acc_calibrated, exact_match ...), or a mapping
            task -> metric (unlisted tasks: acc).
        answer_tokens: Tokens a query's answer takes (1: a class label decided by its first token), for inference FLOPs.
        margin: A costlier method must beat a cheaper one by more than this (or ICL's std across seeds, if larger),
            and, where predictions were written, distinguishably on the same queries (paired bootstrap).
        extra: More entries for report.json (e.g. the compare configuration).
        overwrite: Replace an earlier report in `out_dir` (never anything else).
        overwrite_hint: How the caller's user says `overwrite` (named in the refusal).
    """
    return report_with_data(run_dirs, out_dir, metric, answer_tokens, margin, extra, overwrite, overwrite_hint)[0]


def report_with_data(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] = METRIC,
    answer_tokens: float = ANSWER_TOKENS,
    margin: float = MARGIN,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> tuple[Path, dict[str, Any]]:
    """`build_report`, also returning the report's data (what report.json holds): the output folder is checked
    before any run is read."""
    check_output_dir(out_dir, REPORT_KIND, run_dirs, overwrite, overwrite_hint)
    report = report_data([load_run(path) for path in run_dirs], metric, answer_tokens, margin, extra)
    return write_report(report, out_dir, run_dirs, overwrite, overwrite_hint), report
