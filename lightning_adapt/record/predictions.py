"""Per-query predictions files: what an evaluation writes beside a run's metrics (``ICLEvaluation``, and
`record_evaluation` for compare's ICL-only run), and the per-query outcomes reports read back from them.

``<log_dir>/icl_predictions/step-<8-digit step>.jsonl`` holds one JSON record per (task, k, documents, seed, query)
with at least ``task``, ``k``, ``seed``, ``query`` (the query's row in its source file; lm-eval's ``doc_id``, with
``lm_eval_task``) and each per-query metric; ``docs`` (retrieved documents in the prompt; absent: 0) and ``part``
(``"selection"`` or ``"test"``, the query's part of its task's held-out split; absent: no split, every query a test
query); ``general_predictions/`` holds those of general-ability tasks.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from lightning_adapt.core.atomic import atomic_write_text
from lightning_adapt.record.runs import RECORD_DIR

PREDICTIONS_DIR = {False: "icl_predictions", True: "general_predictions"}
"""The log-folder subfolder of an evaluation's per-query predictions, by whether its tasks are general-ability ones."""

Outcomes = dict[int, dict[Hashable, float]]
"""One metric's per-query values of one task at one k: seed -> {query: value}."""


def predictions_file(log_dir: str | Path, step: int, general: bool = False) -> Path:
    """Where the predictions of the evaluation at optimizer step `step` go."""
    return Path(log_dir) / PREDICTIONS_DIR[general] / f"step-{step:08d}.jsonl"


def write_predictions(log_dir: str | Path, step: int, records: Iterable[dict[str, Any]], general: bool = False) -> Path:
    """Write `records` as JSON lines into `predictions_file` (atomically); returns the file."""
    path = predictions_file(log_dir, step, general)
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))
    return path


def read_predictions(record_dir: str | Path, step: int) -> list[dict[str, Any]] | None:
    """The ICL predictions of a run's evaluation at `step`, or None when none were written. `record_dir` holds the
    run's accounting.json; when `Accounting` added its own CSV logger (`record/`), the evaluation wrote into the
    folder above."""
    record_dir = Path(record_dir)
    folders = [record_dir] + ([record_dir.parent] if record_dir.name == RECORD_DIR else [])
    path = next((p for p in (predictions_file(f, step) for f in folders) if p.is_file()), None)
    if path is None:
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


SELECTION, TEST = "selection", "test"
"""The parts of a task's queries: choices (k, documents, step, learning rate) are made on the selection part, scores
reported on the test part. A record without ``part`` is a test query."""


def outcomes(
    records: list[dict[str, Any]], task: str, metric: str, k: int, docs: int = 0, part: str | None = None
) -> Outcomes | None:
    """`metric`'s per-query values of `task` at `k` shots and `docs` retrieved documents, of the queries in `part`
    (None: every query), or None when the records hold none (or a non-numeric one). A query is its ``query`` (with
    ``lm_eval_task`` for lm-eval groups); an lm-eval metric named ``<metric>:<filter>`` is read from that filter's
    records."""
    name, _, filter_name = metric.partition(":")
    found: Outcomes = {}
    for record in records:
        if (record.get("task"), record.get("k"), record.get("docs", 0), record.get("filter", "none")) != (
                task, k, docs, filter_name or "none"):
            continue
        if part is not None and record.get("part", TEST) != part:
            continue
        value = record.get(name)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)):
            return None
        found.setdefault(record["seed"], {})[(record.get("lm_eval_task"), record["query"])] = float(value)
    return found or None


def matrix(found: Outcomes, queries: list[Hashable]) -> list[list[float]]:
    """The outcomes as a seeds × queries matrix, columns in the order of `queries` (which every seed must hold)."""
    return [[found[seed][query] for query in queries] for seed in sorted(found)]


def common_queries(*found: Outcomes) -> list[Hashable]:
    """The queries every seed of every outcome set holds, in a fixed order (what paired comparisons match on)."""
    sets = [set(per_seed) for one in found for per_seed in one.values()]
    return sorted(set.intersection(*sets), key=repr) if sets else []
