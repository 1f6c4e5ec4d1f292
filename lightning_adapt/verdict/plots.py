"""The report's plots of report.json's numbers, each written only when it has something to show (`drawn_plots`):
timeline.png (each arm's test score against the training FLOPs it spent, from the base model at 0; ICL's prompts as
reference lines; the verdict in each panel's title and marked), cost.png (test score against the prompt tokens paid
on every query), forgetting.png and data.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning_adapt.verdict.plot_style import (
    BAND_ALPHA,
    arm_colors,
    band,
    error_bars,
    group,
    icl_styles,
    legend,
    log_axis,
    mark_recommendation,
    pyplot,
    roles,
    score_axis,
    symlog_axis,
)
from lightning_adapt.verdict.text import match_text, target_text

FLOPS_AXIS = "training FLOPs spent (0 = the base model, log scale above)"
RINGED = "ringed: each arm's chosen step (best on the selection queries)"


def recommended(task: dict[str, Any], axis: str) -> tuple[str, float, float] | None:
    """The recommended method's label and where it sits: an arm's chosen point, or the baseline prompt (x: 0
    training FLOPs, or its prompt tokens)."""
    rec = task["recommendation"]
    arm = task["arms"].get(rec["method"])
    if arm is not None:
        chosen = arm["chosen"]
        return None if chosen is None else (f"{rec['method']}, step {chosen['step']}: {chosen['score']:.3f}",
                                            chosen[axis], chosen["score"])
    point = task["icl"]["points"][rec["point"] or task["baseline"]]
    x = 0.0 if axis == "flops" else point["prompt_tokens"]
    return f"ICL {point['label']}: {point['mean']:.3f}", x, point["mean"]


def panel_title(name: str, task: dict[str, Any]) -> str:
    """The verdict at a glance: what is recommended, at what score, against which baseline."""
    rec, base = task["recommendation"], task["icl"]["points"][task["baseline"]]
    return (f"{name}: recommended {rec['method']} (test {task['metric']} {rec['score']:.3f}); baseline ICL "
            f"{base['label']} {base['mean']:.3f}")


def draw_icl_lines(ax: Any, task: dict[str, Any]) -> None:
    """Every ICL point as a horizontal line in its own colour; a light band in that colour (its interval) for the
    baseline and the best prompt only, so the bands stay apart."""
    points = task["icl"]["points"]
    for label, (color, style) in icl_styles(points).items():
        point = points[label]
        span, what = band(point)
        banded = label in (task["baseline"], task["icl_best"]) and span[1] > span[0]
        shown = f"ICL {label}{roles(label, task)}: {point['mean']:.3f}" + (f", band: {what}" if banded else "")
        ax.axhline(point["mean"], color=color, linestyle=style, linewidth=1.6, label=shown)
        if banded:
            ax.axhspan(*span, color=color, alpha=BAND_ALPHA, linewidth=0)


def arm_label(name: str, arm: dict[str, Any]) -> str:
    """E.g. "lora: chosen step 5 0.790, last step 10 0.880 (mean of 2 seeds)"."""
    chosen, last = arm["chosen"], arm["last"]
    text = name
    if chosen:
        text += f": chosen step {chosen['step']} {chosen['score']:.3f}"
        if last and last["step"] != chosen["step"]:
            text += f", last step {last['step']} {last['score']:.3f}"
        if chosen["seeds"] > 1:
            text += f" (mean of {chosen['seeds']} seeds)"
    return text


def draw_arm(ax: Any, name: str, arm: dict[str, Any], color: str) -> list[float]:
    """An arm's test scores against training FLOPs from its step 0, with 95% intervals, its chosen step ringed, its
    evaluations on a subsample of the queries hollow; the x values drawn."""
    points = [p for p in arm["timeline"] if p["score"] is not None]
    if not points:
        return []
    xs, ys, docs = [p["flops"] for p in points], [p["score"] for p in points], arm["docs"] > 0
    ax.plot(xs, ys, color=color, linestyle="--" if docs else "-", marker="^" if docs else "o", markersize=5,
            linewidth=2, label=arm_label(name, arm))
    if bars := error_bars(points, "score"):
        ax.errorbar(xs, ys, yerr=bars, fmt="none", ecolor=color, elinewidth=1, capsize=3, alpha=0.6)
    if subsampled := [p for p in points if p.get("subsample")]:
        ax.plot([p["flops"] for p in subsampled], [p["score"] for p in subsampled], marker="^" if docs else "o",
                markersize=5, markerfacecolor="white", markeredgecolor=color, linestyle="none")
    if arm["chosen"]:
        ax.plot([arm["chosen"]["flops"]], [arm["chosen"]["score"]], marker="o", markersize=13,
                markerfacecolor="none", markeredgecolor=color, markeredgewidth=2, linestyle="none")
    return xs


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    """One panel per task, titled with its verdict: every arm's test score against its training FLOPs, from its
    step 0 (the base model, at 0) on a log scale above, 95%-interval error bars, its chosen step ringed; every ICL
    prompt on the base model as a horizontal line in a colour of its own (dashes: demonstrations only, dots: retrieved
    documents), the baseline and the best with a light band; the recommended method starred and labelled; evaluations
    on a subsample of the queries hollow."""
    plt = pyplot()
    tasks, colors = report["tasks"], arm_colors(report)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(13, 4.8 * len(tasks)), squeeze=False, layout="constrained")
    for ax, (name, task) in zip(axes[:, 0], tasks.items()):
        draw_icl_lines(ax, task)
        xs = [0.0]
        for arm_name, arm in task["arms"].items():
            xs += draw_arm(ax, arm_name, arm, colors[arm["of"]])
        if any(arm["chosen"] for arm in task["arms"].values()):
            ax.plot([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor="black",
                    linestyle="none", label=RINGED)
        if size := next((p["subsample"] for arm in task["arms"].values() for p in arm["timeline"]
                         if p.get("subsample")), None):
            ax.plot([], [], marker="o", markersize=6, markerfacecolor="white", markeredgecolor="black",
                    linestyle="none", label=f"hollow: {size['queries']} of {size['of']} queries (a seeded subsample; "
                                             "no choice made on it)")
        symlog_axis(ax, xs, FLOPS_AXIS)
        finish_score_panel(ax, name, task, "flops")
    fig.suptitle(f"{report['base_model']['name']}: test score against training compute; prompting the base model "
                 "(no training) as horizontal lines", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_scores(task: dict[str, Any]) -> list[float]:
    """Every score a task's panels may draw: ICL's means and bands, each arm's timeline scores and intervals."""
    values = [v for point in task["icl"]["points"].values() for v in (point["mean"], *band(point)[0])]
    for arm in task["arms"].values():
        values += [v for p in arm["timeline"] if p["score"] is not None for v in (p["score"], *(p["interval"] or []))]
    return values


def finish_score_panel(ax: Any, name: str, task: dict[str, Any], x: str) -> None:
    """A task's score panel completed: the score axis (`score_axis`), the recommended point starred at its `x`
    ("flops" or "prompt_tokens"), the title saying the verdict, the legend."""
    score_axis(ax, task_scores(task))
    if (mark := recommended(task, x)) is not None:
        mark_recommendation(ax, *mark)
    ax.set_ylabel(f"test {task['metric']}")
    ax.set_title(panel_title(name, task), fontsize=11, fontweight="bold")
    legend(ax)


def draw_icl_points(ax: Any, task: dict[str, Any]) -> list[float]:
    """Every ICL point at its prompt tokens in its own colour, labelled (squares: demonstrations only, diamonds:
    with documents; joined in k order per number of documents), with its band as error bars; the x values drawn."""
    points = task["icl"]["points"]
    styles = icl_styles(points)
    for docs in sorted({p["docs"] for p in points.values()}):
        line = sorted((p for p in points.values() if p["docs"] == docs), key=lambda p: p["k"])
        ax.plot([p["prompt_tokens"] for p in line], [p["mean"] for p in line], color="grey", linewidth=0.8,
                linestyle=":" if docs else "--")
    for label, point in points.items():
        span, _ = band(point)
        ax.errorbar([point["prompt_tokens"]], [point["mean"]],
                    yerr=[[point["mean"] - span[0]], [span[1] - point["mean"]]], color=styles[label][0],
                    marker="D" if point["docs"] else "s", markersize=8, capsize=3, markeredgecolor="black",
                    label=f"ICL {label}{roles(label, task)}")
        ax.annotate(label, (point["prompt_tokens"], point["mean"]), textcoords="offset points", xytext=(9, 0),
                    fontsize=8, va="center")
    return [p["prompt_tokens"] for p in points.values()]


def draw_chosen(ax: Any, name: str, arm: dict[str, Any], color: str) -> list[float]:
    """An arm's chosen point at its prompt tokens, labelled (circle: 0-shot, triangle: with documents); the x drawn."""
    chosen = arm["chosen"]
    if chosen is None:
        return []
    ax.errorbar([chosen["prompt_tokens"]], [chosen["score"]], yerr=error_bars([chosen], "score"), color=color,
                marker="^" if arm["docs"] else "o", markersize=8, capsize=3, linestyle="none",
                label=f"{name} (chosen step {chosen['step']})")
    ax.annotate(name, (chosen["prompt_tokens"], chosen["score"]), textcoords="offset points", xytext=(-9, 0),
                fontsize=8, color=color, ha="right", va="center")
    return [chosen["prompt_tokens"]]


def plot_cost(report: dict[str, Any], path: Path) -> None:
    """One panel per task: the test score against the prompt tokens paid on every query (log scale), for every ICL
    prompt (a colour each; squares: demonstrations only, diamonds: with documents) and each arm's chosen step
    (circles: 0-shot, triangles: with its documents), labelled, with 95% intervals; the recommended method starred."""
    plt = pyplot()
    tasks, colors = report["tasks"], arm_colors(report)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(12, 4.8 * len(tasks)), squeeze=False, layout="constrained")
    for ax, (name, task) in zip(axes[:, 0], tasks.items()):
        xs = draw_icl_points(ax, task)
        for arm_name, arm in task["arms"].items():
            xs += draw_chosen(ax, arm_name, arm, colors[arm["of"]])
        log_axis(ax, [x for x in xs if x > 0], "prompt tokens per query (log scale): what every query pays",
                 margin=1.8)
        finish_score_panel(ax, name, task, "prompt_tokens")
    fig.suptitle(f"{report['base_model']['name']}: test score against the prompt tokens every query pays "
                 "(trained arms at their chosen step)", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def forgetting_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, list[dict[str, float]]]]]:
    """(title, y label, curves per run) per forgetting panel: general-text loss, then each general-ability task;
    only those some run has a curve of (two points or more)."""
    rows = [("general-text loss", "change in general-text loss (nats/token)",
             {run["method"]: run["general_loss"] for run in report["runs"] if len(run["general_loss"]) > 1})]
    rows += [(f"{name} {task['metric']} (k={task['k']})", f"change in {task['metric']}",
              {method: curve for method, curve in task["runs"].items() if len(curve) > 1})
             for name, task in report.get("general_tasks", {}).items()]
    return [row for row in rows if row[2]]


def plot_forgetting(report: dict[str, Any], path: Path) -> None:
    """Change since the base model against training FLOPs (0 = the base model): the general-text held-out loss and the
    score on each general-ability task, a panel each; one colour per run or search (a search's runs share it)."""
    plt = pyplot()
    colors = arm_colors(report)
    runs = {run["method"]: run for run in report["runs"]}
    rows = forgetting_rows(report)
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 4.2 * len(rows)), squeeze=False, layout="constrained")
    for ax, (title, ylabel, curves) in zip(axes[:, 0], rows):
        ax.axhline(0.0, color="black", linestyle="--", linewidth=1.2, label="the base model")
        xs = [0.0]
        for method, curve in curves.items():
            xs += [p["flops"] for p in curve]
            ax.plot([p["flops"] for p in curve], [p["change"] for p in curve], marker="o", markersize=4,
                    color=colors[group(runs[method])], alpha=0.6 if group(runs[method]) != method else 1.0,
                    label=f"{method} (last validation {curve[-1]['change']:+.3f})")
        symlog_axis(ax, xs, FLOPS_AXIS)
        ax.set_ylabel(ylabel)
        ax.set_title(f"forgetting: {title} against training FLOPs", fontsize=11)
        legend(ax)
    fig.suptitle("Forgetting: a loss above 0 or a score below 0 is the model getting worse at general ability",
                 fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


DATA_AXES = {"examples": "labelled examples used (ICL: its k demonstrations; log scale)",
             "tokens": "domain training tokens used (log scale)"}


def swept(report: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per task, its data-size sweeps with two sizes or more (what data.png draws)."""
    return {name: found for name, task in report["data_efficiency"].items()
            if (found := {of: curve for of, curve in task["curves"].items()
                          if curve["swept"] and len(curve["points"]) > 1})}


def size_error_bars(points: list[dict[str, Any]]) -> list[list[float]]:
    """Below/above each point: its 95% interval where it has one (one seed: over queries; ICL: seeds × queries),
    else ± its std over seeds."""
    return [[p["mean"] - p["interval"][0] if p.get("interval") else p["std"] for p in points],
            [p["interval"][1] - p["mean"] if p.get("interval") else p["std"] for p in points]]


def member_group(report: dict[str, Any], task: str, member: str) -> str:
    """The colour group of a data-efficiency point's member: an arm of `task` (its `of`), else a run."""
    arm = report["tasks"][task]["arms"].get(member)
    if arm is not None:
        return arm["of"]
    return group(next(run for run in report["runs"] if run["method"] == member))


def data_scores(task: dict[str, Any], curves: dict[str, dict[str, Any]]) -> list[float]:
    """Every score a data-efficiency panel may draw: the target, ICL's and the curves' means and error bars."""
    points = [*task["icl"], *(p for curve in curves.values() for p in curve["points"])]
    return [task["target"], *(v for p in points
                              for v in (p["mean"], *(p["interval"] or (p["mean"] - p["std"], p["mean"] + p["std"]))))]


def plot_data(report: dict[str, Any], path: Path) -> None:
    """Data efficiency, one row per task with a sweep: each sweep's test score against the labelled examples (or
    domain tokens) it used, ICL's demonstration prompts at x = k (k = 0 at 0), error bars (95% intervals, or ± std
    over subset seeds), and the score of the ICL point training is measured against as a dashed target line."""
    plt = pyplot()
    sweeps, colors = swept(report), arm_colors(report)
    units = [unit for unit in DATA_AXES if any(c["unit"] == unit for t in sweeps.values() for c in t.values())]
    fig, axes = plt.subplots(len(sweeps), len(units), figsize=(6.5 * len(units) + 3, 4.4 * len(sweeps)),
                             squeeze=False, layout="constrained")
    for row, (name, curves) in enumerate(sweeps.items()):
        task = report["data_efficiency"][name]
        for ax, unit in zip(axes[row], units):
            ax.axhline(task["target"], color="grey", linestyle="--", linewidth=1.2,
                       label=f"ICL {target_text(task['target_point'], report['tasks'][name])}: {task['target']:.3f}")
            xs = [0.0]
            if unit == "examples":
                shots = sorted(task["icl"], key=lambda p: p["k"])
                xs += [p["k"] for p in shots]
                ax.errorbar([p["k"] for p in shots], [p["mean"] for p in shots], yerr=size_error_bars(shots),
                            color="black", marker="s", linestyle=":", capsize=3, label="ICL k-shot (x = k)")
            for of, curve in curves.items():
                if curve["unit"] == unit:
                    points = curve["points"]
                    xs += [p["size"] for p in points]
                    ax.errorbar([p["size"] for p in points], [p["mean"] for p in points],
                                yerr=size_error_bars(points), capsize=3, marker="o", linewidth=2,
                                color=colors[member_group(report, name, points[0]["runs"][0])],
                                label=f"{of} (sweep): to match ICL {match_text(curve)}")
            symlog_axis(ax, xs, DATA_AXES[unit], least=1.0)
            score_axis(ax, data_scores(task, curves))
            ax.set_ylabel(f"test {report['tasks'][name]['metric']} (chosen step)")
            ax.set_title(f"{name}: test score against {unit} used", fontsize=11)
        handles = {label: handle for ax in axes[row] for handle, label in zip(*ax.get_legend_handles_labels())}
        axes[row][-1].legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9,
                             frameon=False)
    fig.suptitle("Data efficiency: how much labelled data training needs to match prompting", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS: dict[str, Callable[[dict[str, Any], Path], None]] = {
    "timeline.png": plot_timeline, "cost.png": plot_cost, "forgetting.png": plot_forgetting, "data.png": plot_data}
"""Every plot the report may write, by file name."""


def drawn_plots(report: dict[str, Any]) -> list[str]:
    """The plots with something to show: the timeline and the cost plot always; forgetting.png when a trained run
    has a general-text loss or general-task curve; data.png when a data-size sweep has two sizes or more."""
    shown = {"timeline.png": True, "cost.png": True, "forgetting.png": bool(forgetting_rows(report)),
             "data.png": bool(swept(report))}
    return [name for name in PLOTS if shown[name]]
