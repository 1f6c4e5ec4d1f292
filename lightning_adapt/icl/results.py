"""ICL results: metrics per (task, k, docs, seed), their mean and standard deviation over seeds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.icl.keys import QUERIES, SECONDS, icl_key

_KEYS = ("task", "k", "docs", "seed")


@dataclass
class ICLResults:
    """The outcome of one ICL evaluation."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    """One row per (task, k, docs, seed): ``task``, ``k``, ``docs`` (retrieved documents in the prompt; a row without
    it has none), ``seed`` and each metric's mean over queries, including ``prompt_tokens`` (mean prompt tokens per
    query)."""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    """One record per (task, k, docs, seed, query)."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Evaluation wall-clock seconds per task."""
    queries: dict[str, int] = field(default_factory=dict)
    """Queries scored per ``ICLTask`` (lm-eval tasks: not counted here; they score every document)."""

    def summary(self) -> list[dict[str, Any]]:
        """One row per (task, k, docs): ``task``, ``k``, ``docs``, ``seeds`` and ``{metric: (mean, std)}`` over seeds
        (sample standard deviation; 0.0 for a single seed)."""
        groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        for row in self.rows:
            groups.setdefault((row["task"], row["k"], row.get("docs", 0)), []).append(row)
        summary = []
        for (task, k, docs), rows in groups.items():
            metrics = [name for name in rows[0] if name not in _KEYS]
            stats = {}
            for name in metrics:
                values = [row[name] for row in rows]
                stats[name] = (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
            summary.append({"task": task, "k": k, "docs": docs, "seeds": len(rows), "metrics": stats})
        return summary

    def metrics(self) -> dict[str, float]:
        """Flat logging keys: ``icl/<task>/<metric>@k<K>[d<D>]`` (mean over seeds),
        ``icl/<task>/<metric>_std@k<K>[d<D>]``, ``icl/<task>/seconds`` (see ``keys``) and ``icl/<task>/queries``
        (`QUERIES`)."""
        flat = {}
        for row in self.summary():
            for name, (mean, std) in row["metrics"].items():
                flat[icl_key(row["task"], name, row["k"], docs=row["docs"])] = mean
                flat[icl_key(row["task"], name, row["k"], std=True, docs=row["docs"])] = std
        for task, seconds in self.seconds.items():
            flat[icl_key(task, SECONDS)] = seconds
        for task, count in self.queries.items():
            flat[icl_key(task, QUERIES)] = float(count)
        return flat
