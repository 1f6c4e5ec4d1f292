"""How the verdict is decided, as pure arithmetic: the metric that scores a task, the break-even query count, the
comparison of two scores (paired over the same queries where both have per-query outcomes, else on their means with
the margin), and the recommendation (tiers in order of cost: prompting, fine-tuning, continual pretraining)."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.icl.metrics import CHECKS, GENERATION_METRICS
from lightning_adapt.record.predictions import Outcomes, common_queries, matrix
from lightning_adapt.verdict.intervals import Difference, paired_difference

ANSWER_TOKENS, MARGIN = 1, 0.02
"""The defaults of the report's `answer_tokens` and `margin` (`build_report`), which `Compare` shares."""
DEFAULT_METRICS = ("acc", CHECKS, *GENERATION_METRICS)
"""What scores a task that the `metric` setting does not name one for (it is None, or a mapping without the task):
the first of these the task logged (a choice task's accuracy; a generation task's checks pass rate, then its
reference metrics)."""
TIERS = {0: "in-context learning", 1: "fine-tuning", 2: "continual pretraining"}
NOT_REACHED = "not reached"
"""A break-even entry for a run whose score is distinguishably below the prompt's: cost comparisons only count
between runs that are at least as good."""


def metric_of(metric: str | dict[str, str] | None, task: str, logged: Collection[str]) -> str | None:
    """The score used for `task`: one metric name for every task, or a per-task mapping; a task the mapping does not
    list (every task with None) gets the first of `DEFAULT_METRICS` among the metrics it `logged` (None: it logged
    none of them)."""
    if isinstance(metric, str):
        return metric
    if metric and task in metric:
        return metric[task]
    return next((name for name in DEFAULT_METRICS if name in logged), None)


def break_even_queries(training_flops: float, trained_query_flops: float, prompting_query_flops: float) -> int | None:
    """The smallest number of queries n after which training + n trained (0-shot) queries cost fewer FLOPs than n
    k-shot prompted queries: training + n·trained < n·prompting. None when a trained query is not cheaper."""
    saving = prompting_query_flops - trained_query_flops
    if saving <= 0:
        return None
    return math.floor(training_flops / saving) + 1


@dataclass(frozen=True)
class Comparison:
    """One score minus another: `paired` over the queries both have per-query outcomes for, or (without them) only
    the difference of the means, `mean`."""

    mean: float
    paired: Difference | None

    def beats(self, margin: float) -> bool:
        """Better by more than `margin`, and (paired) distinguishably: the interval's low end above 0."""
        return self.mean > margin and (self.paired is None or self.paired.low > 0)

    def not_worse(self, margin: float) -> bool:
        """Not distinguishably worse: the paired interval's high end at or above 0 (without outcomes: the mean at
        most `margin` below)."""
        return self.paired.high >= 0 if self.paired is not None else self.mean >= -margin

    @property
    def data(self) -> dict[str, Any]:
        """As report.json holds it: the difference, its interval and the queries paired (None without outcomes)."""
        paired = self.paired
        return {"difference": self.mean, "interval": None if paired is None else [paired.low, paired.high],
                "queries": None if paired is None else paired.queries}


def compared(score: float, outcomes: Outcomes | None, other: float, other_outcomes: Outcomes | None) -> Comparison:
    """`score` minus `other`, paired over the queries both outcome sets hold where both have outcomes."""
    queries = common_queries(outcomes, other_outcomes) if outcomes and other_outcomes else []
    if not queries:
        return Comparison(score - other, None)
    difference = paired_difference(matrix(outcomes, queries), matrix(other_outcomes, queries))
    return Comparison(difference.mean, difference)


def rule_text(metric: str, margin: float, paired: bool, means_only: list[str]) -> str:
    """The decision rule in one sentence (report.json's `rule.how`), naming the `metric` the margin is in: paired
    where per-query outcomes exist, with the runs in `means_only` decided on their means; or on the means alone."""
    if not paired:
        return (f"Without per-query predictions the means decide: a costlier method is chosen over a cheaper one only "
                f"if its {metric} is more than the margin {margin:g} higher, and a score reaches another unless it is "
                f"more than {margin:g} below it.")
    line = (f"A costlier method is chosen over a cheaper one only if its test {metric} is more than the margin "
            f"{margin:g} higher and the 95% interval of their paired difference on the same test queries lies above "
            "0; a score reaches another (the same prompt, a break-even, a method within its tier) unless that "
            "interval lies below 0")
    if means_only:
        line += (f"; {', '.join(means_only)} wrote no per-query predictions, so there the means decide with the "
                 f"margin")
    return line + "."


@dataclass(frozen=True)
class Candidate:
    """A method's chosen result on a task, as the recommendation rules see it; `outcomes` are its per-query test
    values behind `score` (None without a predictions file), for paired comparisons; `point` names ICL's prompt."""

    method: str
    tier: int
    score: float
    flops: float
    outcomes: Outcomes | None = field(default=None, compare=False, repr=False)
    point: str | None = None

    @property
    def name(self) -> str:
        """E.g. "lora", "icl at k=2"."""
        return self.method if self.point is None else f"{self.method} at {self.point}"

    def versus(self, other: Candidate) -> Comparison:
        return compared(self.score, self.outcomes, other.score, other.outcomes)


def tier_pick(members: list[Candidate], margin: float) -> Candidate:
    """The member needing the fewest training FLOPs among those not distinguishably worse than the best."""
    top = max(members, key=lambda c: (c.score, -c.flops))
    return min((c for c in members if c.versus(top).not_worse(margin)), key=lambda c: (c.flops, -c.score))


def recommend(candidates: list[Candidate], margin: float) -> tuple[Candidate, list[str], list[dict[str, Any]]]:
    """Start with the cheapest tier's pick (ICL: tier 0); a costlier tier's pick (`tier_pick`) replaces the choice
    only if it beats every cheaper tier's pick (`Comparison.beats`): fine-tuning must beat ICL, continual pretraining
    ICL and fine-tuning. Returns the choice, one line of reasoning per tier considered, and the comparisons made."""
    picks: list[Candidate] = []
    chosen: Candidate | None = None
    reasons, comparisons = [], []
    for tier in sorted({c.tier for c in candidates}):
        pick = tier_pick([c for c in candidates if c.tier == tier], margin)
        if chosen is None:
            chosen = pick
            picks.append(pick)
            continue
        checks = [(cheaper, pick.versus(cheaper)) for cheaper in picks]
        comparisons += [{"method": pick.name, "versus": cheaper.name, **comparison.data,
                         "distinguishable": None if comparison.paired is None else comparison.paired.distinguishable,
                         "beats": comparison.beats(margin)} for cheaper, comparison in checks]
        failed = next(((cheaper, c) for cheaper, c in checks if not c.beats(margin)), None)
        against, comparison = failed or next((one for one in checks if one[0] is chosen), checks[-1])
        keep = chosen
        if failed is None:
            chosen = pick
        reasons.append(tier_reason(tier, pick, against, comparison, margin, keep))
        picks.append(pick)
    return chosen, reasons, comparisons


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def tier_reason(tier: int, pick: Candidate, cheaper: Candidate, comparison: Comparison, margin: float,
                kept: Candidate) -> str:
    """One line of `recommend`'s reasoning: the tier's pick (with its own score) against a cheaper pick, the
    difference and how sure it is, and what is chosen; `kept` is the choice so far."""
    beats = comparison.beats(margin)
    line = (f"{TIERS[tier]}: {pick.name} ({pick.score:.3f}) {'beats' if beats else 'does not beat'} "
            f"{cheaper.name} ({cheaper.score:.3f}): {_signed(comparison.mean)}")
    paired = comparison.paired
    if paired is None:
        line += (f" (no per-query predictions for {pick.name} and {cheaper.name}: the means decide), "
                 f"{'more' if beats else 'not more'} than the margin {margin:.3f}")
    else:
        how = (f"above 0 and above the margin {margin:.3f}" if beats else "below 0" if paired.high < 0
               else "not distinguishable from 0" if paired.low <= 0
               else f"above 0 but not above the margin {margin:.3f}")
        line += f" [{_signed(paired.low)}, {_signed(paired.high)}] on {paired.queries} test queries, {how}"
    return line + (f": choose {pick.name}" if beats else f": keep the cheaper, {kept.name}")
