import math

import pytest

from lightning_adapt.verdict.intervals import Difference, mean_interval, paired_difference, seeds_queries_interval

N = 120


def outcomes(right: int, n: int = N) -> list[float]:
    """`right` correct answers (1.0) followed by wrong ones (0.0)."""
    return [1.0] * right + [0.0] * (n - right)


def binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest j with P(Binomial(n, p) <= j) >= q."""
    total = 0.0
    for j in range(n + 1):
        total += math.comb(n, j) * p**j * (1 - p) ** (n - j)
        if total >= q:
            return j
    return n


def test_identical_predictions_differ_by_zero_with_a_zero_width_interval():
    a = [outcomes(70)]
    assert paired_difference(a, a) == Difference(0.0, 0.0, 0.0, N)
    assert not paired_difference(a, a).distinguishable


def test_a_known_flip_count_gives_the_exact_and_the_normal_interval():
    """A right on 12 queries B gets wrong, equal elsewhere: the paired difference is the mean of a 0/1 flip
    indicator with p = 0.1, i.e. Binomial(120, 0.1) / 120. An unpaired bootstrap of the two accuracies (0.6 and
    0.5) would give about ±0.125 instead of ±0.054."""
    b = outcomes(60)
    a = list(b)
    for i in range(60, 72):  # 12 queries B gets wrong
        a[i] = 1.0
    diff = paired_difference([a], [b])
    assert diff.mean == pytest.approx(0.1) and diff.queries == N and diff.distinguishable
    # the exact percentile interval of Binomial(120, 0.1) / 120, within one query's step
    exact = binomial_quantile(N, 0.1, 0.025) / N, binomial_quantile(N, 0.1, 0.975) / N
    assert diff.low == pytest.approx(exact[0], abs=1 / N) and diff.high == pytest.approx(exact[1], abs=1 / N)
    # the normal approximation: 0.1 ± 1.96 · sqrt(p(1-p)/n) = [0.046, 0.154], within 0.015
    half = 1.96 * math.sqrt(0.1 * 0.9 / N)
    assert diff.low == pytest.approx(0.1 - half, abs=0.015) and diff.high == pytest.approx(0.1 + half, abs=0.015)


def test_flips_both_ways_are_not_distinguishable():
    """A gains 12 queries and loses 6: +0.05, but sd ≈ sqrt((18/120 - 0.05²)/120) = 0.035, so 0 is inside."""
    b = outcomes(60)
    a = list(b)
    for i in range(60, 72):
        a[i] = 1.0
    for i in range(6):
        a[i] = 0.0
    diff = paired_difference([a], [b])
    assert diff.mean == pytest.approx(0.05) and not diff.distinguishable
    half = 1.96 * math.sqrt((18 / N - 0.05**2) / N)
    assert diff.low == pytest.approx(0.05 - half, abs=0.015) and diff.high == pytest.approx(0.05 + half, abs=0.015)
    reverse = paired_difference([b], [a])
    assert reverse.mean == pytest.approx(-0.05) and reverse.low < 0 < reverse.high


def test_one_level_interval_matches_the_binomial():
    low, high = mean_interval(outcomes(72))  # 0.6 over 120 queries: se 0.0447
    half = 1.96 * math.sqrt(0.6 * 0.4 / N)
    assert low == pytest.approx(0.6 - half, abs=0.01) and high == pytest.approx(0.6 + half, abs=0.01)


def test_single_seed_and_identical_seeds_equal_the_one_level_bootstrap():
    values = outcomes(72)
    one_level = mean_interval(values)
    assert seeds_queries_interval([values]) == one_level
    assert seeds_queries_interval([values] * 3) == one_level  # resampling identical seeds changes nothing


def test_seed_spread_widens_the_interval():
    """Three seeds scoring 0.4, 0.6 and 0.8 on the same queries: wider than the queries alone say about 0.6."""
    rows = [outcomes(48), outcomes(72), outcomes(96)]
    low, high = seeds_queries_interval(rows)
    one_low, one_high = mean_interval(outcomes(72))
    assert low < 0.6 < high and high - low > 1.5 * (one_high - one_low)


def test_icl_seeds_are_resampled_in_the_paired_difference():
    spread = [outcomes(48), outcomes(72), outcomes(96)]
    steady = [outcomes(72)]
    assert paired_difference(steady, steady).high == 0.0
    wide = paired_difference(steady, spread)
    assert wide.mean == pytest.approx(0.0) and wide.low < -0.05 and wide.high > 0.05


def test_same_seed_same_interval_and_another_seed_another():
    values = [float(i % 3 == 0) for i in range(N)]
    assert mean_interval(values, seed=3) == mean_interval(values, seed=3)
    assert paired_difference([values], [outcomes(40)], seed=3) == paired_difference([values], [outcomes(40)], seed=3)
    assert mean_interval(values, seed=3) != mean_interval(values, seed=4)


def test_unpaired_or_empty_input_is_refused():
    with pytest.raises(ValueError, match="pair the same queries"):
        paired_difference([outcomes(10, 20)], [outcomes(10, 30)])
    with pytest.raises(ValueError, match="non-empty"):
        mean_interval([])
