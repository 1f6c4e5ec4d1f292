"""How sure a score is: percentile-bootstrap 95% intervals over per-query outcomes (pure arithmetic, numpy).

An outcome matrix is seeds × queries: one row per demonstration seed (a trained run scored 0-shot has one row), one
column per query, the same queries in every row. Every resample draws the queries with replacement, and the seeds
(rows) with replacement too, so ICL's interval carries both its demonstration-set and its query-sample variability;
with one row the seed draw changes nothing and the interval is the ordinary bootstrap of a mean over queries.
A paired comparison of two methods draws the SAME query indices for both sides in each resample (each side's seeds
drawn on their own), so the queries both get right or wrong cancel out of the difference.

Deterministic: `RESAMPLES` resamples from numpy generators seeded with `SEED` (the query draws and each side's seed
draws from separate streams, so a side's seed count does not shift the query draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES, SEED, LEVEL = 5000, 0, 0.95
_BLOCK = 500
"""Resamples drawn at once (memory: _BLOCK × queries)."""


@dataclass(frozen=True)
class Difference:
    """A paired difference of two methods' means over the same queries: mean, its `LEVEL` interval, the queries."""

    mean: float
    low: float
    high: float
    queries: int

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def seeds_queries_interval(
    outcomes: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The `LEVEL` interval of the mean of a seeds × queries matrix, resampling seeds and queries."""
    return _percentiles(_resampled_means([_matrix(outcomes)], resamples, seed)[0])


def mean_interval(outcomes: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The `LEVEL` interval of the mean of per-query outcomes, resampling queries."""
    return seeds_queries_interval([outcomes], resamples, seed)


def paired_difference(
    a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = SEED
) -> Difference:
    """Mean of `a` minus mean of `b` (seeds × queries matrices over the same queries, column for column) and its
    `LEVEL` interval: each resample draws one set of query indices for both, and each side's seeds on their own."""
    ma, mb = _matrix(a), _matrix(b)
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"paired_difference: {ma.shape[1]} and {mb.shape[1]} queries; pair the same queries")
    means_a, means_b = _resampled_means([ma, mb], resamples, seed)
    low, high = _percentiles(means_a - means_b)
    return Difference(float(ma.mean() - mb.mean()), low, high, ma.shape[1])


def _matrix(outcomes: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(outcomes, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ValueError(f"expected a non-empty seeds × queries matrix, got shape {matrix.shape}")
    return matrix


def _resampled_means(sides: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """Each side's mean in every resample: queries drawn once for all sides, seeds per side."""
    queries = sides[0].shape[1]
    query_rng = np.random.default_rng([seed, 0])
    seed_rngs = [np.random.default_rng([seed, 1 + i]) for i in range(len(sides))]
    means: list[list[np.ndarray]] = [[] for _ in sides]
    for start in range(0, resamples, _BLOCK):
        block = min(_BLOCK, resamples - start)
        picked = query_rng.integers(0, queries, size=(block, queries))
        for side, rng, out in zip(sides, seed_rngs, means):
            seeds = side.shape[0]
            drawn = rng.integers(0, seeds, size=(block, seeds))
            weights = (drawn[:, :, None] == np.arange(seeds)).sum(axis=1)  # block × seeds: times each seed drawn
            rows = weights @ side / seeds  # block × queries: the drawn seeds' mean outcome per query
            out.append(np.take_along_axis(rows, picked, axis=1).mean(axis=1))
    return [np.concatenate(out) for out in means]


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)
