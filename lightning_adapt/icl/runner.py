"""The one ICL code path: load + validate tasks, tokenize their prompts once, score given weights.

``ICLEvaluation`` (during training) and ``evaluate_checkpoint`` (without training) both run it, on any
``EvaluationTask``: our ``ICLTask`` or an lm-evaluation-harness task (``LMEvalTask``, plugins/lm_eval). A task
turns its prompts into requests for the ``Scorer``; under data parallelism each rank scores a contiguous shard of
them and the results are gathered, so every rank ends with the same ``ICLResults``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import torch
from litgpt import GPT, Tokenizer

from lightning_adapt.icl.lockstep import lockstep
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.scoring import Request, generate, scores
from lightning_adapt.icl.task import ICLTaskError

Gather = Callable[[list[Any]], list[list[Any]]]
"""Collects one list from every rank, in rank order (e.g. ``torch.distributed.all_gather_object``)."""


def with_overrides(
    tasks: EvaluationTask | Sequence[EvaluationTask],
    shots: list[int] | None,
    seeds: list[int] | None,
    add_bos: bool | None = None,
) -> list[EvaluationTask]:
    """The tasks as a list, with ``shots`` / ``seeds`` / ``add_bos`` replaced where given."""
    tasks = list(tasks) if isinstance(tasks, Sequence) else [tasks]
    if shots is not None:
        tasks = [replace(task, shots=list(shots)) for task in tasks]
    if seeds is not None:
        tasks = [replace(task, seeds=list(seeds)) for task in tasks]
    if add_bos is not None:
        tasks = [replace(task, add_bos=add_bos) for task in tasks]
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
    """A task with its data, ready to be tokenized for one model."""

    task: EvaluationTask

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> PreparedTask:
        """Tokenize every prompt once, checked against a context of ``block_size`` tokens."""


class PreparedTask(Protocol):
    """A tokenized task: every evaluation only runs the model."""

    def evaluate(self, scorer: Scorer, results: ICLResults) -> None:
        """Score the task's requests with ``scorer``; add one row per (k, seed) and the predictions to ``results``."""


@dataclass
class Scorer:
    """Scores requests on the model under evaluation. Under data parallelism each rank scores a contiguous share
    and every rank receives all results, so every rank must make the same calls in the same order."""

    model: GPT
    tokenizer: Tokenizer
    batch_size: int = 16
    rank: int = 0
    world_size: int = 1
    gather: Gather | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.world_size > 1 and self.gather is None:
            raise ValueError("a `gather` function is needed when world_size > 1")

    def scores(self, name: str, requests: Sequence[Request]) -> list[tuple[float, bool]]:
        """(log-likelihood, is_greedy) of every request (see ``scoring.scores``); ``name`` labels the progress bar."""
        return self._run(name, requests, scores)

    def generate(self, name: str, requests: Sequence[Request], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        """Greedy continuation of every request up to ``max_new_tokens``, EOS or a ``stop`` string (cut off)."""
        eos = self.tokenizer.eos_id
        return self._run(name, requests, partial(generate, max_new_tokens=max_new_tokens, stop=stop, eos_id=eos,
                                                 decode=self.decode))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(torch.tensor(list(ids), dtype=torch.long))

    def _run(self, name: str, requests: Sequence[Request], score: Callable[..., list[Any]]) -> list[Any]:
        """``score`` this rank's share of the requests (with a progress bar on rank zero), then every rank's results
        in request order."""
        n = len(requests)
        mine = list(requests[self.rank * n // self.world_size : (self.rank + 1) * n // self.world_size])
        with _progress_bar(f"ICL {name}", len(mine), self.progress and self.rank == 0) as on_batch:
            with lockstep(self.model):
                local = score(self.model, mine, batch_size=self.batch_size, on_batch=on_batch)
        return local if self.world_size == 1 else [x for part in self.gather(local) for x in part]


class ICLRunner:
    """Loads and validates ``tasks`` on construction; ``prepare`` tokenizes; ``run`` scores."""

    def __init__(self, tasks: Sequence[EvaluationTask]) -> None:
        if not tasks:
            raise ICLTaskError("no ICL tasks given")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ICLTaskError(f"ICL task names must be unique, got {names}")
        self.data: list[LoadedTask] = [task.load() for task in tasks]
        self.plans: list[PreparedTask] = []

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> None:
        """Tokenize every prompt and check it fits ``block_size``; raises ``ICLTaskError``."""
        self.plans = [data.prepare(tokenizer, block_size) for data in self.data]

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
        scorer = Scorer(model, tokenizer, batch_size, rank, world_size, gather, progress)
        results = ICLResults()
        with evaluation_mode(model):
            for data, plan in zip(self.data, self.plans):
                start = time.perf_counter()
                plan.evaluate(scorer, results)
                results.seconds[data.task.name] = time.perf_counter() - start
        return results


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
