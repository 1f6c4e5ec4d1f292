"""How much data training needs to match prompting: the trained arms' test scores against the labelled examples (or
domain tokens) they used up to an evaluation (what they saw, at most the training file's size), beside ICL's k-shot
test scores at x = k (demonstrations are labelled examples too), and the interpolated size at which a curve (a
data-size sweep, `compare`'s ``sweep``, or one run's evaluations) first matches the ICL point it is measured
against."""

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


def used(seen: float | None, file_size: int) -> float:
    """The labelled examples (or tokens) training used: what it saw, at most the training file (repeated epochs see
    the same examples again); the file size where the run did not log what it saw."""
    return file_size if seen is None else min(seen, file_size)


def chosen_plain_point(task: dict[str, Any]) -> dict[str, Any]:
    """The ICL point training data is measured against: the baseline when it holds labelled examples only (no
    documents), else the point without documents with the best selection mean (else mean; ties: fewer prompt tokens),
    every point if all hold documents."""
    points = task["icl"]["points"]
    if points[task["baseline"]]["docs"] == 0:
        return points[task["baseline"]]
    plain = [p for p in points.values() if p["docs"] == 0] or list(points.values())
    return max(plain, key=lambda p: (p["mean"] if p["selection_mean"] is None else p["selection_mean"],
                                     -p["prompt_tokens"]))


def timeline_curve(name: str, arm: dict[str, Any], unit: str, file_size: int) -> list[dict[str, Any]]:
    """One run's (or search's) data curve: each trained evaluation's test score at the data used up to it (with its
    `subsample` where it scored a subsample of the queries)."""
    return [{"size": used(p[f"{unit}_seen"], file_size), "seen": p[f"{unit}_seen"], "file_size": file_size,
             "step": p["step"], "mean": p["score"], "std": 0.0, "seeds": arm["chosen"]["seeds"], "runs": [name],
             "interval": p["interval"], "subsample": p.get("subsample")}
            for p in arm["timeline"] if p["step"] > 0 and p["score"] is not None]


def sweep_points(by_size: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A sweep's curve: per training-file size its runs' chosen test scores (mean and std over subset seeds; with
    one seed, the score's 95% interval over queries) at the data they used."""
    return [{"size": statistics.fmean(r["size"] for r in members),
             "seen": None if any(r["seen"] is None for r in members) else statistics.fmean(r["seen"] for r in members),
             "file_size": size, "mean": statistics.fmean(r["score"] for r in members),
             "std": statistics.stdev(r["score"] for r in members) if len(members) > 1 else 0.0,
             "seeds": len(members), "runs": [r["run"] for r in members],
             "interval": members[0]["interval"] if len(members) == 1 else None}
            for size, members in sorted(by_size.items())]


def data_efficiency(runs: list[Run], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task: ICL's k-shot points (without documents; test means), and the trained arms' (without documents)
    test scores against the labelled examples (or tokens) they used (`used`): a data-size sweep's runs as one curve
    (one point per training-file size, at each run's chosen evaluation), any other arm as the curve of its own
    evaluations; and each curve's size to match the test score of the ICL point training is measured against
    (`chosen_plain_point`), from its evaluations of every query (not those of a subsample)."""
    by_method = {run.method: run for run in runs}
    out = {}
    for name, task in tasks.items():
        target = chosen_plain_point(task)
        curves: dict[str, dict[str, Any]] = {}
        swept: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for arm_name, arm in task["arms"].items():
            first = by_method[arm["runs"][0]]
            if arm["docs"] or arm["chosen"] is None or not arm["train_file"]:
                continue
            ((unit, amount),) = arm["train_file"].items()
            sweep = first.info.get("sweep")
            of = sweep["of"] if sweep else arm_name
            curve = curves.setdefault(of, {"unit": unit, "swept": bool(sweep), "points": []})
            if not sweep:
                curve["points"] = timeline_curve(arm_name, arm, unit, amount)
                continue
            seen = arm["chosen"][f"{unit}_seen"]
            swept.setdefault(of, {}).setdefault(amount, []).append(
                {"run": arm_name, "score": arm["chosen"]["score"], "interval": arm["chosen"]["interval"],
                 "seen": seen, "size": used(seen, amount)})
        for of, by_size in swept.items():
            curves[of]["points"] = sweep_points(by_size)
        for curve in curves.values():
            ordered = sorted((p for p in curve["points"] if not p.get("subsample")), key=lambda p: p["size"])
            curve["to_match_icl"] = size_to_match([(p["size"], p["mean"]) for p in ordered], target["mean"])
        out[name] = {
            "target": target["mean"], "target_k": target["k"], "target_point": target["label"],
            "icl": [{"k": p["k"], "docs": p["docs"], "mean": p["mean"], "std": p["std"], "interval": p["interval"]}
                    for p in task["icl"]["points"].values() if p["docs"] == 0],
            "curves": curves,
        }
    return out
