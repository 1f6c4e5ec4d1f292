"""The one ICL code path: load + validate tasks, tokenize their prompts once, score given weights.

``ICLEvaluation`` (during training) and ``evaluate_checkpoint`` (without training) both run it, on any
``EvaluationTask``: our ``ICLTask`` (its data tokenized by ``plan.encode_task``) or an lm-evaluation-harness task
(``LMEvalTask``, plugins/lm_eval, which tokenizes its own). A task turns its prompts into requests for the
``Scorer``; under data parallelism each rank scores a contiguous shard of them and the results are gathered, so every
rank ends with the same ``ICLResults``. An ``ICLTask`` can be scored on a seeded subset of its queries
(``subsample``, ``TaskData.subsample``): its prompts are tokenized once, whole, and only the subset's are scored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Protocol

import torch
from litgpt import GPT, Tokenizer

from lightning_adapt.icl.plan import TaskPlan, encode_task
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.scorer import Gather, Scorer
from lightning_adapt.icl.scoring import BATCH_SIZE
from lightning_adapt.icl.task import ICLTaskError, TaskData

def with_overrides(
    tasks: EvaluationTask | Sequence[EvaluationTask],
    shots: list[int] | None,
    seeds: list[int] | None,
    add_bos: bool | None = None,
    top_k: list[int] | None = None,
) -> list[EvaluationTask]:
    """The tasks as a list, with ``shots`` / ``seeds`` / ``add_bos`` replaced where given, and ``top_k`` (numbers of
    retrieved documents) in the ``context`` of the tasks that have one."""
    tasks = list(tasks) if isinstance(tasks, Sequence) else [tasks]
    if shots is not None:
        tasks = [replace(task, shots=list(shots)) for task in tasks]
    if seeds is not None:
        tasks = [replace(task, seeds=list(seeds)) for task in tasks]
    if add_bos is not None:
        tasks = [replace(task, add_bos=add_bos) for task in tasks]
    if top_k is not None:
        tasks = [
            replace(task, context=replace(task.context, top_k=list(top_k)))
            if getattr(task, "context", None) is not None else task
            for task in tasks
        ]
    return tasks


class EvaluationTask(Protocol):
    """What ``ICLRunner`` scores: an ``ICLTask``, or an lm-evaluation-harness task (``LMEvalTask``)."""

    name: str
    shots: list[int]
    seeds: list[int]
    add_bos: bool | None

    def load(self) -> LoadedTask:
        """Read and validate the task's data (raises ``ICLTaskError`` naming the item), before any model loads."""


class LoadedTask(Protocol):
    """A plugin's task with its data (an lm-eval task's), ready to be tokenized for one model; an ``ICLTask``'s
    loaded data is a ``TaskData``, which ``encode_task`` tokenizes."""

    task: EvaluationTask

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> PreparedTask:
        """Tokenize every prompt once, checked against a context of ``block_size`` tokens."""


class PreparedTask(Protocol):
    """A tokenized task: every evaluation only runs the model."""

    def evaluate(self, scorer: Scorer, results: ICLResults) -> None:
        """Score the task's requests with ``scorer``; add one row per (k, seed) and the predictions to ``results``."""


class ICLRunner:
    """Loads and validates ``tasks`` on construction; ``prepare`` tokenizes; ``run`` scores."""

    def __init__(self, tasks: Sequence[EvaluationTask]) -> None:
        if not tasks:
            raise ICLTaskError("no ICL tasks given")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ICLTaskError(f"ICL task names must be unique, got {names}")
        self.data: list[TaskData | LoadedTask] = [task.load() for task in tasks]
        self.plans: list[PreparedTask] = []

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> None:
        """Tokenize every prompt and check it fits ``block_size``; raises ``ICLTaskError``."""
        self.plans = [prepare(data, tokenizer, block_size) for data in self.data]

    def run(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        batch_size: int = BATCH_SIZE,
        rank: int = 0,
        world_size: int = 1,
        gather: Gather | None = None,
        progress: bool = False,
        subsample: int | None = None,
    ) -> ICLResults:
        """Score all tasks with ``model``; its modes, gradients and the torch RNG are left as found. With
        ``progress``, rank zero shows a progress bar per task (requests scored). With ``subsample``, each ``ICLTask``
        scores only its seeded subset of that many queries (``TaskData.subsample``; lm-eval tasks score every
        document); ``ICLResults.queries`` counts the queries each ``ICLTask`` scored."""
        if not self.plans:
            raise RuntimeError("ICLRunner.prepare(tokenizer, block_size) must be called before run()")
        scorer = Scorer(model, tokenizer, batch_size, rank, world_size, gather, progress)
        results = ICLResults()
        with evaluation_mode(model):
            for data, plan in zip(self.data, self.plans):
                start = time.perf_counter()
                if isinstance(plan, TaskPlan):
                    plan = plan if subsample is None else subsampled(plan, subsample)
                    results.queries[data.task.name] = len(next(iter(plan.prompts.values())))  # one prompt per query
                plan.evaluate(scorer, results)
                results.seconds[data.task.name] = time.perf_counter() - start
        return results


def subsampled(plan: TaskPlan, n: int) -> TaskPlan:
    """``plan`` restricted to the prompts (and the content-free prompts of their demonstration sets) of its task's
    seeded subset of ``n`` queries (``TaskData.subsample``)."""
    chosen = set(plan.data.subsample(n))
    prompts = {key: [e for e in items if e.prompt.query in chosen] for key, items in plan.prompts.items()}
    demos = {e.prompt.demos for items in prompts.values() for e in items}
    return TaskPlan(plan.data, prompts, {key: items for key, items in plan.content_free.items() if key in demos})


def prepare(data: TaskData | LoadedTask, tokenizer: Tokenizer, block_size: int) -> PreparedTask:
    """A loaded task tokenized: an ``ICLTask``'s data by ``encode_task``, a plugin's task by its own ``prepare``."""
    if isinstance(data, TaskData):
        return encode_task(data, tokenizer, block_size)
    return data.prepare(tokenizer, block_size)


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
