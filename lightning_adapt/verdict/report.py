"""The comparison report: ICL, fine-tuning and continual pretraining runs on one timeline, the six dimensions measured,
the break-even query count, and a recommendation derived from the numbers by stated rules.

A run directory is anything holding one `accounting.json` (written by the `Accounting` callback, or by
`record_evaluation` for compare's ICL-only run) next to a CSV logger's `metrics.csv`, and, where the evaluations
wrote them, per-query predictions (`lightning_adapt.record.predictions`), from which every score gets a bootstrap 95%
interval and every costlier-vs-cheaper step of the recommendation a paired comparison
(`lightning_adapt.verdict.intervals`; without them intervals read n/a and the means decide, by the margin), and
every choice (ICL's k and documents, a run's evaluation step, a search's learning rate) is made on the selection part
of the queries while every score is reported on the test part (without predictions naming the parts, on the same
queries, and report.md says so).
`verdict.summary.report_data` computes the report from runs (read by `verdict.run.load_run`, or measured in memory by
`compare`), `write_report` writes `report.json`, the plots that have something to show (`timeline.png`, `cost.png`,
`forgetting.png`, `data.png`), and `report.md` and the self-contained `report.html` (both drawn from the JSON's
numbers), and `build_report` does both from run folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning_adapt.core.atomic import atomic_directory, check_output_dir
from lightning_adapt.verdict.document import document
from lightning_adapt.verdict.html import page
from lightning_adapt.verdict.markdown import markdown
from lightning_adapt.verdict.plots import PLOTS, drawn_plots
from lightning_adapt.verdict.rules import ANSWER_TOKENS, MARGIN
from lightning_adapt.verdict.run import load_run
from lightning_adapt.verdict.summary import report_data

REPORT_KIND = "report"


def write_report(
    report: dict[str, Any], out_dir: str | Path, run_dirs: list[str | Path], overwrite: bool, overwrite_hint: str
) -> Path:
    """Write `report` (from `report_data`) as `out_dir/` with report.json, the plots that have something to show
    (`drawn_plots`), report.md and report.html, atomically; `out_dir` must not be, contain or lie inside one of
    `run_dirs` (see `build_report`)."""
    with atomic_directory(out_dir, REPORT_KIND, run_dirs, overwrite, overwrite_hint) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        pictures = drawn_plots(report)
        for name in pictures:
            PLOTS[name](report, staging / name)
        blocks = document(report, pictures)
        (staging / "report.md").write_text(markdown(blocks))
        (staging / "report.html").write_text(page(blocks, staging))
    return Path(out_dir)


def build_report(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] | None = None,
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
        metric: The ICL metric that scores every task (acc, acc_norm, acc_calibrated, exact_match, checks, chrf ...),
            or a mapping task -> metric (None, or a task the mapping leaves out: the first it logged of
            `rules.DEFAULT_METRICS`: acc, else checks, exact_match, contains, chrf, rougeL, response_logprob).
        answer_tokens: Tokens a query's answer takes (1: a class label decided by its first token), for inference FLOPs;
            where an evaluation logged the tokens it generated (a generation task), their mean instead.
        margin: A costlier method must score more than this above a cheaper one and, where predictions were
            written, the 95% interval of their paired difference on the same test queries must lie above 0 (without
            predictions the margin on the means alone decides).
        extra: More entries for report.json (e.g. the compare configuration).
        overwrite: Replace an earlier report in `out_dir` (never anything else).
        overwrite_hint: How the caller's user says `overwrite` (named in the refusal).
    """
    return report_with_data(run_dirs, out_dir, metric, answer_tokens, margin, extra, overwrite, overwrite_hint)[0]


def report_with_data(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] | None = None,
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
