"""The runs behind the report: each run's estimate made before it trained beside what it measured, and every run
with what it is, its time spent training and evaluating, and its folder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning_adapt.core.units import format_bytes
from lightning_adapt.verdict.blocks import Block, Heading, Paragraph, Table
from lightning_adapt.verdict.text import flops_text, rate_text, seconds_text, size_text

ESTIMATE_INTRO = ("Each run's estimate, made before it trained from a probe of 2 warm-up + 3 timed real steps "
                  "(`lightning-adapt estimate`), against what it measured (predicted vs measured, relative error).")


def _versus(predicted: float | None, measured: float | None, show: Callable[[float], str]) -> str:
    if predicted is None or measured is None:
        return "n/a"
    ratio = f" ({predicted / measured - 1:+.0%})" if measured else ""
    return f"{show(predicted)} vs {show(measured)}{ratio}"


def estimate_table(report: dict[str, Any]) -> Table | None:
    """The predicted-vs-measured table, one row per run with an estimate (None when no run was estimated)."""
    rows = [
        [r["method"], _versus(r["estimate"]["predicted_peak_bytes"], r["peak_memory_bytes"], format_bytes),
         _versus(r["estimate"]["predicted_train_s"], r["train_seconds"], lambda v: f"{v:,.1f} s"),
         _versus(r["estimate"]["training_flops"], r["training_flops"], flops_text)]
        for r in report["runs"] if r.get("estimate")
    ]
    return Table(["run", "peak memory", "time in training steps", "training FLOPs"], rows) if rows else None


def estimate_section(report: dict[str, Any]) -> list[Block]:
    """The predicted-vs-measured section (nothing when no run was estimated)."""
    table = estimate_table(report)
    return [] if table is None else [Heading("Predicted vs measured"), Paragraph(ESTIMATE_INTRO), table]


def run_details(run: dict[str, Any]) -> str:
    """A run's tier, what it continues, and which search or data-size sweep it belongs to."""
    parts = [run["tier"]]
    if run["continues"]:
        parts.append(f"continues `{run['continues']}`")
    if search := run.get("search"):
        parts.append(f"search of `{search['of']}`: learning rate {rate_text(search['learning_rate'])}, seed "
                     f"{search['seed']}")
    if sweep := run.get("sweep"):
        unit = "examples" if "examples" in sweep else "tokens"
        parts.append(f"data-size sweep of `{sweep['of']}`: {size_text(sweep.get(unit), unit)}, seed {sweep['seed']}")
    return "; ".join(parts)


def padding_text(share: float | None) -> str:
    """The share of a run's computed positions that were padding ("n/a" for a run that trained nothing)."""
    return "n/a" if share is None else f"{share:.0%}"


def runs_section(report: dict[str, Any]) -> list[Block]:
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    rows = [[r["method"], run_details(r), seconds_text(r["train_seconds"]), padding_text(r.get("padding_share")),
             seconds_text(r["eval_seconds"]), seconds_text(r["wall_seconds"]), f"`{r['log_dir']}`"]
            for r in report["runs"]]
    return [Heading("Runs"),
            Table(["run", "what it is", "training (s)", "padding", "evaluating (s)", "wall (s)", "folder"], rows),
            Paragraph(f"Library versions: {versions}. Configurations: report.json (`configs`).")]
