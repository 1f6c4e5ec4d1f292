"""Per-query ICL metrics, defined as lm-evaluation-harness defines them.

- ``acc``: the choice with the highest log-likelihood is the gold one.
- ``acc_norm``: the same after dividing each log-likelihood by the choice's length in characters.
- ``acc_calibrated``: contextual calibration (Zhao et al., 2021): the choice probabilities given a
  content-free input ``p_cf`` (normalised over the choices, averaged over content-free inputs) divide
  the query's choice probabilities, i.e. the prediction is ``argmax(ll - log p_cf)``.
- ``exact_match`` / ``contains`` for generation: on whitespace-stripped prediction and target.
- ``chrf`` / ``rougeL`` for generation: sacrebleu's sentence chrF (character n-gram F-score, its defaults) and
  rouge-score's ROUGE-L F-measure (longest common subsequence of words), of the prediction against the target, both on
  a 0-1 scale (sacrebleu's chrF divided by 100), so that one margin reads the same for every metric.
- ``response_logprob`` for generation tasks: the mean per-token log-likelihood of the reference answer
  (``target_delimiter + answer``, tokenized as a choice is) given the prompt; no generation, a value <= 0.
- ``check_<name>`` for each of a generation task's checks: 1.0 when its regex is found in the whitespace-stripped
  reply, else 0.0; ``checks``: the fraction of the task's checks the reply passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

TEXT_METRICS = ("exact_match", "contains", "chrf", "rougeL")
"""The generation metrics that compare the greedy reply with the reference answer."""
RESPONSE_LOGPROB = "response_logprob"
GENERATION_METRICS = (*TEXT_METRICS, RESPONSE_LOGPROB)
"""Every metric a generation task can ask for (all "higher is better", all need a reference answer)."""
CHECKS = "checks"
"""The metric of a task with checks: per query, the fraction of its checks the reply passes."""


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
    """One of ``TEXT_METRICS`` of a generated prediction: ``exact_match``, ``contains`` (0.0 or 1.0), ``chrf`` or
    ``rougeL`` (0-1)."""
    if metric == "exact_match":
        return float(prediction.strip() == target.strip())
    if metric == "contains":
        return float(target.strip() in prediction)
    if metric == "chrf":
        return chrf(prediction, target)
    if metric == "rougeL":
        return rouge_l(prediction, target)
    raise ValueError(f"unknown generation metric {metric!r}; use one of {', '.join(TEXT_METRICS)}")


def chrf(prediction: str, target: str) -> float:
    """sacrebleu's sentence chrF of ``prediction`` against the one reference ``target``, divided by 100 (0-1)."""
    return _chrf().sentence_score(prediction, [target]).score / 100


def rouge_l(prediction: str, target: str) -> float:
    """rouge-score's ROUGE-L F-measure of ``prediction`` against ``target`` (0-1; its default tokenizer: lowercased
    words of letters and digits)."""
    return _rouge().score(target, prediction)["rougeL"].fmeasure


@functools.cache
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


@functools.cache
def _rouge() -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"])
