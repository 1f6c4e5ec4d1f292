"""How the verdict is decided, as pure arithmetic: the metric that scores a task, the break-even query count, and the
recommendation (the source material's order of tiers, a tolerance, and paired comparisons over the same queries)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.record.predictions import Outcomes, common_queries, matrix
from lightning_adapt.verdict.intervals import Difference, paired_difference

METRIC, ANSWER_TOKENS, MARGIN = "acc", 1, 0.02
"""The defaults of the report's `metric`, `answer_tokens` and `margin` (`build_report`), which `Compare` shares."""
TIERS = {0: "in-context learning", 1: "fine-tuning", 2: "continual pretraining"}
NOT_REACHED = "not reached"
"""A break-even entry for a run whose best score stays below the k-shot score (by more than the tolerance): cost
comparisons only count between runs that are at least as good."""


def metric_of(metric: str | dict[str, str], task: str) -> str:
    """The score used for `task`: one metric name for every task, or a per-task mapping (default "acc")."""
    return metric if isinstance(metric, str) else metric.get(task, METRIC)


def break_even_queries(training_flops: float, trained_query_flops: float, prompting_query_flops: float) -> int | None:
    """The smallest number of queries n after which training + n trained (0-shot) queries cost fewer FLOPs than n
    k-shot prompted queries: training + n·trained < n·prompting. None when a trained query is not cheaper."""
    saving = prompting_query_flops - trained_query_flops
    if saving <= 0:
        return None
    return math.floor(training_flops / saving) + 1


def first_reaching(points: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first timeline point whose score reaches `target`, or None."""
    return next((point for point in points if point["score"] >= target), None)


@dataclass(frozen=True)
class Candidate:
    """A method's best result on a task, as the recommendation rules see it; `outcomes` are its per-query values
    behind `score` (None without a predictions file), for paired comparisons."""

    method: str
    tier: int
    score: float
    flops: float
    outcomes: Outcomes | None = field(default=None, compare=False, repr=False)


def paired(costlier: Candidate, cheaper: Candidate) -> Difference | None:
    """`costlier`'s score minus `cheaper`'s, paired over the queries both have outcomes for (None without them)."""
    if costlier.outcomes is None or cheaper.outcomes is None:
        return None
    queries = common_queries(costlier.outcomes, cheaper.outcomes)
    if not queries:
        return None
    return paired_difference(matrix(costlier.outcomes, queries), matrix(cheaper.outcomes, queries))


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def comparison_text(costlier: Candidate, cheaper: Candidate, difference: Difference) -> str:
    """E.g. "lora vs icl: +0.030 [−0.020, +0.080]"."""
    return (f"{costlier.method} vs {cheaper.method}: {_signed(difference.mean)} "
            f"[{_signed(difference.low)}, {_signed(difference.high)}]")


def recommend(candidates: list[Candidate], tolerance: float) -> tuple[Candidate, list[str], list[dict[str, Any]]]:
    """Apply the source material's order: start with ICL (tier 0); move to fine-tuning (tier 1) only if its best beats
    every lower tier by more than `tolerance`; to continual pretraining (tier 2) only if it beats ICL and fine-tuning
    by more than `tolerance`. Within a tier, the run with the fewest training FLOPs among those within `tolerance` of
    the tier's best is taken. A tier's pick replaces the cheaper choice so far only if, besides, the paired bootstrap
    of their difference over the same queries is distinguishable above 0 (its interval's low end > 0); where either
    lacks per-query outcomes the tolerance rule alone decides, and the reason says so. Returns the choice, one line of
    reasoning per tier considered, and the paired comparisons made (plain data)."""
    tiers = sorted({c.tier for c in candidates})
    chosen: Candidate | None = None
    best_below, reasons, comparisons = -math.inf, [], []
    for tier in tiers:
        members = [c for c in candidates if c.tier == tier]
        top = max(c.score for c in members)
        pick = min((c for c in members if c.score >= top - tolerance), key=lambda c: (c.flops, -c.score))
        if chosen is None:
            chosen, best_below = pick, top
            continue
        beats = top > best_below + tolerance
        difference = paired(pick, chosen)
        reasons.append(_tier_reason(tier, pick, chosen, top, best_below, tolerance, beats, difference))
        if difference is not None:
            comparisons.append({"method": pick.method, "versus": chosen.method, "difference": difference.mean,
                                "interval": [difference.low, difference.high], "queries": difference.queries,
                                "distinguishable": difference.distinguishable})
        if beats and (difference is None or difference.low > 0):
            chosen = pick
        best_below = max(best_below, top)
    return chosen, reasons, comparisons


def _tier_reason(tier: int, pick: Candidate, chosen: Candidate, top: float, best_below: float, tolerance: float,
                 beats: bool, difference: Difference | None) -> str:
    """One line of `recommend`'s reasoning: whether the tier's pick beats the choice so far, and how surely."""
    line = (f"{TIERS[tier]} ({pick.method}: {top:.3f}) {'beats' if beats else 'does not beat'} {best_below:.3f} "
            f"by more than {tolerance:.3f}")
    if difference is None:
        return line + (f" (no per-query predictions for {pick.method} and {chosen.method}: the tolerance rule alone "
                       "decides)")
    where = f"on these {difference.queries} queries"
    text = comparison_text(pick, chosen, difference)
    if not beats:
        return line + f" ({text} {where})"
    if difference.low > 0:
        return line + f", and {text} is distinguishable {where}"
    return line + f", but {text}, not distinguishable {where}: choose the cheaper, {chosen.method}"
