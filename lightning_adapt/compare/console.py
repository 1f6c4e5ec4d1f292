"""What `compare` prints while it runs: one line per phase (what ran, its budget, its last scores)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_adapt.estimate import PROBE_STEPS, WARMUP_STEPS, TrainingEstimate
from lightning_adapt.core.units import format_bytes
from lightning_adapt.icl.keys import COSTS_LOGGED, PREFIX, parse_icl_key
from lightning_adapt.methods.outputs import try_commands
from lightning_adapt.techniques import Technique
from lightning_adapt.record.runs import EVAL_S, TRAIN_FLOPS, TRAIN_S, TRAIN_TOKENS
from lightning_adapt.verdict.run import Run


def say(message: str) -> None:
    print(f"[compare] {message}", flush=True)


def search_words(search: dict[str, Any]) -> str:
    """Which run of a search a run is: its learning rate and seed, and the search's name and size."""
    runs = len(search["learning_rates"]) * len(search["seeds"])
    return (f"learning rate {search['learning_rate']:g}, seed {search['seed']}; one of {runs} runs of the search of "
            f"{search['of']}")


def estimate_announcement(name: str) -> str:
    """Said before a run's estimate: what the seconds before its first step go to."""
    return (f"{name}: estimating its time and memory first: a probe of {WARMUP_STEPS} warm-up + {PROBE_STEPS} timed "
            "steps and one held-out evaluation (compare --estimate false skips it)")


def estimate_line(name: str, estimate: TrainingEstimate) -> str:
    """What a run's estimate predicts, and what it took."""
    validation = "" if estimate.predicted_val_s is None else (
        f" + {estimate.predicted_val_s:.1f} s of held-out evaluation")
    return (f"{name}: estimated in {estimate.probe_s:.1f} s: {estimate.predicted_train_s:.1f} s of training"
            f"{validation} (ICL evaluations not included), peak memory {format_bytes(estimate.predicted_peak_bytes)}")


def phase_line(run: Run, seconds: float) -> str:
    """One line per phase: what ran (which run of a search), its budget, where its time went and its last scores
    (`seconds`: the whole phase, an estimate made before the run included)."""
    scores = ", ".join(
        f"{key.removeprefix(PREFIX)} {values[max(values)]:.3f}"
        for key, values in sorted(run.metrics.items())
        if (icl := parse_icl_key(key)) and icl.k is not None and not icl.std and icl.metric not in COSTS_LOGGED
    )
    if not run.trains:
        return f"{run.method}: base model evaluated in {seconds:.1f} s — {scores}"
    search = run.info.get("search")
    name = run.method if search is None else f"{run.method} ({search_words(search)})"
    spent = ", ".join(f"{what} {run.last(key):.1f} s" for what, key in (("training", TRAIN_S), ("evaluation", EVAL_S))
                      if run.last(key) is not None)
    return (f"{name}: {run.last(TRAIN_TOKENS, 0):,.0f} tokens, {run.last(TRAIN_FLOPS, 0):.3g} FLOPs, "
            f"{seconds:.1f} s{f' ({spent})' if spent else ''} — last evaluation: {scores}")


def outputs_lines(runs_dir: Path, report_dir: Path, runs: list[Run], techniques: dict[str, Technique | None],
                  recommended: list[str], prompt: str | None) -> list[str]:
    """The console's last lines: where the report and the runs are, and the commands that try a trained model (the
    first `recommended` run that wrote a final/, else the first trained run that did; `techniques`: each trained
    run's, by name)."""
    lines = [f"report: {report_dir / 'report.html'} (report.md, report.json and the pictures beside it)",
             f"runs: {runs_dir}/<run>/ (each: logs/version_*/metrics.csv and accounting.json; final/ when exported)"]
    exported = {run.method: Path(run.info["export_dir"]) for run in runs if run.info.get("export_dir")}
    if not exported:
        return [*lines, "no run wrote a final/ checkpoint to try (export: false); set export: true to get them"]
    name = next((name for name in recommended if name in exported), next(iter(exported)))
    commands = try_commands(exported[name], techniques.get(name), *([] if prompt is None else [prompt]))
    return [*lines, f"try {name}'s trained model: {commands[0]}", *(f"  or: {command}" for command in commands[1:])]
