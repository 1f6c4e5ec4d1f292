"""The one ICL code path: load + validate tasks, tokenize their prompts once, score given weights.

``ICLEvaluation`` (during training) and ``evaluate_checkpoint`` (without training) both run it.
Under data parallelism each rank scores a contiguous shard of the (query, choice) requests and the
results are gathered, so every rank ends with the same ``ICLResults``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from litgpt import GPT, Tokenizer

from lightning_adapt.icl.encoding import Encoded, TaskPlan, encode_task
from lightning_adapt.icl.keys import PROMPT_TOKENS
from lightning_adapt.icl.metrics import argmax, calibration, choice_metrics, generation_metric
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.scoring import Request, generate, loglikelihoods
from lightning_adapt.icl.task import ICLTask, ICLTaskError, TaskData

Gather = Callable[[list[Any]], list[list[Any]]]
"""Collects one list from every rank, in rank order (e.g. ``torch.distributed.all_gather_object``)."""


def with_overrides(
    tasks: ICLTask | Sequence[ICLTask], shots: list[int] | None, seeds: list[int] | None, add_bos: bool | None = None
) -> list[ICLTask]:
    """The tasks as a list, with ``shots`` / ``seeds`` / ``add_bos`` replaced where given."""
    tasks = [tasks] if isinstance(tasks, ICLTask) else list(tasks)
    if shots is not None:
        tasks = [replace(task, shots=list(shots)) for task in tasks]
    if seeds is not None:
        tasks = [replace(task, seeds=list(seeds)) for task in tasks]
    if add_bos is not None:
        tasks = [replace(task, add_bos=add_bos) for task in tasks]
    return tasks


class ICLRunner:
    """Loads and validates ``tasks`` on construction; ``prepare`` tokenizes; ``run`` scores."""

    def __init__(self, tasks: Sequence[ICLTask]) -> None:
        if not tasks:
            raise ICLTaskError("no ICL tasks given")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ICLTaskError(f"ICL task names must be unique, got {names}")
        self.data = [task.load() for task in tasks]
        self.plans: list[TaskPlan] = []

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> None:
        """Tokenize every prompt and check it fits ``block_size``; raises ``ICLTaskError``."""
        self.plans = [encode_task(data, tokenizer, block_size) for data in self.data]

    def run(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        batch_size: int = 16,
        rank: int = 0,
        world_size: int = 1,
        gather: Gather | None = None,
        progress: bool = False,
    ) -> ICLResults:
        """Score all tasks with ``model``; its modes, gradients and the torch RNG are left as found. With
        ``progress``, rank zero shows a progress bar per task (requests scored)."""
        if not self.plans:
            raise RuntimeError("ICLRunner.prepare(tokenizer, block_size) must be called before run()")
        if world_size > 1 and gather is None:
            raise ValueError("a `gather` function is needed when world_size > 1")
        results = ICLResults()

        def shard(requests: list[Request]) -> list[Request]:
            """This rank's contiguous share of the requests."""
            n = len(requests)
            return requests[rank * n // world_size : (rank + 1) * n // world_size]

        def collect(local: list[Any]) -> list[Any]:
            """Every rank's results, in request order."""
            return local if world_size == 1 else [x for part in gather(local) for x in part]

        def decode(ids: list[int]) -> str:
            return tokenizer.decode(torch.tensor(ids, dtype=torch.long))

        def scored(name: str, score: Callable[..., list[Any]], settings: tuple, requests: list[Request]) -> list[Any]:
            """``score`` this rank's share of the requests (with a progress bar), then every rank's results."""
            mine = shard(requests)
            with _progress_bar(f"ICL {name}", len(mine), progress and rank == 0) as on_batch:
                return collect(score(model, mine, *settings, batch_size, on_batch=on_batch))

        with evaluation_mode(model):
            for plan in self.plans:
                start, spec, name = time.perf_counter(), plan.data.task.generate, plan.data.task.name
                if spec is None:
                    self._choices(plan, partial(scored, name, loglikelihoods, ()), results)
                else:
                    settings = (spec.max_new_tokens, spec.stop, tokenizer.eos_id, decode)
                    self._generation(plan, partial(scored, name, generate, settings), results)
                results.seconds[name] = time.perf_counter() - start
        return results

    def _choices(self, plan: TaskPlan, score: Callable[[list[Request]], list[float]], results: ICLResults) -> None:
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
        lls = score(requests)
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

    def _generation(self, plan: TaskPlan, run: Callable[[list[Request]], list[str]], results: ICLResults) -> None:
        task, data, metric = plan.data.task, plan.data, plan.data.task.generate.metric
        index: dict[tuple[int, ...], int] = {}
        requests: list[Request] = []
        for items in plan.prompts.values():
            for item in items:
                if item.context not in index:
                    index[item.context] = len(requests)
                    requests.append(Request(item.context, len(item.context), group=item.prompt.demos))
        texts = run(requests)
        for (k, seed), items in plan.prompts.items():
            per_query = []
            for item in items:
                record = data.queries[item.prompt.query]
                prediction, target = texts[index[item.context]], task.answer(record)[1]
                metrics = {metric: generation_metric(prediction, target, metric)}
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


@contextmanager
def _progress_bar(description: str, total: int, show: bool) -> Iterator[Callable[[int], Any] | None]:
    """A tqdm bar's ``update`` (requests done), or None when no bar is shown."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(desc=description, total=total, unit="request", dynamic_ncols=True, leave=False) as bar:
        yield bar.update


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside; afterwards every module's train/eval flag and the torch
    CPU and CUDA RNG states are exactly as before."""
    modes = [(module, module.training) for module in model.modules()]
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for module, training in modes:
            module.training = training
