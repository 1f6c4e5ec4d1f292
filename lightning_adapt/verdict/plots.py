"""The report's plots of report.json's numbers: timeline.png (each arm's test score against training FLOPs, ICL's
prompts as reference lines), cost.png (test score against the prompt tokens paid on every query), forgetting.png and
data.png (matplotlib, an optional dependency, Agg backend, imported only here)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning_adapt.verdict.text import match_text

DEMO_STYLES = ("--", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (8, 3)))
"""One dash pattern per demonstrations-only ICL prompt, so the reference lines stay apart in print."""
DOCS_STYLES = (":", (0, (1, 3)), (0, (2, 1, 1, 1)), (0, (1, 1)))
"""Dotted patterns for the prompts with retrieved documents: told apart from the demonstration prompts at a glance."""
ARM_PALETTE = (0, 1, 2, 3, 5, 6, 8, 9)
"""tab10's colours for the arms, without its purple and grey (the ICL prompts' colours)."""
FLOPS_AXIS = "training FLOPs (0 = the base model, then a log scale)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _group(run: dict[str, Any]) -> str:
    """The colour group of a run: the search it belongs to, else the run itself."""
    return (run.get("search") or {}).get("of", run["method"])


def _colors(report: dict[str, Any]) -> dict[str, Any]:
    """One colour per trained run or search, keyed by its name (an arm's `of`, a run's `_group`): an arm with
    documents in the prompt shares its run's colour."""
    import matplotlib

    tab10 = matplotlib.colormaps["tab10"].colors
    palette = [tab10[i] for i in ARM_PALETTE]
    names = [arm["of"] for task in report["tasks"].values() for arm in task["arms"].values()]
    names += [_group(run) for run in report["runs"] if run["module"]]
    return {name: palette[i % len(palette)] for i, name in enumerate(dict.fromkeys(names))}


def _icl_colors(points: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Per ICL point label: (colour, dash pattern): greys and dashes for demonstrations, purples and dots for documents,
    darker for more demonstrations or documents."""
    plt = _pyplot()
    out = {}
    for with_docs, cmap, styles in ((False, "Greys", DEMO_STYLES), (True, "Purples", DOCS_STYLES)):
        labels = [label for label, p in points.items() if bool(p["docs"]) == with_docs]
        for i, label in enumerate(labels):
            shade = plt.get_cmap(cmap)(0.5 + 0.45 * i / max(len(labels) - 1, 1))
            out[label] = (shade, styles[i % len(styles)])
    return out


def _band(point: dict[str, Any]) -> tuple[list[float], str]:
    """An ICL point's band: its 95% interval, else ± its std over seeds (no predictions); and which it is."""
    if point["interval"]:
        return point["interval"], "95% interval"
    return [point["mean"] - point["std"], point["mean"] + point["std"]], "±std, no predictions"


def _roles(label: str, task: dict[str, Any]) -> str:
    roles = [role for role, which in (("chosen", task["icl_chosen"]), ("best by selection", task["icl_best"]))
             if which == label]
    return f" ({', '.join(roles)})" if roles else ""


def _tick_text(value: float, _: Any = None) -> str:
    """A tick label: "0", "20", "5e11"."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _symlog_axis(ax: Any, xs: list[float], label: str) -> None:
    """A training-FLOPs axis that shows 0 (the base model): linear from 0 to a decade below the smallest positive
    value, log above; ticks at 1, 2 and 5 times each power of ten when the values span few decades."""
    from matplotlib.ticker import FuncFormatter, NullFormatter, SymmetricalLogLocator

    positive = [x for x in xs if x > 0]
    if positive:
        low, high = min(positive), max(positive)
        threshold = 10 ** (math.floor(math.log10(low)) - 1)
        ax.set_xscale("symlog", linthresh=threshold, linscale=0.5)
        ax.set_xlim(-0.2 * threshold, high * 1.6)
        ax.xaxis.set_major_locator(SymmetricalLogLocator(linthresh=threshold, base=10))
        ax.xaxis.set_major_formatter(FuncFormatter(_tick_text))
        few_decades = high / low < 100
        ax.xaxis.set_minor_locator(SymmetricalLogLocator(linthresh=threshold, base=10, subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_tick_text) if few_decades else NullFormatter())
    else:
        ax.set_xlim(-1, 1)
        ax.set_xticks([0])
        ax.text(0.5, 0.08, "no trained evaluations", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def _log_axis(ax: Any, xs: list[float], label: str, margin: float = 2.0) -> None:
    """A log axis over `xs` (widened by `margin` each way); 2·10^n and 5·10^n labelled too over few decades."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    if xs:
        low, high = min(xs) / margin, max(xs) * margin
        ax.set_xlim(low, high)
        ax.xaxis.set_major_formatter(FuncFormatter(_tick_text))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_tick_text) if high / low < 100 else NullFormatter())
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax: Any) -> None:
    """The legend outside the panel, so it never covers a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8.5, frameon=False)


def _error_bars_of(points: list[dict[str, Any]], value: str) -> list[list[float]] | None:
    """Below/above each point's `value`: its 95% interval (0 where a point has none); None when no point has one."""
    if not any(p["interval"] for p in points):
        return None
    return [[max(p[value] - p["interval"][0], 0.0) if p["interval"] else 0.0 for p in points],
            [max(p["interval"][1] - p[value], 0.0) if p["interval"] else 0.0 for p in points]]


def _draw_icl_lines(ax: Any, task: dict[str, Any]) -> None:
    """Every ICL point as a horizontal line; a light band (its interval) for the chosen and the best point only, so
    the bands stay apart."""
    points = task["icl"]["points"]
    for label, (color, style) in _icl_colors(points).items():
        point = points[label]
        band, what = _band(point)
        banded = label in (task["icl_chosen"], task["icl_best"]) and band[1] > band[0]
        shown = f"ICL {label}{_roles(label, task)}: {point['mean']:.3f}" + (f" (band: {what})" if banded else "")
        ax.axhline(point["mean"], color=color, linestyle=style, linewidth=1.4, label=shown)
        if banded:
            ax.axhspan(*band, color=color, alpha=0.12, linewidth=0)


def _draw_arm(ax: Any, name: str, arm: dict[str, Any], color: Any) -> list[float]:
    """An arm's test scores against training FLOPs, its 95% intervals, its chosen step ringed; the x values drawn."""
    points = [p for p in arm["timeline"] if p["score"] is not None]
    if not points:
        return []
    xs = [p["flops"] for p in points]
    docs = arm["docs"] > 0
    seeds = f", mean of {arm['chosen']['seeds']} seeds" if arm["chosen"] and arm["chosen"]["seeds"] > 1 else ""
    ax.plot(xs, [p["score"] for p in points], color=color, linestyle="--" if docs else "-", marker="^" if docs else "o",
            markersize=4, label=f"{name} ({'with documents' if docs else '0-shot'}{seeds})")
    bars = _error_bars_of(points, "score")
    if bars:
        ax.errorbar(xs, [p["score"] for p in points], yerr=bars, fmt="none", ecolor=color, elinewidth=1, capsize=3,
                    alpha=0.7)
    if arm["chosen"]:
        chosen = arm["chosen"]
        ax.plot([chosen["flops"]], [chosen["score"]], marker="o", markersize=12, markerfacecolor="none",
                markeredgecolor=color, markeredgewidth=2, linestyle="none")
    return xs


def _mark_recommendation(ax: Any, task: dict[str, Any], x: float, y: float) -> None:
    """A gold star behind the recommended method's point (drawn first among the markers: the point stays seen)."""
    ax.plot([x], [y], marker="*", markersize=26, markerfacecolor="gold", markeredgecolor="black", linestyle="none",
            label=f"recommended: {task['recommendation']['method']}", zorder=1.5)


def _recommended_point(task: dict[str, Any], axis: str) -> tuple[float, float] | None:
    """Where the recommended method sits: an arm's chosen point, or the chosen ICL prompt (x: 0 training FLOPs, or
    its prompt tokens)."""
    rec = task["recommendation"]
    arm = task["arms"].get(rec["method"])
    if arm is not None:
        return None if arm["chosen"] is None else (arm["chosen"][axis], arm["chosen"]["score"])
    point = task["icl"]["points"][rec.get("point") or task["icl_chosen"]]
    return (0.0 if axis == "flops" else point["prompt_tokens"]), point["mean"]


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    """One panel per task: every arm's test score against its training FLOPs (0 = the base model, drawn), 95%-interval
    error bars where predictions were written, its chosen step (on the selection queries) ringed; every ICL prompt on
    the base model as a horizontal line (dashes: demonstrations only, dots: retrieved documents), the chosen and the
    best one with a light band (95% interval, or ±std where no predictions were written); the recommended method
    starred."""
    plt = _pyplot()
    tasks, colors = report["tasks"], _colors(report)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(13, 4.6 * len(tasks)), squeeze=False, layout="constrained")
    for ax, (name, task) in zip(axes[:, 0], tasks.items()):
        _draw_icl_lines(ax, task)
        xs = [0.0]
        for arm_name, arm in task["arms"].items():
            xs += _draw_arm(ax, arm_name, arm, colors[arm["of"]])
        if any(arm["chosen"] for arm in task["arms"].values()):
            ax.plot([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black",
                    linestyle="none", label="ringed: each arm's chosen step")
        if (recommended := _recommended_point(task, "flops")) is not None:
            _mark_recommendation(ax, task, *recommended)
        _symlog_axis(ax, xs, FLOPS_AXIS)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{name}: {task['metric']} (test queries)")
        ax.set_title(f"{name}: test {task['metric']} against training FLOPs; ICL prompts on the base model as lines",
                     fontsize=11)
        _legend(ax)
    fig.suptitle(f"{report['base_model']['name']}: prompting (horizontal lines, no training) vs trained arms",
                 fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_icl_points(ax: Any, task: dict[str, Any]) -> list[float]:
    """Every ICL point at its prompt tokens, labelled (squares: demonstrations only, diamonds: with documents; joined
    in k order per number of documents), with its band as error bars; the x values drawn."""
    points = task["icl"]["points"]
    shades = _icl_colors(points)
    for docs in sorted({p["docs"] for p in points.values()}):
        line = sorted((p for p in points.values() if p["docs"] == docs), key=lambda p: p["k"])
        ax.plot([p["prompt_tokens"] for p in line], [p["mean"] for p in line], color="grey", linewidth=0.8,
                linestyle=":" if docs else "--")
    for label, point in points.items():
        band, _ = _band(point)
        bars = [[point["mean"] - band[0]], [band[1] - point["mean"]]]
        ax.errorbar([point["prompt_tokens"]], [point["mean"]], yerr=bars,
                    color=shades[label][0], marker="D" if point["docs"] else "s", markersize=7, capsize=3,
                    markeredgecolor="black", label=f"ICL {label}{_roles(label, task)}")
        ax.annotate(label, (point["prompt_tokens"], point["mean"]), textcoords="offset points", xytext=(9, 0),
                    fontsize=8, va="center")
    return [p["prompt_tokens"] for p in points.values()]


def _draw_chosen(ax: Any, name: str, arm: dict[str, Any], color: Any) -> list[float]:
    """An arm's chosen point at its prompt tokens, labelled (circle: 0-shot, triangle: with documents); the x drawn."""
    chosen = arm["chosen"]
    if chosen is None:
        return []
    ax.errorbar([chosen["prompt_tokens"]], [chosen["score"]], yerr=_error_bars_of([chosen], "score"), color=color,
                marker="^" if arm["docs"] else "o", markersize=8, capsize=3, linestyle="none",
                label=f"{name} (step {chosen['step']})")
    ax.annotate(name, (chosen["prompt_tokens"], chosen["score"]), textcoords="offset points", xytext=(-9, 0),
                fontsize=8, color=color, ha="right", va="center")
    return [chosen["prompt_tokens"]]


def plot_cost(report: dict[str, Any], path: Path) -> None:
    """One panel per task: the test score against the prompt tokens paid on every query (log scale), for every ICL
    prompt (squares: demonstrations only, diamonds: with retrieved documents) and each arm's chosen step (circles:
    0-shot, triangles: with its documents), labelled, with 95% intervals (ICL without predictions: ± std); the
    recommended method starred."""
    plt = _pyplot()
    tasks, colors = report["tasks"], _colors(report)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(11, 4.8 * len(tasks)), squeeze=False, layout="constrained")
    for ax, (name, task) in zip(axes[:, 0], tasks.items()):
        xs = _draw_icl_points(ax, task)
        for arm_name, arm in task["arms"].items():
            xs += _draw_chosen(ax, arm_name, arm, colors[arm["of"]])
        if (recommended := _recommended_point(task, "prompt_tokens")) is not None:
            _mark_recommendation(ax, task, *recommended)
        _log_axis(ax, [x for x in xs if x > 0], "prompt tokens per query (log scale): what every query pays",
                  margin=1.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{name}: {task['metric']} (test queries)")
        ax.set_title(f"{name}: test {task['metric']} against the prompt tokens paid on every query (trained arms: "
                     "at their chosen step)", fontsize=11)
        _legend(ax)
    fig.suptitle(f"{report['base_model']['name']}: accuracy against the tokens paid on every query", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_forgetting(report: dict[str, Any], path: Path) -> None:
    """Change since the base model against training FLOPs (0 = the base model): the general-text held-out loss (first
    panel) and the score on each general-ability task (a panel each); one colour per run or search (a search's runs
    share it)."""
    plt = _pyplot()
    colors = _colors(report)
    runs = {run["method"]: run for run in report["runs"]}
    rows = [("general-text loss", "change in general-text loss (nats/token)",
             {run["method"]: run["general_loss"] for run in report["runs"] if run["general_loss"]},
             "no run logged val/general_loss")]
    rows += [(f"{name} {task['metric']} (k={task['k']})", f"change in {task['metric']}", task["runs"],
              f"no trained run scored {name}") for name, task in report.get("general_tasks", {}).items()]
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 4.2 * len(rows)), squeeze=False, layout="constrained")
    for ax, (title, ylabel, curves, empty) in zip(axes[:, 0], rows):
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1.2, label="base model")
        xs = [0.0]
        for method, curve in curves.items():
            group = _group(runs[method])
            xs += [p["flops"] for p in curve]
            ax.plot([p["flops"] for p in curve], [p["change"] for p in curve], marker="o", markersize=4,
                    color=colors[group], alpha=0.6 if group != method else 1.0,
                    label=f"{method} (last validation {curve[-1]['change']:+.3f})")
        _symlog_axis(ax, xs, FLOPS_AXIS)
        ax.set_ylabel(ylabel)
        ax.set_title(f"forgetting: {title} against training FLOPs", fontsize=11)
        if not curves:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color="grey")
        _legend(ax)
    fig.suptitle("Forgetting: a loss above 0 or a score below 0 is the model getting worse at general ability",
                 fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


DATA_AXES = {"examples": "labelled examples (log scale; ICL: its k demonstrations)",
             "tokens": "domain training tokens (log scale)"}


def _error_bars(points: list[dict[str, Any]]) -> list[list[float]]:
    """Below/above each point: its 95% interval where it has one (one seed: over queries; ICL: seeds × queries),
    else ± its std over seeds."""
    return [[p["mean"] - p["interval"][0] if p.get("interval") else p["std"] for p in points],
            [p["interval"][1] - p["mean"] if p.get("interval") else p["std"] for p in points]]


def _member_group(report: dict[str, Any], task: str, member: str) -> str:
    """The colour group of a data-efficiency point's member: an arm of `task` (its `of`), else a run."""
    arm = report["tasks"][task]["arms"].get(member)
    if arm is not None:
        return arm["of"]
    return _group(next(run for run in report["runs"] if run["method"] == member))


def plot_data(report: dict[str, Any], path: Path) -> None:
    """Data efficiency, one row per task: the test score against the labelled examples used (ICL's demonstration
    prompts at x = k, each fine-tuning curve's score at its chosen step per training-set size; error bars: 95%
    intervals, or ± std over subset seeds where a size has several) and, when CPT runs have data sizes, against domain
    tokens; the best ICL score as a dashed target line."""
    plt = _pyplot()
    efficiency = report["data_efficiency"]
    units = [unit for unit in DATA_AXES
             if any(c["unit"] == unit for t in efficiency.values() for c in t["curves"].values())]
    units = units or ["examples"]
    colors = _colors(report)
    fig, axes = plt.subplots(len(efficiency), len(units), figsize=(6.5 * len(units) + 2, 4.2 * len(efficiency)),
                             squeeze=False, layout="constrained")
    for row, (name, task) in enumerate(efficiency.items()):
        for col, unit in enumerate(units):
            ax = axes[row][col]
            ax.axhline(task["target"], color="grey", linestyle="--", linewidth=1.2,
                       label=f"ICL {task['target_point']} (chosen without documents): {task['target']:.3f}")
            xs = []
            if unit == "examples":
                shots = [p for p in task["icl"] if p["k"] > 0 and not p.get("docs")]
                xs += [p["k"] for p in shots]
                if shots:
                    ax.errorbar([p["k"] for p in shots], [p["mean"] for p in shots], yerr=_error_bars(shots),
                                color="black", marker="s", linestyle=":", capsize=3, label="ICL k-shot (x = k)")
            for of, curve in task["curves"].items():
                if curve["unit"] != unit:
                    continue
                points = curve["points"]
                xs += [p["size"] for p in points]
                label = f"{of} (sweep): to match ICL {match_text(curve)}" if curve["swept"] else of
                ax.errorbar([p["size"] for p in points], [p["mean"] for p in points], yerr=_error_bars(points),
                            color=colors[_member_group(report, name, points[0]["runs"][0])], marker="o", capsize=3,
                            label=label)
            _log_axis(ax, xs, DATA_AXES[unit])
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(f"{name}: {report['tasks'][name]['metric']} (test, chosen step)")
            ax.set_title(f"{name}: score vs {unit}", fontsize=11)
        handles = {label: handle for ax in axes[row] for handle, label in zip(*ax.get_legend_handles_labels())}
        axes[row][-1].legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9,
                             frameon=False)
    fig.suptitle("Data efficiency: how many labelled examples until training matches prompting", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
