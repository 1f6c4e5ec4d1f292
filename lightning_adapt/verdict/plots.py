"""The report's plots of report.json's numbers: timeline.png, forgetting.png and data.png (matplotlib, an optional
dependency, Agg backend, imported only here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_adapt.verdict.text import match_text

ICL_STYLES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))
"""One dash pattern per shot count k, so the ICL reference lines stay apart in print."""
AXES = (("flops", "training FLOPs (log scale)"), ("tokens", "training tokens (log scale)"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _method_colors(report: dict[str, Any]) -> dict[str, Any]:
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    trained = [run["method"] for run in report["runs"] if run["module"]]
    return {method: palette[i % len(palette)] for i, method in enumerate(trained)}


def _positive(points: list[dict[str, float]], axis: str) -> list[dict[str, float]]:
    """Points a log axis can show: ICL's x=0 is drawn as reference lines instead."""
    return [p for p in points if p[axis] > 0]


def _finish_axis(ax: Any, xs: list[float], label: str) -> None:
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    ax.set_xscale("log")
    if xs:
        low, high = min(xs) / 2, max(xs) * 2
        ax.set_xlim(low, high)
        few_decades = high / low < 100  # label 2·10^n and 5·10^n too, so a narrow axis still reads
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 2)) if few_decades else NullFormatter())
    else:
        ax.set_xlim(1, 10)
        ax.text(0.5, 0.08, "no trained evaluations", transform=ax.transAxes, ha="center", color="grey")
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax: Any) -> None:
    """The legend outside the right-hand panel, so it never covers a line."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9, frameon=False)


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    """One row per task: the score against training FLOPs (left) and training tokens (right); the base model's k-shot
    ICL scores as horizontal lines with bands (the 95% interval over seeds and queries; ±std across seeds where no
    predictions were written; the legend says which); one line per trained method (0-shot scores), with 95%-interval
    error bars over queries where predictions were written."""
    plt = _pyplot()
    tasks = report["tasks"]
    colors = _method_colors(report)
    fig, axes = plt.subplots(len(tasks), 2, figsize=(13, 4.2 * len(tasks)), squeeze=False, layout="constrained")
    for row, (name, task) in enumerate(tasks.items()):
        shots = task["icl"]["shots"]
        greys = plt.get_cmap("Greys")
        for col, (axis, label) in enumerate(AXES):
            ax = axes[row][col]
            for i, (k, value) in enumerate(shots.items()):
                shade = greys(0.4 + 0.6 * i / max(len(shots) - 1, 1))
                band = value["interval"] or [value["mean"] - value["std"], value["mean"] + value["std"]]
                what = "band: 95% interval" if value["interval"] else "band: ±std, no predictions"
                ax.axhline(value["mean"], color=shade, linestyle=ICL_STYLES[i % len(ICL_STYLES)], linewidth=1.3,
                           label=f"ICL k={k}: {value['mean']:.3f} ± {value['std']:.3f} std ({what})")
                if band[1] > band[0]:
                    ax.axhspan(*band, color=shade, alpha=0.12, linewidth=0)
            xs = []
            for method, entry in task["methods"].items():
                points = _positive(entry["timeline"], axis)
                xs += [p[axis] for p in points]
                bars = [p for p in points if p["interval"]]
                if points:
                    ax.plot([p[axis] for p in points], [p["score"] for p in points], marker="o", markersize=4,
                            color=colors[method], label=f"{method} (0-shot{'; bars: 95% interval' if bars else ''})")
                if bars:
                    below = [max(p["score"] - p["interval"][0], 0.0) for p in bars]
                    above = [max(p["interval"][1] - p["score"], 0.0) for p in bars]
                    ax.errorbar([p[axis] for p in bars], [p["score"] for p in bars], yerr=[below, above], fmt="none",
                                ecolor=colors[method], elinewidth=1, capsize=3)
            _finish_axis(ax, xs, label)
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(f"{name}: {task['metric']}")
            ax.set_title(f"{name}: {task['metric']} vs {label.split(' (')[0]}", fontsize=11)
        _legend(axes[row][1])
    fig.suptitle(f"{report['base_model']['name']}: ICL on the base model (horizontal lines, no training) vs training runs",
                 fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_forgetting(report: dict[str, Any], path: Path) -> None:
    """Change since the base model, against training FLOPs and tokens: the general-text held-out loss (first row) and
    the score on each general-ability task (a row each)."""
    plt = _pyplot()
    colors = _method_colors(report)
    rows = [("general-text loss", "change in general-text loss (nats/token)",
             {run["method"]: run["general_loss"] for run in report["runs"] if run["general_loss"]},
             "no run logged val/general_loss")]
    rows += [(f"{name} {task['metric']} (k={task['k']})", f"change in {task['metric']}", task["runs"],
              f"no trained run scored {name}") for name, task in report.get("general_tasks", {}).items()]
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 4.2 * len(rows)), squeeze=False, layout="constrained")
    for row, (title, ylabel, curves, empty) in enumerate(rows):
        for col, (axis, label) in enumerate(AXES):
            ax = axes[row][col]
            ax.axhline(0.0, color="black", linestyle="--", linewidth=1.2, label="base model (x = 0)")
            xs = []
            for method, curve in curves.items():
                points = _positive(curve, axis)
                xs += [p[axis] for p in points]
                if points:
                    final = points[-1]["change"]
                    ax.plot([p[axis] for p in points], [p["change"] for p in points], marker="o", markersize=4,
                            color=colors[method], label=f"{method} (final {final:+.3f})")
            _finish_axis(ax, xs, label)
            ax.set_ylabel(ylabel)
            ax.set_title(f"forgetting: {title} vs {label.split(' (')[0]}", fontsize=11)
            if not curves:
                ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", color="grey")
        _legend(axes[row][1])
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


def plot_data(report: dict[str, Any], path: Path) -> None:
    """Data efficiency, one row per task: the score against the labelled examples used (ICL's k-shot points at x = k,
    each fine-tuning curve's best score per training-set size; error bars: 95% intervals, or ± std over subset seeds
    where a size has several) and, when CPT runs have data sizes, against domain tokens; the best k-shot score as a
    dashed target line."""
    plt = _pyplot()
    efficiency = report["data_efficiency"]
    units = [unit for unit in DATA_AXES if any(c["unit"] == unit for t in efficiency.values() for c in t["curves"].values())]
    units = units or ["examples"]
    colors = _method_colors(report)
    fig, axes = plt.subplots(len(efficiency), len(units), figsize=(6.5 * len(units) + 2, 4.2 * len(efficiency)),
                             squeeze=False, layout="constrained")
    for row, (name, task) in enumerate(efficiency.items()):
        for col, unit in enumerate(units):
            ax = axes[row][col]
            ax.axhline(task["target"], color="grey", linestyle="--", linewidth=1.2,
                       label=f"best ICL (k={task['target_k']}): {task['target']:.3f}")
            xs = []
            if unit == "examples":
                shots = [p for p in task["icl"] if p["k"] > 0]
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
                            color=colors.get(points[0]["runs"][0]), marker="o", capsize=3, label=label)
            _finish_axis(ax, xs, DATA_AXES[unit])
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(f"{name}: {report['tasks'][name]['metric']} (best of each run)")
            ax.set_title(f"{name}: score vs {unit}", fontsize=11)
        handles = {label: handle for ax in axes[row] for handle, label in zip(*ax.get_legend_handles_labels())}
        axes[row][-1].legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9,
                             frameon=False)
    fig.suptitle("Data efficiency: how many labelled examples until training matches prompting", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
