"""How much data training needs to match prompting: each trained arm's chosen test score against the labelled
examples (or domain tokens) it trained on, beside ICL's k-shot test scores at x = k (demonstrations are labelled
examples too), and the interpolated size at which a data-size sweep (`compare`'s ``sweep``) first matches the k-shot
point chosen on the selection part."""

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


def chosen_plain_point(task: dict[str, Any]) -> dict[str, Any]:
    """ICL's point without documents chosen on the selection part (its selection mean, else its mean; ties: fewer
    prompt tokens): labelled examples only, what training data is measured against (every point if all hold
    documents)."""
    points = list(task["icl"]["points"].values())
    plain = [p for p in points if p["docs"] == 0] or points
    return max(plain, key=lambda p: (p["mean"] if p["selection_mean"] is None else p["selection_mean"],
                                     -p["prompt_tokens"]))


def data_efficiency(runs: list[Run], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task: ICL's k-shot points (without documents; test means), each trained arm's chosen score (without
    documents) at its data size, the swept runs grouped into curves (mean and std over subset seeds per size; with one
    seed, the chosen score's 95% interval over queries) and each curve's size to match the test score of the k-shot
    point chosen on the selection part."""
    by_method = {run.method: run for run in runs}
    out = {}
    for name, task in tasks.items():
        target = chosen_plain_point(task)
        curves: dict[str, dict[str, Any]] = {}
        for arm_name, arm in task["arms"].items():
            first = by_method[arm["runs"][0]]
            size = run_size(first)
            if arm["docs"] or arm["chosen"] is None or size is None:
                continue
            unit, amount = size
            of = (first.info.get("sweep") or {}).get("of", arm_name)
            curve = curves.setdefault(of, {"unit": unit, "swept": bool(first.info.get("sweep")), "by_size": {}})
            curve["by_size"].setdefault(amount, []).append(
                {"run": arm_name, "score": arm["chosen"]["score"], "interval": arm["chosen"]["interval"]})
        for curve in curves.values():
            by_size = curve.pop("by_size")
            curve["points"] = [
                {"size": size, "mean": statistics.fmean(r["score"] for r in members),
                 "std": statistics.stdev(r["score"] for r in members) if len(members) > 1 else 0.0,
                 "seeds": len(members), "runs": [r["run"] for r in members],
                 "interval": members[0]["interval"] if len(members) == 1 else None}
                for size, members in sorted(by_size.items())
            ]
            curve["to_match_icl"] = size_to_match([(p["size"], p["mean"]) for p in curve["points"]], target["mean"])
        out[name] = {
            "target": target["mean"], "target_k": target["k"], "target_point": target["label"],
            "icl": [{"k": p["k"], "docs": p["docs"], "mean": p["mean"], "std": p["std"], "interval": p["interval"]}
                    for p in task["icl"]["points"].values() if p["docs"] == 0],
            "curves": curves,
        }
    return out
