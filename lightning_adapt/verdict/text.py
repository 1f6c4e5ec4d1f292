"""The verdict in words, shared by every view (report.md, report.html, the plots, the console): numbers as they are
shown, which evaluation step a number is from, a data-size sweep's size to match ICL, and the one-line
recommendation per task that `compare` and `report` print and the report opens with."""

from __future__ import annotations

from typing import Any

from lightning_adapt.icl.keys import HIT, docs_text
from lightning_adapt.verdict.data_efficiency import NOT_REACHED as CURVE_NOT_REACHED, SMALLEST
from lightning_adapt.verdict.rules import NOT_REACHED


def number_text(value: float | None, digits: int = 0) -> str:
    """A count with thousands separators, "n/a" for None."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def flops_text(value: float | None) -> str:
    """A FLOP count in three significant digits, "0" for none, "n/a" for None."""
    return "n/a" if value is None else "0" if value == 0 else f"{value:.3g}"


def interval_text(interval: list[float] | None) -> str:
    """A 95% interval as "[low, high]", or "n/a" (no per-query predictions)."""
    return "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def score_text(value: float | None) -> str:
    """A score in three decimals, "n/a" for None."""
    return "n/a" if value is None else f"{value:.3f}"


def tokens_text(point: dict[str, Any]) -> str:
    """What every query of a point pays: "100 prompt tokens", or where it generated its replies "100 prompt + 45.2
    generated tokens"."""
    prompt, generated = number_text(point["prompt_tokens"]), point.get("generated_tokens")
    if generated is None:
        return f"{prompt} prompt tokens"
    return f"{prompt} prompt + {number_text(generated, 1)} generated tokens"


def other_metrics(point: dict[str, Any], metric: str) -> dict[str, float | None]:
    """A point's test means of every metric but the one scoring its task (`metric`) and the retrieval hit rate."""
    return {name: value for name, value in (point.get("all_metrics") or {}).items() if name not in (metric, HIT)}


def metrics_text(point: dict[str, Any], metric: str) -> str:
    """A point's other metrics (`other_metrics`) in three decimals, e.g. "checks 0.900 · chrf 0.512 ·
    response_logprob -1.234"; "—" when it has none."""
    return " · ".join(f"{name} {score_text(value)}" for name, value in other_metrics(point, metric).items()) or "—"


def difference_text(versus: dict[str, Any] | None) -> str:
    """A paired difference in score, e.g. "+0.250 [+0.150, +0.350] on 120 test queries", or the difference of the
    means where no per-query predictions were written."""
    if versus is None:
        return "n/a"
    if versus["interval"] is None:
        return f"{versus['difference']:+.3f} (difference of the means; no per-query predictions)"
    low, high = versus["interval"]
    return f"{versus['difference']:+.3f} [{low:+.3f}, {high:+.3f}] on {number_text(versus['queries'])} test queries"


def queries_text(value: int | str | None) -> str:
    """A break-even count: a number, "never" (a trained query costs no less), or NOT_REACHED (score too low)."""
    if value == NOT_REACHED:
        return "never (score below)"
    return "never (not cheaper per query)" if value is None else number_text(value)


def arm_name(of: str, docs: int) -> str:
    """A trained arm's name: its run's (or search's) name, with documents in the prompt "<name> + 3 docs"."""
    return of + (f" + {docs_text(docs)}" if docs else "")


def size_text(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}"


def rate_text(rate: float | None) -> str:
    """A learning rate; None is a seeds-only search's: the run's own."""
    return "its own" if rate is None else f"{rate:g}"


def seen_text(point: dict[str, Any]) -> str:
    """The training data a point had seen: "80 examples (2,560 tokens)", or its tokens alone."""
    tokens = size_text(point["tokens_seen"], "tokens")
    return tokens if point["examples_seen"] is None else f"{size_text(point['examples_seen'], 'examples')} ({tokens})"


def file_text(train_file: dict[str, int] | None) -> str:
    """The size of a training file: "300 examples", "12,000 tokens", or "n/a" (not recorded)."""
    return "n/a" if not train_file else " and ".join(size_text(n, unit) for unit, n in train_file.items())


def match_text(curve: dict[str, Any]) -> str:
    """A curve's size to match ICL's best score, in words."""
    match = curve["to_match_icl"]
    if match["status"] == CURVE_NOT_REACHED:
        largest = curve["points"][-1]["size"]
        return f"not reached within the sweep (largest {size_text(largest, curve['unit'])})" if curve["swept"] \
            else f"not reached with {size_text(largest, curve['unit'])}"
    if match["status"] == SMALLEST:
        size = size_text(match["size"], curve["unit"])
        return f"≤ {size} (reached at the smallest size)" if curve["swept"] else f"reached with {size}"
    return f"≈ {size_text(match['size'], curve['unit'])} (interpolated)"


def seconds_text(value: float | None) -> str:
    """A duration in seconds, one decimal, "n/a" for None."""
    return number_text(value, 1)


def step_text(point: dict[str, Any], role: str) -> str:
    """Which evaluation a number is from, e.g. "at step 5, chosen on the selection queries" or "at step 10, the
    last evaluated" (`role`: CHOSEN or LAST)."""
    return f"at step {point['step']}, {role}"


SUBSAMPLED = ("evaluations on a seeded subsample of the queries (the same queries at every step and in every run), "
              "with wider intervals; no choice is made on them")
"""What a subsampled timeline point is (`ICLEvaluation(subsample=N)`)."""


def subsample_text(task: dict[str, Any]) -> str | None:
    """Which arms' evaluations of a task scored a subsample of its queries, and that no choice is made on them, e.g.
    "lora at steps 2, 4 (16 of 48 queries): ..."; None when every evaluation scored every query."""
    parts = []
    for name, arm in task["arms"].items():
        marked = [point for point in arm["timeline"] if point.get("subsample")]
        if marked:
            steps = ", ".join(str(point["step"]) for point in marked)
            size = marked[0]["subsample"]
            parts.append(f"{name} at step{'s' if len(marked) > 1 else ''} {steps} ({size['queries']} of "
                         f"{size['of']} queries)")
    if not parts:
        return None
    return (f"{'; '.join(parts)}: {SUBSAMPLED}. Chosen steps, learning rates and the step that reaches ICL are among "
            "the evaluations of every query (step 0 and each run's last).")


CHOSEN = "chosen on the selection queries"
"""The role of an arm's chosen point (its evaluation step with the best selection score)."""
LAST = "the last evaluated"
"""The role of an arm's last evaluated point."""


def target_text(label: str, task: dict[str, Any]) -> str:
    """The ICL point training data is measured against: the baseline, or (when the baseline holds documents) the best
    prompt without them."""
    return f"{label}, the baseline" if label == task["baseline"] else f"{label}, the best prompt without documents"


def verdict(name: str, task: dict[str, Any]) -> str:
    """The recommendation for one task in one line (printed by compare, heads report.md): the method (its prompt, or
    a search's chosen learning rate), its test score and interval and which evaluation step that is, and the query
    count after which it costs less than prompting with the task's one baseline (`baseline`), counting the whole
    search's cost too."""
    rec, label = task["recommendation"], task["baseline"]
    arm = task["arms"].get(rec["method"])
    what = [rec["tier"]]
    if rec["point"] is not None:
        what.append(rec["point"])
    if arm and arm["search"]:
        rate = arm["search"]["chosen_learning_rate"]
        what.append("its own learning rate" if rate is None else f"learning rate {rate:g}")
    shown = "" if rec["interval"] is None else f" {interval_text(rec['interval'])}"
    at = f" {step_text(arm['chosen'], CHOSEN)}" if arm and arm["chosen"] else ""
    line = f"{name}: recommend {rec['method']} ({', '.join(what)}; test {task['metric']} {rec['score']:.3f}{shown}{at})"
    if not arm or not arm["chosen"] or label is None:
        return line
    even = arm["break_even"][label]
    if even == NOT_REACHED:
        return line + f"; does not reach the score of prompting with {label}"
    if even is None:
        return line + f"; never cheaper than prompting with {label}"
    line += f"; cheaper than prompting with {label} after {even:,} queries"
    if arm["break_even_search"] is not None:
        line += f" ({queries_text(arm['break_even_search'][label])} counting the whole search)"
    return line


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """The recommendation and break-even count per task, one line each (from the data of report.json)."""
    return [verdict(name, task) for name, task in report["tasks"].items()]


def _listed(names: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]])) if names else ""


def selection_text(selection: dict[str, Any] | None, choices: list[str], unsplit: list[str], everywhere: bool,
                   selection_queries: int, test_queries: int | None) -> str:
    """The sentence report.md says how a task's choices were made in: on `selection_queries` held-out queries
    (`selection`, the task's split) and scored on `test_queries` others; or, `everywhere` without a selection part (no
    split, or no predictions naming the parts), on the queries the scores are reported on; `unsplit` names the runs
    for which that held while the others had one."""
    made = "Choices" + (f" of {_listed(choices)}" if choices else "")
    same = "the same queries" if test_queries is None else f"the same {test_queries} queries"
    if everywhere:
        why = ("The task has no selection split (selection: null)" if selection is None
               else "No per-query predictions" if test_queries is None
               else "The per-query predictions name no selection part")
        return f"{why}: {made.lower()} were made on {same} the scores are reported on."
    if selection is None:
        drawn = "held out"
    elif selection.get("path"):
        drawn = f"from {selection['path']}"
    else:
        drawn = f"{selection['fraction']:.0%} drawn with seed {selection['seed']}"
    line = (f"{made} were made on {selection_queries} selection queries ({drawn}); every score, interval, paired test "
            f"and break-even is on the other {number_text(test_queries)} test queries")
    if unsplit:
        line += (f", except that {_listed(unsplit)} wrote no per-query predictions with a selection part, so "
                 f"{'its' if len(unsplit) == 1 else 'their'} choices were made on the queries "
                 f"{'its' if len(unsplit) == 1 else 'their'} scores are reported on")
    return line + "."
