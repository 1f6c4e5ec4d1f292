"""How the report's plots look: matplotlib (an optional dependency, Agg backend, imported only here and in
`verdict.plots`), one colour per trained arm, one per ICL prompt, the axes that include 0, the score axis (0 to 1 for a
rate, else the scores' own range), the legend, the recommended method's mark."""

from __future__ import annotations

import math
from typing import Any

ARM_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#1b9e77", "#7570b3", "#e6ab02", "#000000")
"""The arms' colours: tab10's blue, orange, green and red, then Dark2's; none is an ICL colour."""
ICL_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#4b0082", "#b8860b")
"""One colour per ICL prompt, its line and its band (tab10's purple, brown, pink, grey, olive, cyan, then indigo and
dark gold): none is an arm's colour."""
DEMO_STYLE, DOCS_STYLES = "--", (":", (0, (1, 3)), (0, (3, 1, 1, 1)), (0, (1, 1)))
"""ICL lines: dashed with demonstrations only; dotted patterns with retrieved documents (one per number of them)."""
BAND_ALPHA = 0.16


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def group(run: dict[str, Any]) -> str:
    """The colour group of a run: the search it belongs to, else the run itself."""
    return (run.get("search") or {}).get("of", run["method"])


def arm_colors(report: dict[str, Any]) -> dict[str, str]:
    """One colour per trained run or search, keyed by its name (an arm's `of`, a run's `group`): an arm with
    documents in the prompt shares its run's colour."""
    names = [arm["of"] for task in report["tasks"].values() for arm in task["arms"].values()]
    names += [group(run) for run in report["runs"] if run["module"]]
    return {name: ARM_COLORS[i % len(ARM_COLORS)] for i, name in enumerate(dict.fromkeys(names))}


def icl_styles(points: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """Per ICL point label: (colour, line style): a colour per prompt (in order of documents, then k), the style
    whether (and how many) documents."""
    ordered = sorted(points, key=lambda label: (points[label]["docs"], points[label]["k"]))
    docs = sorted({p["docs"] for p in points.values() if p["docs"]})
    return {label: (ICL_COLORS[ordered.index(label) % len(ICL_COLORS)],
                    DOCS_STYLES[docs.index(p["docs"]) % len(DOCS_STYLES)] if p["docs"] else DEMO_STYLE)
            for label, p in points.items()}


def band(point: dict[str, Any]) -> tuple[list[float], str]:
    """An ICL point's band: its 95% interval, else ± its std over seeds (no predictions); and which it is."""
    if point["interval"]:
        return point["interval"], "95% interval"
    return [point["mean"] - point["std"], point["mean"] + point["std"]], "± std, no per-query predictions"


def roles(label: str, task: dict[str, Any]) -> str:
    """" (baseline, best by selection)" for the points that are either, else ""."""
    found = [role for role, which in (("baseline", task["baseline"]), ("best by selection", task["icl_best"]))
             if which == label]
    return f" ({', '.join(found)})" if found else ""


def tick_text(value: float, _: Any = None) -> str:
    """A tick label: "0", "20", "5e11"."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def symlog_axis(ax: Any, xs: list[float], label: str, least: float = 0.0) -> None:
    """An x axis that shows 0 (the base model, no data) and is logarithmic above: linear from 0 to the power of ten
    at or below the smallest positive value (at least `least`: 1 for counts); ticks at 1, 2 and 5 times each power
    of ten above it, the 2s and 5s labelled when the values span few decades."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    positive = [x for x in xs if x > 0]
    if positive:
        low, high = min(positive), max(positive)
        threshold = max(10.0 ** math.floor(math.log10(low)), least)
        ax.set_xscale("symlog", linthresh=threshold, linscale=0.4)
        ax.set_xlim(-0.15 * threshold, high * 1.8)
        decades = [threshold * 10**i for i in range(math.ceil(math.log10(high * 1.8 / threshold)) + 1)]
        ax.xaxis.set_major_locator(FixedLocator([0.0, *decades]))
        ax.xaxis.set_major_formatter(FuncFormatter(tick_text))
        ax.xaxis.set_minor_locator(FixedLocator([m * d for d in decades for m in (2, 5) if m * d <= high * 1.8]))
        ax.xaxis.set_minor_formatter(FuncFormatter(tick_text) if high / threshold < 100 else NullFormatter())
    else:
        ax.set_xlim(-1, 1)
        ax.set_xticks([0])
        ax.text(0.5, 0.08, "no trained evaluations", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def log_axis(ax: Any, xs: list[float], label: str, margin: float = 2.0) -> None:
    """A log axis over `xs` (widened by `margin` each way); 2·10^n and 5·10^n labelled too over few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    if xs:
        low, high = min(xs) / margin, max(xs) * margin
        ax.set_xlim(low, high)
        ax.xaxis.set_major_formatter(FuncFormatter(tick_text))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(tick_text) if high / low < 100 else NullFormatter())
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def score_axis(ax: Any, values: list[float]) -> None:
    """The score axis: 0 to 1 where every value drawn lies there (a rate: accuracy, a pass rate, chrF); else (e.g. a
    mean log-likelihood, below 0) the values' own range with a twentieth of it spare each way."""
    if all(0.0 <= value <= 1.0 for value in values):
        ax.set_ylim(-0.02, 1.04)
        return
    low, high = min(values), max(values)
    spare = (high - low) / 20 or max(abs(high) / 10, 0.1)
    ax.set_ylim(low - spare, high + spare)


def legend(ax: Any) -> None:
    """The legend outside the panel, so it never covers a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, frameon=False)


def error_bars(points: list[dict[str, Any]], value: str) -> list[list[float]] | None:
    """Below/above each point's `value`: its 95% interval (0 where a point has none); None when no point has one."""
    if not any(p["interval"] for p in points):
        return None
    return [[max(p[value] - p["interval"][0], 0.0) if p["interval"] else 0.0 for p in points],
            [max(p["interval"][1] - p[value], 0.0) if p["interval"] else 0.0 for p in points]]


def mark_recommendation(ax: Any, text: str, x: float, y: float) -> None:
    """A gold star behind the recommended method's point, and a label pointing at it from the middle of the panel's
    emptier half (call it once the axes' limits are set)."""
    ax.plot([x], [y], marker="*", markersize=24, markerfacecolor="gold", markeredgecolor="black", linestyle="none",
            label="recommended", zorder=1.5)
    low, high = ax.get_ylim()
    upper = (y - low) / (high - low) > 0.5
    ax.annotate(f"recommended: {text}", (x, y), xytext=(0.5, 0.3 if upper else 0.7), textcoords="axes fraction",
                fontsize=9, fontweight="bold", va="center", ha="center",
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "lightyellow", "edgecolor": "goldenrod"},
                arrowprops={"arrowstyle": "->", "color": "goldenrod"})
