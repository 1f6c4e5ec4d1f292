"""The trained arms of a task: one per trained run, one per search (a run trained at several learning rates and
seeds, `info["search"]`), and one per number of documents a run or search was also evaluated with. For each: its
timeline, its evaluation step (and a search's learning rate) chosen on the selection part, its test score and
interval there (a search's over its chosen learning rate's seeds × queries), and its break-even query counts against
ICL's points, with the chosen run's FLOPs and, for a search, with the whole search's."""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import PROMPT_TOKENS, icl_key, parse_icl_key
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.predictions import Outcomes
from lightning_adapt.record.runs import TRAIN_FLOPS, TRAIN_S, TRAIN_TOKENS, WALL_S
from lightning_adapt.verdict.points import ICLPoint, Scored, outcomes_mean, score_interval, scored
from lightning_adapt.verdict.rules import NOT_REACHED, TIERS, break_even_queries, first_reaching
from lightning_adapt.verdict.run import Run
from lightning_adapt.verdict.text import arm_name


def tier_of(run: Run) -> int:
    """0: no training; 1: fine-tuning; 2: continual pretraining (or a run continuing one)."""
    if not run.trains:
        return 0
    cpt = "ContinualPretraining" in run.info["module"] or (run.parent is not None and tier_of(run.parent) == 2)
    return 2 if cpt else 1


@dataclass(frozen=True)
class Group:
    """The runs one arm is made of: one trained run, or every run of a search."""

    of: str
    runs: list[Run]

    @property
    def search(self) -> dict[str, Any] | None:
        return self.runs[0].info.get("search")


def groups(runs: list[Run]) -> list[Group]:
    """The trained runs grouped into arms: a search's runs (by `info["search"]["of"]`) together, others alone."""
    found: dict[str, list[Run]] = {}
    for run in runs:
        if run.trains:
            found.setdefault((run.info.get("search") or {}).get("of", run.method), []).append(run)
    return [Group(of, members) for of, members in found.items()]


COSTS = ("tokens", "flops", "prompt_tokens")
"""A timeline point's costs: training tokens and FLOPs spent so far, the mean prompt length of a query."""


@dataclass(frozen=True)
class RunPoint:
    """One evaluation of a trained run on a task: its step, its scored metric and its `COSTS`."""

    step: int
    scored: Scored
    costs: dict[str, float]


def run_timeline(run: Run, task: str, metric: str, docs: int) -> list[RunPoint]:
    """`run`'s 0-shot evaluations of `task` with `docs` documents (step 0 included), with the training tokens and
    FLOPs spent so far (the runs it continues from included) and the mean prompt length."""
    return [RunPoint(step, scored(run, task, metric, 0, step, docs), {
        "tokens": (run.at(TRAIN_TOKENS, step) or 0.0) + run.offset(TRAIN_TOKENS),
        "flops": (run.at(TRAIN_FLOPS, step) or 0.0) + run.offset(TRAIN_FLOPS),
        "prompt_tokens": run.metrics[icl_key(task, PROMPT_TOKENS, 0, docs=docs)][step],
    }) for step in sorted(run.metrics.get(icl_key(task, metric, 0, docs=docs), {}))]


def chosen_step(points: list[RunPoint]) -> RunPoint | None:
    """The trained evaluation (step > 0) with the best selection score (ties: the earliest), or None."""
    trained = [point for point in points if point.step > 0 and point.scored.choice is not None]
    return max(trained, key=lambda point: (point.scored.choice, -point.step)) if trained else None


def stacked(found: list[Outcomes | None]) -> Outcomes | None:
    """Several runs' outcomes as one seeds × queries set (each run's seeds a row of their own), or None when one
    lacks them."""
    if not found or any(one is None for one in found):
        return None
    rows: dict[int, dict[Hashable, float]] = {}
    for one in found:
        for seed in sorted(one):
            rows[len(rows)] = one[seed]
    return rows


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.fmean(values)


def combined(points: list[RunPoint]) -> tuple[dict[str, Any], Outcomes | None]:
    """Evaluations of the seeds of one configuration as one point: scored over their seeds × queries (the mean of
    their scores without per-query outcomes), costs averaged; and the stacked test outcomes."""
    test = stacked([point.scored.test for point in points])
    data = {
        "score": outcomes_mean(test) if test else _mean([point.scored.score for point in points]),
        "interval": score_interval(test),
        "selection_score": _mean([point.scored.selection_score for point in points]),
        **{key: statistics.fmean(point.costs[key] for point in points) for key in COSTS},
    }
    return data, test


def averaged_timeline(timelines: list[list[RunPoint]]) -> list[dict[str, Any]]:
    """The seeds' timelines averaged per step (the steps every seed evaluated at)."""
    steps = sorted(set.intersection(*({point.step for point in timeline} for timeline in timelines)))
    by_step = [{point.step: point for point in timeline} for timeline in timelines]
    return [{"step": step, **combined([points[step] for points in by_step])[0]} for step in steps]


def search_choice(group: Group, chosen: dict[str, RunPoint | None]) -> tuple[Any, dict[str, Any]]:
    """A search's learning rate chosen on the selection part: the highest mean over its seeds of each seed's
    selection score at its own chosen step (ties: the smaller learning rate); and report.json's `search` entry
    (the whole search's costs: every run's own, plus once what the run they continue from spent)."""
    search = group.search
    rates = sorted({run.info["search"].get("learning_rate") for run in group.runs},
                   key=lambda rate: (rate is None, rate or 0))
    configurations = []
    for rate in rates:
        members = [run for run in group.runs if run.info["search"].get("learning_rate") == rate]
        choices = [point.scored.choice for run in members if (point := chosen[run.method]) is not None]
        configurations.append({"learning_rate": rate, "runs": [run.method for run in members],
                               "selection_mean": statistics.fmean(choices) if choices else None})
    candidates = [c for c in configurations if c["selection_mean"] is not None]
    best = max(candidates, key=lambda c: c["selection_mean"])["learning_rate"] if candidates else None
    return best, {
        "of": search.get("of"), "learning_rates": search.get("learning_rates"), "seeds": search.get("seeds"),
        "chosen_learning_rate": best, "configurations": configurations, "runs": len(group.runs),
        "training_flops": sum(run.last(TRAIN_FLOPS, 0.0) for run in group.runs) + group.runs[0].offset(TRAIN_FLOPS),
        "train_s": sum(run.last(TRAIN_S, 0.0) for run in group.runs),
        "wall_s": sum(run.last(WALL_S, 0.0) for run in group.runs),
    }


@dataclass(frozen=True)
class Arm:
    """One arm of a task: its name, tier, report.json entry, its chosen point's test outcomes (for paired
    comparisons; None without predictions) and the runs whose choices had no selection part to be made on."""

    name: str
    tier: int
    data: dict[str, Any]
    outcomes: Outcomes | None
    unsplit: list[str]


def evaluated_docs(group: Group, task: str, metric: str) -> list[int]:
    """The numbers of documents the group's runs were scored 0-shot with on `task`."""
    return sorted({icl.docs for run in group.runs for key in run.metrics if (icl := parse_icl_key(key))
                   and (icl.task, icl.metric, icl.k, icl.std) == (task, metric, 0, False)})


def break_even(chosen: dict[str, Any], flops: float, points: list[ICLPoint], tolerance: float) -> dict[str, Any]:
    """Break-even query counts of a trained point costing `flops` to train against every prompted ICL point (k > 0
    or documents); NOT_REACHED where its score stays below the point's by more than `tolerance`."""
    return {point.label: break_even_queries(flops, chosen["query_flops"], point.data["query_flops"])
            if chosen["score"] >= point.data["mean"] - tolerance else NOT_REACHED
            for point in points if point.prompted}


def build_arm(group: Group, docs: int, task: str, metric: str, config: Config, answer_tokens: float,
              points: list[ICLPoint], best: ICLPoint, tolerance: float) -> Arm:
    """The arm of `group`'s runs scored with `docs` documents on `task` (see the module docstring)."""
    timelines = {run.method: run_timeline(run, task, metric, docs) for run in group.runs}
    chosen = {method: chosen_step(timeline) for method, timeline in timelines.items()}
    search = None
    members = [run for run in group.runs if timelines[run.method]]
    if group.search is not None:
        rate, search = search_choice(group, chosen)
        members = [run for run in members if run.info["search"].get("learning_rate") == rate]
        members.sort(key=lambda run: run.info["search"].get("seed", 0))
    picked = [chosen[run.method] for run in members if chosen[run.method] is not None]
    entry = None
    outcomes = None
    if picked:
        point, outcomes = combined(picked)
        steps = [p.step for p in picked]
        entry = {"step": statistics.median_low(steps), "steps": steps, **point,
                 "query_flops": inference_flops(config, point["prompt_tokens"], answer_tokens), "seeds": len(picked)}
    timeline = averaged_timeline([timelines[run.method] for run in members]) if members else []
    trained = [p for p in timeline if p["step"] > 0 and p["score"] is not None]
    data = {
        "runs": [run.method for run in group.runs], "tier": TIERS[tier_of(group.runs[0])], "docs": docs,
        "of": group.of, "timeline": timeline, "chosen": entry,
        "reaches_best_icl": first_reaching(trained, best.data["mean"]),
        "break_even": {} if entry is None else break_even(entry, entry["flops"], points, tolerance),
        "break_even_search": None if entry is None or search is None
        else break_even(entry, search["training_flops"], points, tolerance),
        "search": search,
    }
    unsplit = [method for method, timeline in timelines.items()
               if any(not p.scored.split for p in timeline if p.step > 0)]
    return Arm(arm_name(group.of, docs), tier_of(group.runs[0]), data, outcomes, unsplit)


def task_arms(runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float,
              points: list[ICLPoint], best: ICLPoint, tolerance: float) -> list[Arm]:
    """Every arm of `task`: per group of runs (a run, a search), per number of documents it was scored with."""
    return [build_arm(group, docs, task, metric, config, answer_tokens, points, best, tolerance)
            for group in groups(runs) for docs in evaluated_docs(group, task, metric)]
