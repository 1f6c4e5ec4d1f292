"""A training DataLoader that resumes mid-epoch: the batches a run trains on after resuming are the ones it would
have trained on had it never stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler


class SkippingBatchSampler(BatchSampler):
    """A `BatchSampler` that can pass over its first `skip` batches as indices, without reading their examples.

    Lightning re-creates it around a `DistributedSampler` under DDP (it keeps the same init arguments), so the
    skipping works per rank as well."""

    skip = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = super().__iter__()
        skip, self.skip = self.skip, 0
        for _ in range(skip):
            next(batches, None)
        yield from batches


def shuffled_batches(dataset: Sized, batch_size: int, generator: torch.Generator) -> SkippingBatchSampler:
    """Batches of a map-style dataset in an order drawn from `generator` each epoch; resumable by index."""
    return SkippingBatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)


class ResumableDataLoader(DataLoader):
    """A `DataLoader` with `state_dict` / `load_state_dict`, which Lightning saves in checkpoints and restores.

    The state is the shuffling generator's state at the start of the current epoch and how many batches of that
    epoch were trained. On resume, the epoch's order is drawn again from that state and the trained batches are
    skipped. With a `SkippingBatchSampler` (map-style data) they are skipped as indices, so resuming costs the same
    at any step; otherwise (an iterable dataset, e.g. a token stream) they are read and dropped. `trained_batches`
    reports that count when a checkpoint is saved — the Trainer's count: the loader cannot know it, as the Trainer
    fetches batches ahead.
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

    @property
    def order_generator(self) -> torch.Generator | None:
        """The generator that draws each epoch's order (the sampler's own, else the loader's)."""
        sampler = getattr(self.batch_sampler, "sampler", None)
        return getattr(sampler, "generator", None) or self.generator

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        generator = self.order_generator
        if resume is not None and resume["rng"] is not None and generator is not None:
            generator.set_state(resume["rng"])
        skip = resume["batches"] if resume is not None else 0
        if skip and skip >= _length(self):  # saved at the end of an epoch: draw that epoch's order, train the next
            for _ in self._skipping(skip):
                pass
            skip = 0
        return self._skipping(skip)

    def _skipping(self, skip: int) -> Iterator[Any]:
        """A new epoch's iterator past its first `skip` batches (passed over as indices where the sampler can)."""
        if isinstance(self.batch_sampler, SkippingBatchSampler):
            self.batch_sampler.skip = skip
            return self._iter_from_here()
        if hasattr(self.dataset, "skip_batches"):  # an iterable dataset that can start past them
            self.dataset.skip_batches(skip, self.batch_size)
            iterator = self._iter_from_here()  # workers and the main process take their start here
            self.dataset.skip_batches(0, self.batch_size)
            return iterator
        iterator = self._iter_from_here()
        for _ in range(skip):
            next(iterator, None)
        return iterator

    def _iter_from_here(self) -> Iterator[Any]:
        """A new epoch's iterator, remembering the generator state it starts from."""
        generator = self.order_generator
        self._epoch_rng = generator.get_state() if generator is not None else None
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
