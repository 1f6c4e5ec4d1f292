"""One evaluated point chosen on the selection part and scored on the test part: a point's per-query outcomes split
by part (`Scored`, falling back to every query, or to the logged mean, where the run wrote no predictions with a
`part`), the base model's ICL points, one per (k, documents) evaluated (`icl_points`), and the prompt chosen among
them on the selection part (`chosen_prompt`)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import (
    COSTS_LOGGED, GENERATED_TOKENS, HIT, PROMPT_TOKENS, QUERIES, SECONDS, icl_key, parse_icl_key, point_label,
)
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.predictions import SELECTION, TEST, Outcomes, common_queries, matrix
from lightning_adapt.verdict.intervals import seeds_queries_interval
from lightning_adapt.verdict.rules import compared
from lightning_adapt.verdict.run import ReportError, Run


def usable(found: Outcomes | None) -> Outcomes | None:
    """`found`, or None when it is None or its seeds share no query."""
    return found if found and common_queries(found) else None


def outcomes_mean(found: Outcomes) -> float:
    """The mean of a seeds × queries outcome set over the queries every seed holds."""
    return statistics.fmean(value for row in matrix(found, common_queries(found)) for value in row)


def outcomes_std(found: Outcomes) -> float:
    """The standard deviation over seeds of each seed's mean (0 with one seed)."""
    means = [statistics.fmean(row) for row in matrix(found, common_queries(found))]
    return statistics.stdev(means) if len(means) > 1 else 0.0


def score_interval(found: Outcomes | None) -> list[float] | None:
    """The bootstrap 95% interval [low, high] of a score from its per-query outcomes (seeds and queries resampled),
    or None without them."""
    if usable(found) is None:
        return None
    return list(seeds_queries_interval(matrix(found, common_queries(found))))


@dataclass(frozen=True)
class Scored:
    """One metric of one (task, k, documents) point in one evaluation."""

    test: Outcomes | None
    """The per-query values the score is reported on: the test part's, every query's when the predictions name no
    part; None without predictions."""
    selection: Outcomes | None
    """The selection part's per-query values; None when there is no selection part to choose on."""
    logged: float | None
    """The logged mean over every query."""
    logged_std: float | None = None

    @property
    def split(self) -> bool:
        """Whether choices can be made on queries the score is not reported on."""
        return self.selection is not None

    @property
    def score(self) -> float | None:
        return outcomes_mean(self.test) if self.test else self.logged

    @property
    def selection_score(self) -> float | None:
        return outcomes_mean(self.selection) if self.selection else None

    @property
    def choice(self) -> float | None:
        """What choices compare: the selection score, else (no selection part) the score itself."""
        return self.selection_score if self.split else self.score

    @property
    def choice_outcomes(self) -> Outcomes | None:
        """The per-query values behind `choice`."""
        return self.selection if self.split else self.test

    @property
    def std(self) -> float:
        """The score's standard deviation over seeds."""
        return outcomes_std(self.test) if self.test else self.logged_std or 0.0

    @property
    def interval(self) -> list[float] | None:
        return score_interval(self.test)


def logged_at(run: Run, task: str, metric: str, k: int, step: int, docs: int = 0) -> float | None:
    """The logged mean of `metric` of `task` at (`k`, `docs`) in `run`'s evaluation at `step` (None: not logged)."""
    return run.metrics.get(icl_key(task, metric, k, docs=docs), {}).get(step)


def subsample_at(run: Run, task: str, step: int) -> dict[str, int] | None:
    """``{"queries": n, "of": total}`` when `run`'s evaluation of `task` at `step` scored a subsample of its queries
    (fewer than the run's evaluations that scored every query, its most: `ICLEvaluation(subsample=N)`), else None
    (every query, or no count logged)."""
    logged = run.metrics.get(icl_key(task, QUERIES), {})
    if step not in logged or logged[step] >= max(logged.values()):
        return None
    return {"queries": int(logged[step]), "of": int(max(logged.values()))}


def scored(run: Run, task: str, metric: str, k: int, step: int, docs: int = 0) -> Scored:
    """`metric` of `task` at (`k`, `docs`) in `run`'s evaluation at `step`, split into its selection and test parts
    where the predictions name them."""
    selection = usable(run.outcomes(task, metric, k, step, docs, SELECTION))
    return Scored(
        test=usable(run.outcomes(task, metric, k, step, docs, TEST if selection else None)),
        selection=selection,
        logged=logged_at(run, task, metric, k, step, docs),
        logged_std=run.metrics.get(icl_key(task, metric, k, std=True, docs=docs), {}).get(step),
    )


def point_scores(run: Run, task: str, k: int, step: int, docs: int = 0) -> list[str]:
    """Every metric (not a cost, `COSTS_LOGGED`) `run` logged for `task` at (`k`, `docs`) in its evaluation at
    `step`, in order of name."""
    return sorted({icl.metric for key, values in run.metrics.items()
                   if (icl := parse_icl_key(key)) and (icl.task, icl.k, icl.docs, icl.std) == (task, k, docs, False)
                   and step in values and icl.metric not in COSTS_LOGGED})


def query_flops(config: Config, prompt_tokens: float, generated_tokens: float | None, answer_tokens: float) -> float:
    """A query's FLOPs (`inference_flops`): its prompt, then its answer: the mean tokens the evaluation generated where
    it logged them (a generation task's own replies), else the report's `answer_tokens`."""
    return inference_flops(config, prompt_tokens, answer_tokens if generated_tokens is None else generated_tokens)


@dataclass(frozen=True)
class ICLPoint:
    """One (k, documents) point of ICL on the base model: its scored metric and report.json's entry for it."""

    k: int
    docs: int
    scored: Scored
    data: dict[str, Any]

    @property
    def label(self) -> str:
        return self.data["label"]


def icl_source(runs: list[Run], task: str, metric: str) -> Run:
    """The run whose step-0 evaluation gives ICL on the base model: the ICL-only run, else a trained run that starts
    at the base model."""
    sources = [run for run in runs if not run.trains] + [run for run in runs if run.trains and run.parent is None]
    for run in sources:
        if any((icl := parse_icl_key(key)) and icl.task == task and icl.metric == metric and not icl.std
               and icl.k is not None and 0 in values for key, values in run.metrics.items()):
            return run
    raise ReportError(f"No run evaluated task '{task}' on the base model (an ICL-only run or a step-0 evaluation).")


def icl_points(source: Run, task: str, metric: str, config: Config, answer_tokens: float) -> list[ICLPoint]:
    """Every (k, documents) point `source` evaluated `task` at on the base model (step 0), ordered by (documents, k):
    test mean, std over seeds and interval, selection mean, prompt tokens, generated tokens (None: the task does not
    generate) and a query's FLOPs (`query_flops`), retrieval hit rate (with documents whose source the queries name)
    and every metric's test mean."""
    parsed = [icl for key, values in source.metrics.items()
              if (icl := parse_icl_key(key)) and icl.task == task and icl.k is not None and not icl.std and 0 in values]
    points = []
    for docs, k in sorted({(icl.docs, icl.k) for icl in parsed if icl.metric == metric}):
        main = scored(source, task, metric, k, 0, docs)
        names = point_scores(source, task, k, 0, docs)
        prompt = logged_at(source, task, PROMPT_TOKENS, k, 0, docs)
        generated = logged_at(source, task, GENERATED_TOKENS, k, 0, docs)
        hit = scored(source, task, HIT, k, 0, docs).score if docs and HIT in names else None
        data = {
            "label": point_label(k, docs), "k": k, "docs": docs,
            "mean": main.score, "std": main.std, "interval": main.interval, "selection_mean": main.selection_score,
            "prompt_tokens": prompt, "generated_tokens": generated,
            "query_flops": query_flops(config, prompt, generated, answer_tokens), "hit_rate": hit,
            "all_metrics": {name: scored(source, task, name, k, 0, docs).score for name in names},
        }
        points.append(ICLPoint(k, docs, main, data))
    return points


def chosen_prompt(points: list[ICLPoint], margin: float) -> tuple[ICLPoint, ICLPoint]:
    """The best point on the selection part (ties: fewer prompt tokens), and the chosen one: the fewest prompt tokens
    among the points not distinguishably worse than the best there (`Comparison.not_worse`). Sets each point's
    `versus_best` (its selection score minus the best's; None for the best)."""
    best = max(points, key=lambda p: (p.scored.choice, -p.data["prompt_tokens"]))
    versus = {p.label: compared(p.scored.choice, p.scored.choice_outcomes, best.scored.choice,
                                best.scored.choice_outcomes) for p in points}
    for point in points:
        point.data["versus_best"] = None if point is best else versus[point.label].data
    chosen = min((p for p in points if versus[p.label].not_worse(margin)),
                 key=lambda p: (p.data["prompt_tokens"], -p.scored.choice))
    return best, chosen


def icl_seconds(source: Run, task: str) -> float | None:
    """The wall-clock seconds of `source`'s evaluation of `task`."""
    return source.last(icl_key(task, SECONDS))
