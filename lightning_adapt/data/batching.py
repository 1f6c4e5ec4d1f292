"""How instruction examples become micro-batches: in random order, grouped by length (less padding), or packed
several to a row (least padding; attention kept within each example by `model.packed_attention`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import RandomSampler, Sampler

from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.resumable import SkippingBatchSampler

BATCHINGS = ("random", "grouped", "packed")
"""`Instructions.batching` choices: random micro-batches (padded to their longest example), micro-batches of similar
lengths (`GroupedBatchSampler`), or rows of several examples each (`next_fit`, `packed_collate`)."""

GROUP_BATCHES = 32
"""Micro-batches per length group: each epoch's order is cut into groups of `batch_size * GROUP_BATCHES` examples,
each sorted by length. Larger groups pad less but put examples of one length range closer together in training."""


class GroupedBatchSampler(SkippingBatchSampler):
    """Micro-batches of similar lengths, every example once per epoch, in an order drawn from `generator`.

    Each epoch, `sampler`'s order (a seeded permutation; under DDP Lightning's `DistributedSampler`, the same
    arguments otherwise, so each process groups its own share) is cut into groups of `batch_size * GROUP_BATCHES`
    examples; each group is sorted by `lengths` (stable) and cut into micro-batches, and the micro-batches of the
    epoch are shuffled with `generator`. A `SkippingBatchSampler`: a resumed run passes over the trained micro-batches
    as indices. There are as many micro-batches per epoch as `BatchSampler` makes of the same sampler."""

    def __init__(
        self, sampler: Sampler[int], batch_size: int, drop_last: bool, lengths: Sequence[int],
        generator: torch.Generator,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.generator = generator

    def batches(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        size = self.batch_size * GROUP_BATCHES
        batches = []
        for start in range(0, len(order), size):
            group = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return iter([batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()])


def grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> GroupedBatchSampler:
    """Length-grouped micro-batches of the examples whose token counts are `lengths`, drawn from `generator`."""
    return GroupedBatchSampler(RandomSampler(range(len(lengths)), generator=generator), batch_size, False, lengths,
                               generator)


def next_fit(lengths: Sequence[int], order: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows of example indices: the examples, taken in `order`, fill a row while they fit in `capacity` tokens, then
    start the next (next fit). Every length must be at most `capacity`."""
    rows: list[list[int]] = []
    free = 0
    for index in order:
        if lengths[index] > free:
            rows.append([])
            free = capacity
        rows[-1].append(index)
        free -= lengths[index]
    return rows


def packed_collate(rows: list[list[dict[str, Any]]], length: int) -> dict[str, Any]:
    """A micro-batch of packed rows, each `length` tokens: `input_ids` (padded with 0), `labels` (each example's own,
    its first token `IGNORE_INDEX` so that no example is the target of another's last token, padding
    `IGNORE_INDEX`), `positions` (0, 1, ... within each example, 0 on padding), `segments` (1..n for the examples of a
    row, 0 on padding), `index` (every example's index, row after row) and `token_counts` with one entry per example
    (as unpacked batches count them)."""
    shape = (len(rows), length)
    batch = {
        "input_ids": torch.zeros(shape, dtype=torch.int64),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=torch.int64),
        "positions": torch.zeros(shape, dtype=torch.int64),
        "segments": torch.zeros(shape, dtype=torch.int64),
    }
    for row, examples in enumerate(rows):
        start = 0
        for segment, example in enumerate(examples, start=1):
            end = start + len(example["input_ids"])
            batch["input_ids"][row, start:end] = example["input_ids"]
            batch["labels"][row, start + 1 : end] = example["labels"][1:]
            batch["positions"][row, start:end] = torch.arange(end - start)
            batch["segments"][row, start:end] = segment
            start = end
    examples = [example for row in rows for example in row]
    batch["index"] = torch.tensor([example["index"] for example in examples])
    batch["token_counts"] = {
        key: torch.tensor([[example["token_counts"][key]] for example in examples], dtype=torch.int64)
        for key in ("raw", "raw_plus_prompt_template")
    }
    return batch

