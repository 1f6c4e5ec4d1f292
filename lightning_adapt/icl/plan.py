"""An ``ICLTask``'s prompts tokenized once and scored: its requests go to a ``Scorer``, its metrics and predictions
come back.

``encode_task`` tokenizes every prompt of a task once into a ``TaskPlan``; ``evaluate`` turns it into (query, choice)
log-likelihood requests, or for a generation task into generation requests and (query, reference answer)
log-likelihood requests (``response_logprob``), each distinct sequence scored once, and the scores into one row per
(k, docs, seed) and one prediction per query (docs: the retrieved documents in the prompt, 0 without a ``context``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from litgpt import Tokenizer

from lightning_adapt.icl.context import source_ids
from lightning_adapt.icl.encoding import Encoded, PromptEncoder
from lightning_adapt.icl.keys import GENERATED_TOKENS, HIT, PROMPT_TOKENS, point_label
from lightning_adapt.icl.metrics import CHECKS, RESPONSE_LOGPROB, argmax, calibration, choice_metrics, generation_metric
from lightning_adapt.icl.prompts import build_prompts, content_free_prompt, make_prompt
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.scorer import Scorer
from lightning_adapt.icl.scoring import Generated, Request
from lightning_adapt.icl.task import ICLTask, ICLTaskError, TaskData


@dataclass
class TaskPlan:
    """Every tokenized prompt of a task: per (k, docs, seed) one ``Encoded`` per query, plus the
    content-free prompts of each demonstration set when calibrating."""

    data: TaskData
    prompts: dict[tuple[int, int, int], list[Encoded]] = field(default_factory=dict)
    content_free: dict[tuple[int, ...], list[Encoded]] = field(default_factory=dict)

    def evaluate(self, scorer: Scorer, results: ICLResults) -> None:
        """Score every prompt with ``scorer`` and add the task's rows and predictions to ``results``."""
        if self.data.task.generate is None:
            _choices(self, scorer, results)
        else:
            _generation(self, scorer, results)


def encode_task(data: TaskData, tokenizer: Tokenizer, block_size: int) -> TaskPlan:
    """Tokenize all prompts of ``data``, at every (k, docs, seed); raise ``ICLTaskError`` for a prompt longer than
    ``block_size`` (or drop demonstrations, never documents, from the left when the task sets ``truncate_demos``)."""
    task = data.task
    encode = PromptEncoder(data, tokenizer)
    max_new_tokens = task.generate.max_new_tokens if task.generate and task.generate.generates else 0
    plan = TaskPlan(data)
    for docs in task.context.top_k if task.context is not None else [0]:
        for k in task.shots:
            for seed in task.seeds:
                encoded = []
                for prompt in build_prompts(data, k, seed, docs, encode.document):
                    choices = task.choices_for(data.queries[prompt.query])
                    item = encode(prompt, choices)
                    while (excess := item.input_length(max_new_tokens) - block_size) > 0:
                        if not (task.truncate_demos and prompt.demos):
                            raise ICLTaskError(
                                f"ICL task {task.name!r}: query {data.query_where[prompt.query]} ({point_label(k, docs)}, "
                                f"seed={seed}) needs {excess + block_size} tokens, {excess} more than the model's "
                                f"context of {block_size}; {_fit(task, prompt.demos, docs)}"
                            )
                        prompt = make_prompt(data, prompt.query, prompt.demos[1:], prompt.documents, encode.document)
                        item = encode(prompt, choices)
                    encoded.append(item)
                plan.prompts[(k, docs, seed)] = encoded
    if task.calibrate:
        for demos in sorted({e.prompt.demos for prompts in plan.prompts.values() for e in prompts}):
            items = [encode(content_free_prompt(data, demos, filler), task.choices) for filler in task.content_free]
            for filler, item in zip(task.content_free, items):
                if (excess := item.input_length() - block_size) > 0:
                    raise ICLTaskError(
                        f"ICL task {task.name!r}: the content-free prompt {filler!r} with {len(demos)} demonstrations "
                        f"is {excess} tokens longer than the model's context of {block_size}"
                    )
            plan.content_free[demos] = items
    return plan


def _fit(task: ICLTask, demos: tuple[int, ...], docs: int) -> str:
    """How to make a prompt that is too long fit."""
    if docs:
        shots = ", lower k or set truncate_demos (it drops demonstrations, never documents)" if demos else ""
        return (
            f"lower context.top_k (fewer documents per prompt) or context.max_tokens (each document is cut to "
            f"{task.context.max_tokens} tokens){shots}, or use a model with a longer context"
        )
    if demos:
        return "lower k, shorten the template, or set truncate_demos"
    return (
        "even with no demonstrations the query is too long: shorten the template, the query's text or choices, or use "
        "a model with a longer context"
    )


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
                requests.append(Request(*key, group=_group(item)))
            ids.append(index[key])
        return ids

    ids = {key: [requests_of(item) for item in items] for key, items in plan.prompts.items()}
    cf_ids = {demos: [requests_of(item) for item in items] for demos, items in plan.content_free.items()}
    lls = [logprob for logprob, _ in scorer.scores(task.name, requests)]
    for (k, docs, seed), items in plan.prompts.items():
        per_query = []
        for item, request_ids in zip(items, ids[(k, docs, seed)]):
            record = data.queries[item.prompt.query]
            choices = task.choices_for(record)
            gold, answer = task.answer(record)
            scores = [lls[i] for i in request_ids]
            p_cf = calibration([[lls[i] for i in r] for r in cf_ids[item.prompt.demos]]) if task.calibrate else None
            metrics = choice_metrics(scores, choices, gold, p_cf) | _hit(data, item)
            per_query.append((item, metrics))
            results.predictions.append(
                _prediction(data, k, docs, seed, item)
                | {"choices": choices, "loglikelihoods": scores, "prediction": choices[argmax(scores)]}
                | {"target": answer, **metrics}
            )
        results.rows.append(_row(task, k, docs, seed, per_query))


def _generation(plan: TaskPlan, scorer: Scorer, results: ICLResults) -> None:
    task, data, spec = plan.data.task, plan.data, plan.data.task.generate
    replies = _replies(plan, scorer) if spec.generates else {}
    logprobs = _response_logprobs(plan, scorer) if RESPONSE_LOGPROB in spec.metrics else {}
    for (k, docs, seed), items in plan.prompts.items():
        per_query = []
        for item in items:
            target = task.answer(data.queries[item.prompt.query])[1]
            reply = replies.get(item.context)
            metrics: dict[str, float] = {}
            for metric in spec.metrics:
                scored = metric == RESPONSE_LOGPROB
                metrics[metric] = logprobs[item.reference] if scored else generation_metric(reply.text, target, metric)
            if spec.checks:
                passed = {check.metric: check.passes(reply.text) for check in spec.checks}
                metrics |= passed | {CHECKS: statistics.fmean(passed.values())}
            metrics |= _hit(data, item) | ({GENERATED_TOKENS: reply.tokens} if reply else {})
            per_query.append((item, metrics))
            record = _prediction(data, k, docs, seed, item) | ({"prediction": reply.text} if reply else {})
            results.predictions.append(record | {"target": target, **metrics})
        results.rows.append(_row(task, k, docs, seed, per_query))


def _replies(plan: TaskPlan, scorer: Scorer) -> dict[tuple[int, ...], Generated]:
    """The greedy reply to every distinct prompt, by its tokens (each generated once)."""
    spec, requests = plan.data.task.generate, {}
    for items in plan.prompts.values():
        for item in items:
            requests.setdefault(item.context, Request(item.context, len(item.context), group=_group(item)))
    replies = scorer.generate(plan.data.task.name, list(requests.values()), spec.max_new_tokens, spec.stop)
    return dict(zip(requests, replies))


def _response_logprobs(plan: TaskPlan, scorer: Scorer) -> dict[tuple[tuple[int, ...], tuple[int, ...]], float]:
    """``response_logprob`` of every distinct (context, reference) pair: the mean log-likelihood of its tokens,
    scored on the prefix-sharing scorer (each distinct sequence once)."""
    requests = {}
    for items in plan.prompts.values():
        for item in items:
            context, continuation = item.reference
            requests.setdefault(item.reference, Request(context + continuation, len(context), group=_group(item)))
    scores = scorer.scores(plan.data.task.name, list(requests.values()))
    return {pair: logprob / len(pair[1]) for pair, (logprob, _) in zip(requests, scores)}


def _group(item: Encoded) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Requests batched together: those of one document and demonstration set (they share their prompt's start)."""
    return item.prompt.documents, item.prompt.demos


def _hit(data: TaskData, item: Encoded) -> dict[str, float]:
    """``hit`` of a prompt with documents when the task names each query's source documents, else nothing."""
    context, documents = data.task.context, item.prompt.documents
    if context is None or context.source is None or not documents:
        return {}
    sources = source_ids(data.queries[item.prompt.query], context, data.query_where[item.prompt.query])
    return {HIT: float(any(data.documents[i].id in sources for i in documents))}


def _prediction(data: TaskData, k: int, docs: int, seed: int, item: Encoded) -> dict[str, Any]:
    """The fields every prediction record has; ``query`` is the query's row in its source file (a selection query
    from ``selection.path``: its row in that file)."""
    query = item.prompt.query
    record = {
        "task": data.task.name, "k": k, "docs": docs, "seed": seed, "query": data.query_rows[query],
        "demos": list(item.prompt.demos), "prompt_tokens": len(item.context),
        "text": data.task.text(data.queries[query]),
    }
    if docs:
        record["documents"] = [data.documents[i].id for i in item.prompt.documents]
    if data.query_parts is not None:
        record["part"] = data.query_parts[query]
    return record


def _row(
    task: ICLTask, k: int, docs: int, seed: int, per_query: list[tuple[Encoded, dict[str, float]]]
) -> dict[str, Any]:
    row: dict[str, Any] = {"task": task.name, "k": k, "docs": docs, "seed": seed}
    for name in per_query[0][1]:
        row[name] = statistics.fmean(metrics[name] for _, metrics in per_query)
    row[PROMPT_TOKENS] = statistics.fmean(len(item.context) for item, _ in per_query)
    return row
