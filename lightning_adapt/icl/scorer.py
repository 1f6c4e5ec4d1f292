"""The ``Scorer``: the model under evaluation behind the requests of every task, each rank scoring its share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from litgpt import GPT, Tokenizer

from lightning_adapt.icl.lockstep import lockstep
from lightning_adapt.icl.scoring import BATCH_SIZE, Generated, Request, generate, scores

Gather = Callable[[list[Any]], list[list[Any]]]
"""Collects one list from every rank, in rank order (e.g. ``torch.distributed.all_gather_object``)."""


@dataclass
class Scorer:
    """Scores requests on the model under evaluation. Under data parallelism each rank scores a contiguous share
    and every rank receives all results, so every rank must make the same calls in the same order."""

    model: GPT
    tokenizer: Tokenizer
    batch_size: int = BATCH_SIZE
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

    def generate(
        self, name: str, requests: Sequence[Request], max_new_tokens: int, stop: Sequence[str]
    ) -> list[Generated]:
        """Greedy continuation of every request up to ``max_new_tokens``, EOS or a ``stop`` string (cut off), with
        the number of tokens generated."""
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


@contextmanager
def _progress_bar(description: str, total: int, show: bool) -> Iterator[Callable[[int], Any] | None]:
    """A tqdm bar's ``update`` (requests done), or None when no bar is shown."""
    if not show:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(desc=description, total=total, unit="request", dynamic_ncols=True, leave=False) as bar:
        yield bar.update
