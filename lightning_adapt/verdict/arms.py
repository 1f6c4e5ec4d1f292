"""The trained arms of a task: one per trained run, one per search (a run trained at several learning rates and
seeds, `info["search"]`), and one per number of documents a run or search was also evaluated with. For each: its
timeline (evaluations that scored a subsample of the queries marked: no choice is made on them), its evaluation step
(and a search's learning rate) chosen on the selection part among the evaluations of every query, its test score and
interval there (a search's over its chosen learning rate's seeds × queries), what it spent up to there (data seen,
FLOPs, training and evaluation seconds), its last evaluation, and against each of ICL's points its paired difference
and break-even query count, with the chosen run's FLOPs and, for a search, with the whole search's; and every metric
the chosen point logged."""

from __future__ import annotations

import statistics
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import GENERATED_TOKENS, PROMPT_TOKENS, icl_key, parse_icl_key
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.predictions import Outcomes
from lightning_adapt.record.runs import EVAL_S, TRAIN_EXAMPLES, TRAIN_FLOPS, TRAIN_S, TRAIN_TOKENS, WALL_S
from lightning_adapt.verdict.points import (
    ICLPoint,
    Scored,
    logged_at,
    outcomes_mean,
    point_scores,
    query_flops,
    score_interval,
    scored,
    subsample_at,
)
from lightning_adapt.verdict.rules import NOT_REACHED, TIERS, Comparison, break_even_queries, compared
from lightning_adapt.verdict.run import Run, train_file
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


COSTS = ("tokens", "flops", "prompt_tokens", "generated_tokens", "examples_seen", "tokens_seen", "train_seconds",
         "eval_seconds", "wall_seconds")
"""A timeline point's costs: training tokens and FLOPs spent so far (with the runs it continues from), the mean
prompt length of a query and the mean tokens generated for one (a generation task's), the run's own training examples
and tokens seen so far, and its seconds so far in training steps, in evaluations (`EVAL_S`, the evaluation at this
step included where logged) and in all (None: not logged)."""


@dataclass(frozen=True)
class RunPoint:
    """One evaluation of a trained run on a task: its step, its scored metric and its `COSTS`."""

    step: int
    scored: Scored
    costs: dict[str, float]
    subsample: dict[str, int] | None = None
    """``{"queries": n, "of": total}`` where the evaluation scored a subsample of the task's queries (`subsample_at`);
    None: every query."""

    @property
    def full(self) -> bool:
        """Whether the evaluation scored every query (choices are made on these only)."""
        return self.subsample is None


def run_timeline(run: Run, task: str, metric: str, docs: int) -> list[RunPoint]:
    """`run`'s 0-shot evaluations of `task` with `docs` documents (step 0 included), with their `COSTS`."""
    return [RunPoint(step, scored(run, task, metric, 0, step, docs), {
        "tokens": (run.at(TRAIN_TOKENS, step) or 0.0) + run.offset(TRAIN_TOKENS),
        "flops": (run.at(TRAIN_FLOPS, step) or 0.0) + run.offset(TRAIN_FLOPS),
        "prompt_tokens": logged_at(run, task, PROMPT_TOKENS, 0, step, docs),
        "generated_tokens": logged_at(run, task, GENERATED_TOKENS, 0, step, docs),
        "examples_seen": run.at(TRAIN_EXAMPLES, step), "tokens_seen": run.at(TRAIN_TOKENS, step),
        "train_seconds": run.at(TRAIN_S, step), "eval_seconds": run.at(EVAL_S, step),
        "wall_seconds": run.at(WALL_S, step),
    }, subsample_at(run, task, step)) for step in sorted(run.metrics.get(icl_key(task, metric, 0, docs=docs), {}))]


def chosen_step(points: list[RunPoint]) -> RunPoint | None:
    """The trained evaluation (step > 0) of every query with the best selection score (ties: the earliest), or
    None."""
    trained = [point for point in points if point.step > 0 and point.full and point.scored.choice is not None]
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


def _total(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(values)


def combined(points: list[RunPoint]) -> tuple[dict[str, Any], Outcomes | None]:
    """Evaluations of the seeds of one configuration as one point: scored over their seeds × queries (the mean of
    their scores without per-query outcomes), costs averaged (None where one lacks it), its `subsample` where one
    scored a subsample; and the stacked test outcomes."""
    test = stacked([point.scored.test for point in points])
    data = {
        "score": outcomes_mean(test) if test else _mean([point.scored.score for point in points]),
        "interval": score_interval(test),
        "selection_score": _mean([point.scored.selection_score for point in points]),
        **{key: _mean([point.costs[key] for point in points]) for key in COSTS},
        "subsample": next((point.subsample for point in points if point.subsample), None),
    }
    return data, test


def averaged_timeline(timelines: list[list[RunPoint]]) -> list[tuple[dict[str, Any], Outcomes | None]]:
    """The seeds' timelines averaged per step (the steps every seed evaluated at), each with its stacked test
    outcomes."""
    steps = sorted(set.intersection(*({point.step for point in timeline} for timeline in timelines)))
    by_step = [{point.step: point for point in timeline} for timeline in timelines]
    averaged = []
    for step in steps:
        data, test = combined([points[step] for points in by_step])
        averaged.append(({"step": step, **data}, test))
    return averaged


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
        "train_seconds": sum(run.last(TRAIN_S, 0.0) for run in group.runs),
        "eval_seconds": _total([run.last(EVAL_S) for run in group.runs]),
        "wall_seconds": sum(run.last(WALL_S, 0.0) for run in group.runs),
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


def chosen_metrics(picked: list[tuple[Run, RunPoint]], task: str, docs: int) -> dict[str, float | None]:
    """Every metric the chosen evaluations (a run's, or each seed's of a search) logged, as the chosen score is
    (`combined`): the mean over their test queries stacked, else the mean of their logged means."""
    names = set.intersection(*(set(point_scores(run, task, 0, point.step, docs)) for run, point in picked))
    found = {}
    for name in sorted(names):
        each = [scored(run, task, name, 0, point.step, docs) for run, point in picked]
        test = stacked([one.test for one in each])
        found[name] = outcomes_mean(test) if test else _mean([one.score for one in each])
    return found


def versus_points(chosen: dict[str, Any], outcomes: Outcomes | None, points: list[ICLPoint]
                  ) -> dict[str, Comparison]:
    """The chosen point's test score minus each ICL point's (by label), paired over the test queries."""
    return {p.label: compared(chosen["score"], outcomes, p.data["mean"], p.scored.test) for p in points}


def break_even(chosen: dict[str, Any], flops: float, docs: int, points: list[ICLPoint],
               versus: dict[str, Comparison], margin: float, config: Config) -> dict[str, int | str | None]:
    """Break-even query counts of a trained point (0-shot with `docs` documents) costing `flops` to train against
    every ICL point, each query paying for its prompt and its own reply (`query_flops`); NOT_REACHED where its score
    is distinguishably below the point's (`versus`, `Comparison.not_worse`). Against the 0-shot prompt with as many
    documents, the trained query's own prompt, only the replies' lengths can differ (their measured prompt lengths
    may differ by a fraction of a token, which is no saving): counted with that prompt's length where both generated,
    else None."""
    def count(point: ICLPoint) -> int | str | None:
        if not versus[point.label].not_worse(margin):
            return NOT_REACHED
        trained = chosen["query_flops"]
        if (point.data["k"], point.data["docs"]) == (0, docs):
            if chosen["generated_tokens"] is None or point.data["generated_tokens"] is None:
                return None
            trained = inference_flops(config, point.data["prompt_tokens"], chosen["generated_tokens"])
        return break_even_queries(flops, trained, point.data["query_flops"])

    return {point.label: count(point) for point in points}


def first_reaching(timeline: list[tuple[dict[str, Any], Outcomes | None]], point: ICLPoint, margin: float
                   ) -> dict[str, Any] | None:
    """The first trained timeline point (step > 0) of every query not distinguishably below `point`'s test score, or
    None."""
    return next((data for data, test in timeline if data["step"] > 0 and data["score"] is not None
                 and data["subsample"] is None
                 and compared(data["score"], test, point.data["mean"], point.scored.test).not_worse(margin)), None)


def build_arm(group: Group, docs: int, task: str, metric: str, config: Config, answer_tokens: float,
              points: list[ICLPoint], best: ICLPoint, margin: float) -> Arm:
    """The arm of `group`'s runs scored with `docs` documents on `task` (see the module docstring)."""
    timelines = {run.method: run_timeline(run, task, metric, docs) for run in group.runs}
    chosen = {method: chosen_step(timeline) for method, timeline in timelines.items()}
    search = None
    members = [run for run in group.runs if timelines[run.method]]
    if group.search is not None:
        rate, search = search_choice(group, chosen)
        members = [run for run in members if run.info["search"].get("learning_rate") == rate]
        members.sort(key=lambda run: run.info["search"].get("seed", 0))
    picked = [(run, point) for run in members if (point := chosen[run.method]) is not None]
    entry, outcomes, versus = None, None, {}
    if picked:
        point, outcomes = combined([p for _, p in picked])
        steps = [p.step for _, p in picked]
        entry = {"step": statistics.median_low(steps), "steps": steps, **point,
                 "query_flops": query_flops(config, point["prompt_tokens"], point["generated_tokens"], answer_tokens),
                 "seeds": len(picked), "all_metrics": chosen_metrics(picked, task, docs)}
        versus = versus_points(entry, outcomes, points)
    timeline = averaged_timeline([timelines[run.method] for run in members]) if members else []
    last = timeline[-1][0] if timeline else None
    data = {
        "runs": [run.method for run in group.runs], "tier": TIERS[tier_of(group.runs[0])], "docs": docs,
        "of": group.of, "timeline": [point for point, _ in timeline], "chosen": entry,
        "last": None if last is None else {key: last[key] for key in ("step", "score", "interval")},
        "train_file": train_file(group.runs[0]),
        "reaches_best_icl": first_reaching(timeline, best, margin),
        "versus": {label: comparison.data for label, comparison in versus.items()},
        "break_even": {} if entry is None else break_even(entry, entry["flops"], docs, points, versus, margin, config),
        "break_even_search": None if entry is None or search is None
        else break_even(entry, search["training_flops"], docs, points, versus, margin, config),
        "search": search,
    }
    unsplit = [method for method, timeline in timelines.items()
               if any(not p.scored.split for p in timeline if p.step > 0 and p.full)]
    return Arm(arm_name(group.of, docs), tier_of(group.runs[0]), data, outcomes, unsplit)


def task_arms(runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float,
              points: list[ICLPoint], best: ICLPoint, margin: float) -> list[Arm]:
    """Every arm of `task`: per group of runs (a run, a search), per number of documents it was scored with."""
    return [build_arm(group, docs, task, metric, config, answer_tokens, points, best, margin)
            for group in groups(runs) for docs in evaluated_docs(group, task, metric)]
