"""A training DataLoader that resumes mid-epoch: the batches a run trains on after resuming are the ones it would
have trained on had it never stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

STREAM_MARKS = "stream_marks"
"""Batch key of the stream cursors an iterable dataset sends with a batch: [(stream name, plain cursor)], each taken
where the batch's first block of a new window starts. The loader takes them out before the Trainer sees the batch."""


class SkippingBatchSampler(BatchSampler):
    """A `BatchSampler` that can pass over its first `skip` batches as indices, without reading their examples.

    Lightning re-creates it around a `DistributedSampler` under DDP (it keeps the same init arguments), so the
    skipping works per rank as well."""

    skip = 0

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        skip, self.skip = self.skip, 0
        for _ in range(skip):
            next(batches, None)
        yield from batches

    def batches(self) -> Iterator[list[int]]:
        """All of this epoch's batches (a subclass orders them its own way)."""
        return super().__iter__()


def shuffled_batches(dataset: Sized, batch_size: int, generator: torch.Generator) -> SkippingBatchSampler:
    """Batches of a map-style dataset in an order drawn from `generator` each epoch; resumable by index."""
    return SkippingBatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=False)


class ResumableDataLoader(DataLoader):
    """A `DataLoader` with `state_dict` / `load_state_dict`, which Lightning saves in checkpoints and restores.

    The state is the shuffling generator's state at the start of the current epoch, how many batches of that epoch
    were trained and, for a streaming dataset, a cursor per stream at or before the first untrained block. On resume,
    the epoch's order is drawn again from that state and the trained batches are skipped: with a
    `SkippingBatchSampler` (map-style data) as indices; with an iterable dataset that has `skip_batches` (a token
    stream) by starting each stream from its cursor (at most one shuffle window is read again); otherwise by reading
    and dropping them. `trained_batches` reports the Trainer's count of trained batches (None without a Trainer) —
    the loader cannot know it, as the Trainer fetches batches ahead.
    """

    def __init__(self, *args: Any, trained_batches: Callable[[], int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_batches = trained_batches
        self._epoch_rng: torch.Tensor | None = None
        self._resume: dict[str, Any] | None = None
        self._marks: dict[str, list[tuple[int, dict]]] = {}

    def state_dict(self) -> dict[str, Any]:
        batches = int(self.trained_batches() or 0)
        streams = {name: cursor for name, cursor in self._marks_before(batches).items()}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[dict] = [{} for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather_object(gathered, streams)
            streams = {name: cursor for part in gathered for name, cursor in part.items()}
        return {"rng": self._epoch_rng, "batches": batches, "streams": streams}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = state_dict

    def _marks_before(self, batches: int) -> dict[str, dict]:
        """Per stream, the newest cursor that came with a trained batch (index < `batches`); older ones are dropped."""
        newest = {}
        for name, marks in self._marks.items():
            trained = [i for i, (index, _) in enumerate(marks) if index < batches]
            if trained:
                del marks[: trained[-1]]
                newest[name] = marks[0][1]
        return newest

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
        streams = resume.get("streams", {}) if resume is not None else {}
        if skip and skip >= _length(self):  # saved at the end of an epoch: draw that epoch's order, train the next
            for _ in self._skipping(skip, {}):
                pass
            skip, streams = 0, {}
        return self._skipping(skip, streams)

    def _skipping(self, skip: int, streams: dict[str, dict]) -> Iterator[Any]:
        """A new epoch's iterator past its first `skip` batches (passed over as indices where the sampler can, or
        reached from the saved stream cursors)."""
        self._marks = {name: [(skip - 1, cursor)] for name, cursor in streams.items()}
        if isinstance(self.batch_sampler, SkippingBatchSampler):
            self.batch_sampler.skip = skip
            return self._iter_from_here(skip)
        if hasattr(self.dataset, "skip_batches"):  # an iterable dataset that can start past them
            self.dataset.skip_batches(skip, self.batch_size, streams)
            iterator = self._iter_from_here(skip)  # workers and the main process take their start here
            self.dataset.skip_batches(0, self.batch_size)
            return iterator
        iterator = self._iter_from_here(0)
        for _ in range(skip):
            next(iterator, None)
        return iterator

    def _iter_from_here(self, index: int) -> Iterator[Any]:
        """A new epoch's iterator, remembering the generator state it starts from; its batches are numbered from
        `index` and give up their stream marks."""
        generator = self.order_generator
        self._epoch_rng = generator.get_state() if generator is not None else None
        return self._taking_marks(super().__iter__(), index)

    def _taking_marks(self, batches: Iterator[Any], index: int) -> Iterator[Any]:
        for index, batch in enumerate(batches, start=index):
            marks = batch.pop(STREAM_MARKS, ()) if isinstance(batch, dict) else ()
            trained = self.trained_batches() if marks else None
            if trained is not None:  # kept only while a Trainer trains (and checkpoints) from this loader
                for name, cursor in marks:
                    self._marks.setdefault(name, []).append((index, cursor))
                self._marks_before(trained)
            yield batch


def trained_in_epoch(datamodule: Any) -> int | None:
    """Batches of the current epoch the Trainer has trained on (for `ResumableDataLoader.trained_batches`); None when
    no Trainer is attached."""
    trainer = datamodule.trainer
    return None if trainer is None else trainer.fit_loop.epoch_loop.batch_progress.current.processed


def _length(loader: DataLoader) -> float:
    """Batches per epoch (infinite for an endless iterable dataset)."""
    try:
        return len(loader)
    except TypeError:
        return float("inf")
