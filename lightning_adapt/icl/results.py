"""ICL results: metrics per (task, k, seed), their mean and standard deviation over seeds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.icl.keys import SECONDS, icl_key

_KEYS = ("task", "k", "seed")


@dataclass
class ICLResults:
    """The outcome of one ICL evaluation."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per (task, k, seed): ``task``, ``k``, ``seed`` and each metric's mean over queries,
    including ``prompt_tokens`` (mean prompt tokens per query)."""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    """One record per (task, k, seed, query)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Evaluation wall-clock seconds per task."""

    def summary(self) -> list[dict[str, Any]]:
        """One row per (task, k): ``task``, ``k``, ``seeds`` and ``{metric: (mean, std)}`` over seeds
        (sample standard deviation; 0.0 for a single seed)."""
        groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in self.rows:
            groups.setdefault((row["task"], row["k"]), []).append(row)
        summary = []
        for (task, k), rows in groups.items():
            metrics = [name for name in rows[0] if name not in _KEYS]
            stats = {}
            for name in metrics:
                values = [row[name] for row in rows]
                stats[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
            summary.append({"task": task, "k": k, "seeds": len(rows), "metrics": stats})
        return summary

    def metrics(self) -> dict[str, float]:
        """Flat logging keys: ``icl/<task>/<metric>@k<K>`` (mean over seeds), ``icl/<task>/<metric>_std@k<K>``
        and ``icl/<task>/seconds``."""
        flat = {}
        for row in self.summary():
            for name, (mean, std) in row["metrics"].items():
                flat[icl_key(row["task"], name, row["k"])] = mean
                flat[icl_key(row["task"], name, row["k"], std=True)] = std
        for task, seconds in self.seconds.items():
            flat[icl_key(task, SECONDS)] = seconds
        return flat
