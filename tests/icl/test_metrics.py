import math

import pytest

from lightning_adapt.icl import ICLResults, format_table
from lightning_adapt.icl.metrics import argmax, calibration, choice_metrics, generation_metric


def test_acc_and_length_normalised_acc():
    # log-likelihoods -1 and -2; per character: -1/1 = -1.0 vs -2/4 = -0.5
    assert choice_metrics([-1.0, -2.0], ["A", "BBBB"], gold=1) == {"acc": 0.0, "acc_norm": 1.0}
    assert choice_metrics([-1.0, -2.0], ["A", "BBBB"], gold=0) == {"acc": 1.0, "acc_norm": 0.0}
    assert argmax([0.5, 0.5, 0.1]) == 0  # ties go to the earlier choice, like numpy


def test_contextual_calibration_divides_by_the_content_free_distribution():
    p_cf = calibration([[math.log(0.8), math.log(0.2)]])
    assert p_cf == pytest.approx([0.8, 0.2])
    # p(y|x) = 0.6 / 0.4 -> raw prediction 0; calibrated 0.6/0.8 = 0.75 < 0.4/0.2 = 2 -> prediction 1
    metrics = choice_metrics([math.log(0.6), math.log(0.4)], ["Positive", "Negative"], gold=1, p_cf=p_cf)
    assert metrics["acc"] == 0.0 and metrics["acc_calibrated"] == 1.0
    # each content-free distribution is normalised over the choices, then averaged
    assert calibration([[math.log(0.3), math.log(0.1)], [math.log(0.5), math.log(0.5)]]) == pytest.approx([0.625, 0.375])


def test_generation_metrics():
    assert generation_metric(" Paris\n", "Paris", "exact_match") == 1.0
    assert generation_metric("Paris.", "Paris", "exact_match") == 0.0
    assert generation_metric("It is Paris.", " Paris", "contains") == 1.0
    assert generation_metric("It is Oslo.", "Paris", "contains") == 0.0


def test_results_mean_and_std_over_seeds_and_table():
    results = ICLResults(
        rows=[
            {"task": "sent", "k": 0, "seed": 0, "acc": 0.5, "prompt_tokens": 10.0},
            {"task": "sent", "k": 0, "seed": 1, "acc": 1.0, "prompt_tokens": 10.0},
            {"task": "sent", "k": 4, "seed": 0, "acc": 0.25, "prompt_tokens": 50.0},
            {"task": "sent", "k": 4, "seed": 1, "acc": 0.25, "prompt_tokens": 54.0},
        ],
        seconds={"sent": 1.5},
    )
    metrics = results.metrics()
    assert metrics["icl/sent/acc@k0"] == pytest.approx(0.75)
    assert metrics["icl/sent/acc_std@k0"] == pytest.approx(math.sqrt(0.125))  # sample std of 0.5, 1.0
    assert metrics["icl/sent/acc_std@k4"] == 0.0 and metrics["icl/sent/prompt_tokens@k4"] == 52.0
    assert metrics["icl/sent/seconds"] == 1.5
    table = format_table(results)
    assert table.splitlines()[0] == "sent (2 seed(s), 1.5 s)"
    assert "0 | 0.750 ± 0.354 |          10.0" in table and "4 | 0.250 ± 0.000 |          52.0" in table
