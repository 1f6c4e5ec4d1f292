import math

import pytest

from lightning_adapt.verdict.data_efficiency import NOT_REACHED, REACHED, SMALLEST, size_to_match


def test_a_crossing_between_sizes_is_interpolated_in_log_size():
    # 0.5 at 8 examples, 0.7 at 32: 0.6 lies halfway in log(size), at sqrt(8 * 32) = 16
    assert size_to_match([(8, 0.5), (32, 0.7), (128, 0.9)], 0.6) == {"status": REACHED, "size": pytest.approx(16.0)}
    # a quarter of the way from 32 to 128 in log(size): 32 * 4 ** 0.25
    match = size_to_match([(8, 0.5), (32, 0.7), (128, 0.9)], 0.75)
    assert match["status"] == REACHED and match["size"] == pytest.approx(32 * 4**0.25)
    assert size_to_match([(8, 0.5), (32, 0.7)], 0.7) == {"status": REACHED, "size": pytest.approx(32.0)}


def test_the_first_crossing_counts_even_if_the_curve_dips_later():
    match = size_to_match([(10, 0.4), (100, 0.8), (1000, 0.5)], 0.6)
    assert match["status"] == REACHED and match["size"] == pytest.approx(10 * math.sqrt(10))


def test_reached_at_the_smallest_size_and_never_reached():
    assert size_to_match([(8, 0.9), (32, 0.95)], 0.8) == {"status": SMALLEST, "size": 8}
    assert size_to_match([(8, 0.5), (32, 0.55), (128, 0.59)], 0.6) == {"status": NOT_REACHED, "size": None}
    assert size_to_match([], 0.6) == {"status": NOT_REACHED, "size": None}
