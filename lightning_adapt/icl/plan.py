"""Scoring an ``ICLTask``'s tokenized prompts: its requests go to a ``Scorer``, its metrics and predictions come back.

``TaskPlan`` holds every tokenized prompt of a task (made once by ``encode_task``); ``evaluate`` turns it into
(query, choice) log-likelihood or generation requests, each distinct sequence scored once, and the scores into one
row per (k, seed) and one prediction per query.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lightning_adapt.icl.keys import PROMPT_TOKENS
from lightning_adapt.icl.metrics import argmax, calibration, choice_metrics, generation_metric
from lightning_adapt.icl.scoring import Request

if TYPE_CHECKING:
    from lightning_adapt.icl.encoding import Encoded
    from lightning_adapt.icl.results import ICLResults
    from lightning_adapt.icl.runner import Scorer
    from lightning_adapt.icl.task import ICLTask, TaskData


@dataclass
class TaskPlan:
    """Every tokenized prompt of a task: per (k, seed) one ``Encoded`` per query, plus the
    content-free prompts of each demonstration set when calibrating."""

    data: TaskData
    prompts: dict[tuple[int, int], list[Encoded]] = field(default_factory=dict)
    content_free: dict[tuple[int, ...], list[Encoded]] = field(default_factory=dict)

    def evaluate(self, scorer: Scorer, results: ICLResults) -> None:
        """Score every prompt with ``scorer`` and add the task's rows and predictions to ``results``."""
        if self.data.task.generate is None:
            _choices(self, scorer, results)
        else:
            _generation(self, scorer, results)


def _choices(plan: TaskPlan, scorer: Scorer, results: ICLResults) -> None:
    task, data = plan.data.task, plan.data
    index: dict[tuple[tuple[int, ...], int], int] = {}
    requests: list[Request] = []

    def requests_of(item: Encoded) -> list[int]:
        """Indices of the item's (context + choice) requests, each distinct sequence scored once."""
        ids = []
        for continuation in item.continuations:
            key = (item.context + continuation, len(item.context))
            if key not in index:
                index[key] = len(requests)
                requests.append(Request(*key, group=item.prompt.demos))
            ids.append(index[key])
        return ids

    ids = {key: [requests_of(item) for item in items] for key, items in plan.prompts.items()}
    cf_ids = {demos: [requests_of(item) for item in items] for demos, items in plan.content_free.items()}
    lls = [logprob for logprob, _ in scorer.scores(task.name, requests)]
    for (k, seed), items in plan.prompts.items():
        per_query = []
        for item, request_ids in zip(items, ids[(k, seed)]):
            record = data.queries[item.prompt.query]
            choices = task.choices_for(record)
            gold, answer = task.answer(record)
            scores = [lls[i] for i in request_ids]
            p_cf = calibration([[lls[i] for i in r] for r in cf_ids[item.prompt.demos]]) if task.calibrate else None
            metrics = choice_metrics(scores, choices, gold, p_cf)
            per_query.append((item, metrics))
            results.predictions.append(
                _prediction(data, k, seed, item)
                | {"choices": choices, "loglikelihoods": scores, "prediction": choices[argmax(scores)]}
                | {"target": answer, **metrics}
            )
        results.rows.append(_row(task, k, seed, per_query))


def _generation(plan: TaskPlan, scorer: Scorer, results: ICLResults) -> None:
    task, data, spec = plan.data.task, plan.data, plan.data.task.generate
    index: dict[tuple[int, ...], int] = {}
    requests: list[Request] = []
    for items in plan.prompts.values():
        for item in items:
            if item.context not in index:
                index[item.context] = len(requests)
                requests.append(Request(item.context, len(item.context), group=item.prompt.demos))
    texts = scorer.generate(task.name, requests, spec.max_new_tokens, spec.stop)
    for (k, seed), items in plan.prompts.items():
        per_query = []
        for item in items:
            record = data.queries[item.prompt.query]
            prediction, target = texts[index[item.context]], task.answer(record)[1]
            metrics = {spec.metric: generation_metric(prediction, target, spec.metric)}
            per_query.append((item, metrics))
            results.predictions.append(
                _prediction(data, k, seed, item) | {"prediction": prediction, "target": target, **metrics}
            )
        results.rows.append(_row(task, k, seed, per_query))


def _prediction(data: TaskData, k: int, seed: int, item: Encoded) -> dict[str, Any]:
    """The fields every prediction record has; ``query`` is the query's row in its source file."""
    query = item.prompt.query
    return {
        "task": data.task.name, "k": k, "seed": seed, "query": data.query_rows[query], "demos": list(item.prompt.demos),
        "prompt_tokens": len(item.context), "text": data.task.text(data.queries[query]),
    }


def _row(task: ICLTask, k: int, seed: int, per_query: list[tuple[Encoded, dict[str, float]]]) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task.name, "k": k, "seed": seed}
    for name in per_query[0][1]:
        row[name] = statistics.fmean(metrics[name] for _, metrics in per_query)
    row[PROMPT_TOKENS] = statistics.fmean(len(item.context) for item, _ in per_query)
    return row
