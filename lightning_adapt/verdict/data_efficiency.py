"""How much data training needs to match prompting: each trained run's best score against the labelled examples (or
domain tokens) it trained on, beside ICL's k-shot scores at x = k (demonstrations are labelled examples too), and the
interpolated size at which a data-size sweep (`compare`'s ``sweep``) first matches the best k-shot score."""

from __future__ import annotations

import math
import statistics
from typing import Any

from lightning_adapt.verdict.run import Run

REACHED, SMALLEST, NOT_REACHED = "reached", "reached at the smallest size", "not reached within the sweep"


def size_to_match(points: list[tuple[float, float]], target: float) -> dict[str, Any]:
    """The size at which a curve of (size, score) points, sizes increasing, first reaches `target`: interpolated
    linearly in log(size) between the last size below and the first size at or above it. ``{"status", "size"}``:
    REACHED with the interpolated size, SMALLEST with the smallest size (the crossing lies at or below it), or
    NOT_REACHED with None."""
    for index, (size, score) in enumerate(points):
        if score < target:
            continue
        if index == 0:
            return {"status": SMALLEST, "size": size}
        low, low_score = points[index - 1]
        fraction = (target - low_score) / (score - low_score)
        return {"status": REACHED, "size": math.exp(math.log(low) + fraction * (math.log(size) - math.log(low)))}
    return {"status": NOT_REACHED, "size": None}


def run_size(run: Run) -> tuple[str, int] | None:
    """("examples" | "tokens", how many) the run trained on, from its record (None when its data module did not say)."""
    size = (run.info.get("data") or {}).get("train_size")
    return next(iter(size.items())) if size else None


def data_efficiency(runs: list[Run], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task: ICL's k-shot points, each trained run's best score at its data size, the swept runs grouped into
    curves (mean and std over subset seeds per size; with one seed, the best score's 95% interval over queries) and
    each curve's size to match ICL's best k-shot score."""
    out = {}
    for name, task in tasks.items():
        target = task["icl_best"]["mean"]
        curves: dict[str, dict[str, Any]] = {}
        for run in runs:
            best = (task["methods"].get(run.method) or {}).get("best")
            size = run_size(run)
            if best is None or size is None:
                continue
            unit, amount = size
            of = (run.info.get("sweep") or {}).get("of", run.method)
            curve = curves.setdefault(of, {"unit": unit, "swept": bool(run.info.get("sweep")), "by_size": {}})
            curve["by_size"].setdefault(amount, []).append(
                {"run": run.method, "score": best["score"], "interval": best.get("interval")})
        for curve in curves.values():
            by_size = curve.pop("by_size")
            curve["points"] = [
                {"size": size, "mean": statistics.fmean(r["score"] for r in members),
                 "std": statistics.stdev(r["score"] for r in members) if len(members) > 1 else 0.0,
                 "seeds": len(members), "runs": [r["run"] for r in members],
                 "interval": members[0]["interval"] if len(members) == 1 else None}
                for size, members in sorted(by_size.items())
            ]
            curve["to_match_icl"] = size_to_match([(p["size"], p["mean"]) for p in curve["points"]], target)
        out[name] = {
            "target": target, "target_k": task["icl_best"]["k"],
            "icl": [{"k": int(k), "mean": v["mean"], "std": v["std"], "interval": v.get("interval")}
                    for k, v in task["icl"]["shots"].items()],
            "curves": curves,
        }
    return out
