"""A training DataLoader that resumes mid-epoch: the batches a run trains on after resuming are the ones it would
have trained on had it never stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
    """A `DataLoader` with `state_dict` / `load_state_dict`, which Lightning saves in checkpoints and restores.

    The state is the shuffling generator's state at the start of the current epoch and how many batches of that
    epoch were trained. On resume, the epoch's order is drawn again from that state and the trained batches are
    skipped (read, not trained on). `trained_batches` reports that count when a checkpoint is saved — the Trainer's
    count: the loader cannot know it, as the Trainer fetches batches ahead.
    """

    def __init__(self, *args: Any, trained_batches: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_batches = trained_batches
        self._epoch_rng: torch.Tensor | None = None
        self._resume: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._epoch_rng, "batches": int(self.trained_batches())}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        if resume is not None and resume["rng"] is not None and self.generator is not None:
            self.generator.set_state(resume["rng"])
        skip = resume["batches"] if resume is not None else 0
        if skip and skip >= _length(self):  # saved at the end of an epoch: draw that epoch's order, train the next
            for _ in self._iter_from_here():
                pass
            skip = 0
        iterator = self._iter_from_here()
        for _ in range(skip):
            next(iterator)
        return iterator

    def _iter_from_here(self) -> Iterator[Any]:
        """A new epoch's iterator, remembering the generator state it starts from."""
        self._epoch_rng = self.generator.get_state() if self.generator is not None else None
        return super().__iter__()


def trained_in_epoch(datamodule: Any) -> int:
    """Batches of the current epoch the Trainer has trained on (for `ResumableDataLoader.trained_batches`)."""
    return datamodule.trainer.fit_loop.epoch_loop.batch_progress.current.processed


def _length(loader: DataLoader) -> float:
    """Batches per epoch (infinite for an endless iterable dataset)."""
    try:
        return len(loader)
    except TypeError:
        return float("inf")
