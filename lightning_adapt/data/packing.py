"""Packed next-token training data: token sequences cut into fixed-length blocks, shuffled, mixed with replay."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


def pack(
    sequences: Iterable[torch.Tensor], length: int, pad_tail: bool = False, pad_id: int = 0
) -> Iterator[tuple[torch.Tensor, int]]:
    """Concatenate `sequences` and cut the stream into blocks of exactly `length` tokens: (block, real tokens).

    Every token lands in exactly one block, in order. The tokens left after the last full block are dropped, or,
    with `pad_tail`, yielded as a last block padded with `pad_id`.
    """
    parts: list[torch.Tensor] = []
    held = 0
    for tokens in sequences:
        parts.append(tokens)
        held += len(tokens)
        if held < length:
            continue
        stream = torch.cat(parts)
        full = held // length
        yield from ((block, length) for block in stream[: full * length].view(full, length))
        parts, held = [stream[full * length :]], held - full * length
    if pad_tail and held:
        stream = torch.cat(parts)
        yield torch.cat([stream, stream.new_full((length - held,), pad_id)]), held


def shuffled(items: Iterable[T], buffer_size: int, rng: random.Random) -> Iterator[T]:
    """`items` in a random order drawn from a buffer of `buffer_size` (a full shuffle when the buffer holds all)."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def replay_schedule(ratio: float, rng: random.Random, window: int = 50) -> Iterator[bool]:
    """Endless flags saying which training blocks are replay blocks.

    Each window of `window` blocks holds its share of `ratio` (carried over from window to window, so the first n
    blocks hold `floor(ratio * n)` replay blocks whenever n is a multiple of `window`), at random positions.
    """
    done = 0
    while True:
        wanted = math.floor((done + window) * ratio + 1e-9) - math.floor(done * ratio + 1e-9)
        positions = set(rng.sample(range(window), wanted))
        yield from (position in positions for position in range(window))
        done += window


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
