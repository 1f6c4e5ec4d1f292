"""A run as the report sees it: its record (`accounting.json`), its metrics by step and its per-query predictions,
read from a finished run's folder (`load_run`) or handed over in memory by the process that measured it
(`measured_run`); and the checks that runs can share one timeline."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_adapt.icl.keys import COSTS_LOGGED, icl_key, parse_icl_key
from lightning_adapt.record.predictions import Outcomes, outcomes, read_predictions
from lightning_adapt.record.runs import RUN_INFO_FILE, TRAIN_FLOPS, TRAIN_TOKENS, WALL_S
from lightning_adapt.verdict.rules import DEFAULT_METRICS, metric_of

METRICS_FILE = "metrics.csv"
TASK_IDENTITY = ("queries", "template", "target", "choices", "generate", "instruction", "target_delimiter",
                 "max_queries", "subsample_seed", "task", "include_path", "limit", "selection", "context")
"""The task fields that must agree between runs (shots, seeds, demonstrations and the context's `top_k` may differ:
trained runs are usually evaluated 0-shot only, and at fewer numbers of documents)."""
FREE_CONTEXT_FIELDS = ("top_k",)
"""The fields of a task's `context` that may differ between runs."""


class ReportError(ValueError):
    """Runs that cannot be compared: missing metrics, different base models or tasks, a method given twice."""


@dataclass
class Run:
    """One run: its `accounting.json` and its logged metrics."""

    path: Path
    log_dir: Path
    info: dict[str, Any]
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    """key -> {step: value}; the last value logged at a step wins."""
    parent: Run | None = None
    predictions: dict[int, list[dict[str, Any]] | None] = field(default_factory=dict, repr=False)
    """step -> the evaluation's per-query predictions (None: none written)."""
    from_folder: bool = True
    """Whether predictions not in `predictions` are read from `log_dir` on first use (a run `load_run` read); a run
    measured in memory holds all of its own."""

    @property
    def method(self) -> str:
        return self.info["method"]

    @property
    def trains(self) -> bool:
        return self.info.get("module") is not None

    @property
    def root(self) -> Run:
        return self.parent.root if self.parent is not None else self

    def last(self, key: str, default: float | None = None) -> float | None:
        values = self.metrics.get(key)
        return values[max(values)] if values else default

    def at(self, key: str, step: int) -> float | None:
        """The value of `key` at the latest step <= `step`."""
        steps = [s for s in self.metrics.get(key, {}) if s <= step]
        return self.metrics[key][max(steps)] if steps else None

    def offset(self, key: str) -> float:
        """What the runs this one continues from had accumulated (CPT before CPT→FT)."""
        return 0.0 if self.parent is None else self.parent.offset(key) + (self.parent.last(key) or 0.0)

    def outcomes(
        self, task: str, metric: str, k: int, step: int, docs: int = 0, part: str | None = None
    ) -> Outcomes | None:
        """`metric`'s per-query values of `task` at `k` shots and `docs` documents in the evaluation at `step`, of
        the queries in `part` (None: every query; see `record.predictions.outcomes`), or None."""
        if step not in self.predictions:
            self.predictions[step] = read_predictions(self.log_dir, step) if self.from_folder else None
        records = self.predictions[step]
        return None if records is None else outcomes(records, task, metric, k, docs, part)


def json_data(value: Any) -> Any:
    """`value` as a JSON file holds it once written and read back (paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def measured_run(
    log_dir: Path,
    info: dict[str, Any],
    metrics: dict[str, dict[int, float]],
    predictions: dict[int, list[dict[str, Any]]],
) -> Run:
    """A run as the process that measured it holds it in memory: the run `load_run(log_dir)` would read back from the
    files its loggers wrote (`info` as accounting.json holds it, the metrics by step, the predictions by step)."""
    return Run(log_dir, log_dir, json_data(info), metrics, predictions=dict(predictions), from_folder=False)


def load_run(path: str | Path) -> Run:
    """Read a run directory (or its log directory) written with the `Accounting` callback.

    Steps are optimizer steps completed when a value was measured: every writer (the modules, ICLEvaluation,
    Accounting) logs at that step.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"Run directory '{path}' does not exist.")
    found = sorted(path.rglob(RUN_INFO_FILE))
    if not found:
        raise ReportError(
            f"'{path}' holds no {RUN_INFO_FILE}: the run was not launched with lightning_adapt's Accounting callback "
            "(add it to the Trainer's callbacks, with ICLEvaluation), so its costs are unknown."
        )
    if len(found) > 1:
        listed = ", ".join(str(p.parent) for p in found)
        raise ReportError(f"'{path}' holds several runs ({listed}); pass the one you mean.")
    log_dir = found[0].parent
    metrics_file = log_dir / METRICS_FILE
    if not metrics_file.is_file():
        raise ReportError(f"'{log_dir}' has {RUN_INFO_FILE} but no {METRICS_FILE}: log the run with a CSVLogger.")
    return Run(path, log_dir, json.loads(found[0].read_text()), read_metrics(metrics_file))


def read_metrics(metrics_file: Path) -> dict[str, dict[int, float]]:
    """A CSV logger's metrics.csv as key -> {step: value} (the last value at a step wins)."""
    metrics: dict[str, dict[int, float]] = {}
    with open(metrics_file, newline="") as fp:
        reader = csv.DictReader(fp)
        columns = reader.fieldnames or []
        if "step" not in columns:
            raise ReportError(
                f"'{metrics_file}' has no 'step' column (its columns: {', '.join(columns) or 'none'}). "
                "The report reads Lightning's CSVLogger format: a 'step' column and one column per logged metric. "
                f"Log the run with a CSVLogger and leave its {METRICS_FILE} as written."
            )
        for row in reader:
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    metrics.setdefault(key, {})[step] = float(value)
    return metrics


def train_file(run: Run) -> dict[str, int] | None:
    """The size of the run's training data, {"examples" | "tokens": how many}, from its record (None when its data
    module did not say)."""
    return (run.info.get("data") or {}).get("train_size") or None


def link_runs(runs: list[Run]) -> None:
    """A run whose base checkpoint is another run's export continues it (CPT→FT)."""
    exports = {run.info.get("export_dir"): run for run in runs if run.info.get("export_dir")}
    for run in runs:
        run.parent = exports.get(run.info.get("checkpoint_dir"))
        if run.parent is run:
            raise ReportError(f"Run '{run.path}' reads its base checkpoint from its own export folder.")


def logged_scores(runs: list[Run], task: str) -> list[str]:
    """The metrics (not `COSTS_LOGGED`) the runs logged for `task` at some k, in order of name."""
    return sorted({parsed.metric for run in runs for parsed in map(parse_icl_key, run.metrics)
                   if parsed and parsed.task == task and parsed.k is not None and not parsed.std
                   and parsed.metric not in COSTS_LOGGED})


def task_metric(runs: list[Run], metric: str | dict[str, str] | None, task: str) -> str:
    """The metric that scores `task` (`rules.metric_of` over what the runs logged for it); refused when `metric` does
    not list the task and it logged none of the default metrics."""
    logged = logged_scores(runs, task)
    chosen = metric_of(metric, task, logged)
    if chosen is None:
        raise ReportError(
            f"Task '{task}' is not listed in `metric` and logged none of the default metrics {list(DEFAULT_METRICS)} "
            f"(it logged: {', '.join(logged) or 'none'}). Name the one to score it with: `metric: {{{task}: NAME}}`."
        )
    return chosen


def check_runs(runs: list[Run], metric: str | dict[str, str] | None) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Refuse runs that cannot share a timeline; return the tasks (name -> spec) and the metric scoring each
    (`task_metric`), having checked that each run logged it."""
    if not runs:
        raise ReportError("No run directories given.")
    _check_one_per_method(runs)
    bases = {}
    for run in runs:
        bases.setdefault(run.root.info.get("checkpoint_dir"), []).append(run.method)
    if len(bases) > 1:
        listed = "; ".join(f"{base} ({', '.join(methods)})" for base, methods in bases.items())
        raise ReportError(f"Runs start from different base models, so they cannot share a timeline: {listed}.")
    for run in runs:
        if not run.info.get("tasks"):
            raise ReportError(f"Run '{run.path}' ({run.method}) evaluated no ICL task: add the ICLEvaluation callback.")
    tasks = agreed_specs(runs, "tasks")
    metrics = {name: task_metric(runs, metric, name) for name in tasks}
    for run in runs:
        _check_metrics(run, tasks, metrics)
    return tasks, metrics


def _check_one_per_method(runs: list[Run]) -> None:
    by_method: dict[str, Run] = {}
    for run in runs:
        if run.method in by_method:
            raise ReportError(
                f"Method '{run.method}' appears twice ('{by_method[run.method].path}' and '{run.path}'); each run "
                "needs its own name (Accounting(method=...))."
            )
        by_method[run.method] = run


def _check_metrics(run: Run, tasks: dict[str, dict[str, Any]], metrics: dict[str, str]) -> None:
    """Refuse a run that did not evaluate every task, or lacks a metric the report needs (its costs, and each task's
    0-shot score, with or without documents)."""
    missing = sorted(set(tasks) - {spec["name"] for spec in run.info.get("tasks", [])})
    if missing:
        raise ReportError(f"Run '{run.path}' ({run.method}) did not evaluate task(s) {missing}; the other runs did.")
    needed = [TRAIN_FLOPS, TRAIN_TOKENS, WALL_S] if run.trains else [WALL_S]
    absent = [key for key in needed if key not in run.metrics]
    for name in tasks:
        scored = metrics[name]
        if not any(parsed and parsed.task == name and parsed.metric == scored and parsed.k == 0 and not parsed.std
                   for parsed in map(parse_icl_key, run.metrics)):
            absent.append(icl_key(name, scored, 0))
    if absent:
        have = sorted({parsed.metric for parsed in map(parse_icl_key, run.metrics) if parsed and parsed.k is not None})
        raise ReportError(
            f"Run '{run.log_dir}' ({run.method}) lacks the metric(s) {absent} in {METRICS_FILE} "
            f"(ICL metrics it has: {have}). Choose the `metric` among those; a run needs the Accounting and "
            "ICLEvaluation callbacks."
        )


def agreed_specs(runs: list[Run], field: str) -> dict[str, dict[str, Any]]:
    """The task specs (name -> spec) the runs' records list under `field` ("tasks" or "general_tasks"); a task that
    differs between runs in a `TASK_IDENTITY` field is refused."""
    specs: dict[str, dict[str, Any]] = {}
    owner: dict[str, Run] = {}
    for run in runs:
        for spec in run.info.get(field, []):
            name = spec["name"]
            if name not in specs:
                specs[name], owner[name] = spec, run
                continue
            for key in TASK_IDENTITY:
                mine, theirs = identity(specs[name], key), identity(spec, key)
                if mine != theirs:
                    raise ReportError(
                        f"Task '{name}' differs between runs: {key} is {mine!r} in "
                        f"'{owner[name].path}' ({owner[name].method}) but {theirs!r} in '{run.path}' ({run.method})."
                    )
    return specs


def identity(spec: dict[str, Any], key: str) -> Any:
    """The value of the `TASK_IDENTITY` field `key` that must agree between runs (a context without its
    `FREE_CONTEXT_FIELDS`)."""
    value = spec.get(key)
    if key == "context" and isinstance(value, dict):
        return {name: setting for name, setting in value.items() if name not in FREE_CONTEXT_FIELDS}
    return value
