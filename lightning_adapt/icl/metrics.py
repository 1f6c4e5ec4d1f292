"""Per-query ICL metrics, defined as lm-evaluation-harness defines them.

- ``acc``: the choice with the highest log-likelihood is the gold one.
- ``acc_norm``: the same after dividing each log-likelihood by the choice's length in characters.
- ``acc_calibrated``: contextual calibration (Zhao et al., 2021): the choice probabilities given a
  content-free input ``p_cf`` (normalised over the choices, averaged over content-free inputs) divide
  the query's choice probabilities, i.e. the prediction is ``argmax(ll - log p_cf)``.
- ``exact_match`` / ``contains`` for generation: on whitespace-stripped prediction and target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def argmax(values: Sequence[float]) -> int:
    """Index of the first maximum (ties go to the earlier choice, as ``numpy.argmax``)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def calibration(content_free_lls: Sequence[Sequence[float]]) -> list[float]:
    """``p_cf``: the choice distribution given each content-free input, averaged over the inputs."""
    probs = [0.0] * len(content_free_lls[0])
    for lls in content_free_lls:
        top = max(lls)
        weights = [math.exp(ll - top) for ll in lls]
        total = sum(weights)
        for i, w in enumerate(weights):
            probs[i] += w / total / len(content_free_lls)
    return probs


def choice_metrics(
    lls: Sequence[float], choices: Sequence[str], gold: int, p_cf: Sequence[float] | None = None
) -> dict[str, float]:
    """``acc``, ``acc_norm`` and, given ``p_cf``, ``acc_calibrated`` of one query (each 0.0 or 1.0)."""
    metrics = {
        "acc": float(argmax(lls) == gold),
        "acc_norm": float(argmax([ll / len(c) for ll, c in zip(lls, choices)]) == gold),
    }
    if p_cf is not None:
        calibrated = [ll - math.log(max(p, 1e-300)) for ll, p in zip(lls, p_cf)]
        metrics["acc_calibrated"] = float(argmax(calibrated) == gold)
    return metrics


def generation_metric(prediction: str, target: str, metric: str) -> float:
    """``exact_match`` or ``contains`` of one generated prediction (0.0 or 1.0)."""
    if metric == "exact_match":
        return float(prediction.strip() == target.strip())
    if metric == "contains":
        return float(target.strip() in prediction)
    raise ValueError(f"unknown generation metric {metric!r}; use 'exact_match' or 'contains'")
