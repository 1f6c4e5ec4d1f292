"""The verdict in words: numbers as report.md and the console show them, a data-size sweep's size to match ICL, and
the one-line recommendation per task that `compare` and `report` print and report.md opens with."""

from __future__ import annotations

from typing import Any

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


def queries_text(value: int | str | None) -> str:
    """A break-even count: a number, "never" (a trained query costs no less), or NOT_REACHED (score too low)."""
    if value == NOT_REACHED:
        return "never (score below k-shot)"
    return "never" if value is None else number_text(value)


def size_text(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}"


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


def verdict(name: str, task: dict[str, Any]) -> str:
    """The recommendation for one task and its break-even count, in one line (printed by compare, heads report.md)."""
    rec, k = task["recommendation"], task["break_even_k"]
    shown = "" if rec["interval"] is None else f" {interval_text(rec['interval'])}"
    line = f"{name}: recommend {rec['method']} ({rec['tier']}, {task['metric']} {rec['score']:.3f}{shown})"
    entry = task["methods"].get(rec["method"])
    if entry and entry["best"] and k is not None:
        even = entry["break_even"][str(k)]
        if even == NOT_REACHED:
            line += f"; does not reach {k}-shot prompting's score"
        else:
            line += f"; cheaper than {k}-shot prompting after {even:,} queries" if even else f"; never cheaper than {k}-shot"
    return line


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """The recommendation and break-even count per task, one line each (from the data of report.json)."""
    return [verdict(name, task) for name, task in report["tasks"].items()]
