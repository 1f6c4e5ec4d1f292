"""Packed next-token training data: token sequences cut into fixed-length blocks, shuffled, mixed with replay."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


class Packer:
    """Concatenates token sequences and cuts the stream into blocks of exactly `length` tokens, in order; `pending`
    holds the tokens not yet in a block (saved and given back to go on where it stood)."""

    def __init__(self, length: int, pending: torch.Tensor | None = None) -> None:
        self.length = length
        self.pending = pending if pending is not None else torch.empty(0, dtype=torch.int32)
        self._start = 0

    def add(self, tokens: torch.Tensor) -> None:
        rest = self.pending[self._start :]
        self.pending = torch.cat([rest, tokens.to(rest.dtype)]) if len(rest) else tokens
        self._start = 0

    def block(self) -> torch.Tensor | None:
        """The next full block, or None until enough tokens are added."""
        if len(self.pending) - self._start < self.length:
            return None
        self._start += self.length
        return self.pending[self._start - self.length : self._start]

    def held(self) -> torch.Tensor:
        """The tokens not yet in a block (a copy)."""
        return self.pending[self._start :].clone()

    def tail(self, pad_id: int) -> tuple[torch.Tensor, int] | None:
        """The tokens left, padded with `pad_id` to a block, and how many they are; None when none are left."""
        rest = self.pending[self._start :]
        if not len(rest):
            return None
        self._start = len(self.pending)
        return torch.cat([rest, rest.new_full((self.length - len(rest),), pad_id)]), len(rest)


def pack(
    sequences: Iterable[torch.Tensor], length: int, pad_tail: bool = False, pad_id: int = 0
) -> Iterator[tuple[torch.Tensor, int]]:
    """Concatenate `sequences` and cut the stream into blocks of exactly `length` tokens: (block, real tokens).

    Every token lands in exactly one block, in order. The tokens left after the last full block are dropped, or,
    with `pad_tail`, yielded as a last block padded with `pad_id`.
    """
    packer = Packer(length)
    for tokens in sequences:
        packer.add(tokens)
        while (block := packer.block()) is not None:
            yield block, length
    if pad_tail and (tail := packer.tail(pad_id)) is not None:
        yield tail


REPLAY_WINDOW = 50


def replay_flags(ratio: float, seed: str, window: int) -> list[bool]:
    """Which blocks of window number `window` (of REPLAY_WINDOW blocks) are replay blocks.

    Each window holds its share of `ratio` (carried over from window to window, so the first n blocks hold
    `floor(ratio * n)` replay blocks whenever n is a multiple of REPLAY_WINDOW), at positions drawn from its own seed.
    """
    done = window * REPLAY_WINDOW
    wanted = math.floor((done + REPLAY_WINDOW) * ratio + 1e-9) - math.floor(done * ratio + 1e-9)
    positions = set(random.Random(f"{seed}:{window}").sample(range(REPLAY_WINDOW), wanted))
    return [position in positions for position in range(REPLAY_WINDOW)]


def replay_schedule(ratio: float, seed: str, start: int = 0) -> Iterator[bool]:
    """Endless flags saying which training blocks, from block `start` on, are replay blocks (see `replay_flags`)."""
    first, offset = divmod(start, REPLAY_WINDOW)
    for window in itertools.count(first):
        yield from replay_flags(ratio, seed, window)[offset:]
        offset = 0


def replayed_before(ratio: float, seed: str, start: int) -> int:
    """Replay blocks among the first `start` training blocks, found without drawing the windows before."""
    window, offset = divmod(start, REPLAY_WINDOW)
    return math.floor(window * REPLAY_WINDOW * ratio + 1e-9) + sum(replay_flags(ratio, seed, window)[:offset])


def mix(domain: Iterator[T], replay: Iterator[T], schedule: Iterator[bool]) -> Iterator[tuple[T, bool]]:
    """(item, is_replay): `domain` items with `replay` items at the positions `schedule` flags, until `domain` ends."""
    for is_replay in schedule:
        if is_replay:
            yield next(replay), True
            continue
        item = next(domain, None)
        if item is None:
            return
        yield item, False
