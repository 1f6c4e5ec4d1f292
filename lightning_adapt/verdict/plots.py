"""The report's renderings of report.json's numbers: timeline.png and forgetting.png (matplotlib, Agg backend,
imported only here) and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_adapt.verdict.data_efficiency import NOT_REACHED as CURVE_NOT_REACHED, SMALLEST
from lightning_adapt.verdict.report import NOT_REACHED

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


def _size(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}"


def match_text(curve: dict[str, Any]) -> str:
    """A curve's size to match ICL's best score, in words."""
    match = curve["to_match_icl"]
    if match["status"] == CURVE_NOT_REACHED:
        largest = curve["points"][-1]["size"]
        return f"not reached within the sweep (largest {_size(largest, curve['unit'])})" if curve["swept"] \
            else f"not reached with {_size(largest, curve['unit'])}"
    if match["status"] == SMALLEST:
        size = _size(match["size"], curve["unit"])
        return f"≤ {size} (reached at the smallest size)" if curve["swept"] else f"reached with {size}"
    return f"≈ {_size(match['size'], curve['unit'])} (interpolated)"


def _versus(predicted: float | None, measured: float | None, show) -> str:
    if predicted is None or measured is None:
        return "n/a"
    ratio = f" ({predicted / measured - 1:+.0%})" if measured else ""
    return f"{show(predicted)} vs {show(measured)}{ratio}"


def estimate_table(report: dict[str, Any]) -> list[str]:
    """The predicted-vs-measured table, one row per run with an estimate (none: no lines): each run's estimate made
    before it trained (`compare`'s `estimate`) beside what `Accounting` then measured."""
    rows = [
        [r["method"], _versus(r["estimate"]["predicted_peak_bytes"], r["peak_memory_bytes"], format_bytes),
         _versus(r["estimate"]["predicted_train_s"], r["train_s"], lambda v: f"{v:,.1f} s"),
         _versus(r["estimate"]["training_flops"], r["training_flops"], _e)]
        for r in report["runs"] if r.get("estimate")
    ]
    return [_table(["run", "peak memory", "time in training steps", "training FLOPs"], rows)] if rows else []


def estimate_section(report: dict[str, Any]) -> list[str]:
    """report.md's predicted-vs-measured section (nothing when no run was estimated)."""
    table = estimate_table(report)
    if not table:
        return []
    return ["## Predicted vs measured", "",
            "Each run's estimate, made before it trained from a probe of 2 warm-up + 3 timed real steps "
            "(`lightning-adapt estimate`), against what it measured (predicted vs measured, relative error).", "",
            *table, ""]


def data_section(report: dict[str, Any]) -> list[str]:
    """report.md's data-efficiency section: per task and curve, the scores per size and the size to match ICL."""
    out = ["## Data efficiency", "", "![data](data.png)", "",
           "Each trained run's best score against the data it trained on (sweep sizes are nested seeded subsets, "
           "every size trained for the same number of optimizer steps); ICL's k demonstrations count as k labelled "
           "examples. The size to match ICL is interpolated in log(size) between the sweep's sizes.", ""]
    rows = [
        [name, of, " · ".join(f"{_size(p['size'], curve['unit'])}: {p['mean']:.3f}"
                              + (f" ± {p['std']:.3f} ({p['seeds']} seeds)" if p["seeds"] > 1 else "")
                              for p in curve["points"]),
         f"{task['target']:.3f} (k={task['target_k']})", match_text(curve)]
        for name, task in report["data_efficiency"].items() for of, curve in task["curves"].items()
    ]
    out += [_table(["task", "run", "best score per data size", "best ICL", "data to match ICL"], rows) if rows
            else "No trained run recorded its training-set size.", ""]
    return out


# --- report.md -----------------------------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _e(value: float | None) -> str:
    return "n/a" if value is None else "0" if value == 0 else f"{value:.3g}"


def format_bytes(value: float | None) -> str:
    """Bytes in B, kB, MB or GB (decimal), "n/a" for None."""
    if value is None:
        return "n/a"
    size, unit = next(((size, unit) for size, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if value >= size), (1, "B"))
    return f"{value / size:.1f} {unit}"


def _ci(interval: list[float] | None) -> str:
    """A 95% interval as "[low, high]", or "n/a" (no per-query predictions)."""
    return "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _queries(value: int | str | None) -> str:
    """A break-even count: a number, "never" (a trained query costs no less), or NOT_REACHED (score too low)."""
    if value == NOT_REACHED:
        return "never (score below k-shot)"
    return "never" if value is None else _n(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def verdict(name: str, task: dict[str, Any]) -> str:
    """The recommendation for one task and its break-even count, in one line (printed by compare, heads report.md)."""
    rec, k = task["recommendation"], task["break_even_k"]
    shown = "" if rec["interval"] is None else f" {_ci(rec['interval'])}"
    line = f"{name}: recommend {rec['method']} ({rec['tier']}, {task['metric']} {rec['score']:.3f}{shown})"
    entry = task["methods"].get(rec["method"])
    if entry and entry["best"] and k is not None:
        even = entry["break_even"][str(k)]
        if even == NOT_REACHED:
            line += f"; does not reach {k}-shot prompting's score"
        else:
            line += f"; cheaper than {k}-shot prompting after {even:,} queries" if even else f"; never cheaper than {k}-shot"
    return line


def _recommendation_line(name: str, task: dict[str, Any]) -> str:
    """The verdict, then the numbers it rests on."""
    rec, icl, k = task["recommendation"], task["icl"]["shots"], task["icl_recommended_k"]
    line = (f"- **{verdict(name, task)}**. ICL on the base model reaches {icl[str(k)]['mean']:.3f} ± "
            f"{icl[str(k)]['std']:.3f} (95% interval {_ci(icl[str(k)]['interval'])}) with k={k} (best "
            f"{task['icl_best']['mean']:.3f} at k={task['icl_best']['k']}); tolerance {task['tolerance']:.3f}. ")
    line += "; ".join(rec["reasons"]) + "." if rec["reasons"] else ""
    chosen, k = task["methods"].get(rec["method"]), task["break_even_k"]
    if chosen and chosen["best"]:
        best = chosen["best"]
        line += (f" {rec['method']} reaches {best['score']:.3f} (95% interval {_ci(best['interval'])}) after "
                 f"{_n(best['tokens'])} training tokens "
                 f"({_e(best['flops'])} FLOPs)")
        if k is not None:
            line += f"; a {k}-shot query costs {_e(icl[str(k)]['query_flops'])} FLOPs, a 0-shot one " \
                    f"{_e(best['query_flops'])}"
        line += "."
    return line


def markdown(report: dict[str, Any]) -> str:
    """report.md: the recommendation, the six-dimension table, scores, break-even counts, ICL detail, forgetting."""
    tasks, runs = report["tasks"], report["runs"]
    trained = [r for r in runs if r["module"]]
    icl_run = next((r for r in runs if not r["module"]), None)
    names = list(tasks)
    out = [f"# Adaptation report: {report['base_model']['name']}", "",
           f"Base checkpoint `{report['base_model']['checkpoint_dir']}`; runs: "
           + ", ".join(f"`{r['method']}`" for r in runs) + f"; tasks: {', '.join(names)}.", "",
           "![timeline](timeline.png)", "", "## Recommendation", ""]
    out += [_recommendation_line(name, task) for name, task in tasks.items()]
    bootstrap = report["settings"]["intervals"]
    out += ["", "Rules (the source material's order, applied to the measured scores): start with in-context learning, "
            "using the fewest demonstrations k whose score is within the tolerance of ICL's best; fine-tune only if a "
            "fine-tuning run's best 0-shot score beats ICL by more than the tolerance; continual pretraining (alone "
            "or followed by fine-tuning) only if it beats both by more than the tolerance — a domain gap. Within a "
            "tier the run needing the fewest training FLOPs within the tolerance of the tier's best is chosen. The "
            f"tolerance is max(margin = {report['settings']['margin']}, ICL's std across seeds at its best k). "
            "Besides, a costlier method replaces the cheaper choice only if their paired difference over the same "
            "test queries is distinguishable: its 95% interval (paired bootstrap: the same queries resampled for both "
            "methods, ICL's demonstration seeds resampled too) lies above 0; otherwise the cheaper one is kept. "
            "Every score's 95% interval is a percentile bootstrap over the test queries (ICL's over its seeds and "
            f"queries; {bootstrap['resamples']} resamples, seed {bootstrap['seed']}). Runs that wrote no per-query "
            "predictions show n/a, and for them the tolerance rule alone decides.", ""]

    columns = ["ICL"] + [r["method"] for r in trained]

    def per_run(label: str, icl: str, fn) -> list[str]:
        return [label, icl, *[fn(r) for r in trained]]

    def per_task_labels(label: str) -> list[str]:
        return [label + (f" ({name})" if len(names) > 1 else "") for name in names]

    def per_task(label: str, icl_fn, run_fn) -> list[list[str]]:
        return [[row_label, icl_fn(tasks[name]), *[run_fn(tasks[name]["methods"][r["method"]], tasks[name]) for r in trained]]
                for name, row_label in zip(names, per_task_labels(label))]

    def to_match(name: str, run: dict) -> str:
        curves = report["data_efficiency"][name]["curves"].values()
        curve = next((c for c in curves if c["swept"] and any(run["method"] in p["runs"] for p in c["points"])), None)
        return "—" if curve is None else match_text(curve)

    def reach(entry: dict, task: dict) -> str:
        point = entry["reaches_best_icl"]
        return "never" if point is None else f"{_n(point['tokens'])} ({_e(point['flops'])} FLOPs)"

    def break_even(entry: dict, task: dict) -> str:
        k = task["break_even_k"]
        if not entry["best"] or k is None:
            return "n/a"
        return f"{_queries(entry['break_even'].get(str(k)))} vs {k}-shot"

    def icl_query(task: dict) -> str:
        k = task["icl_recommended_k"]
        return f"{_e(task['icl']['shots'][str(k)]['query_flops'])} (k={k})"

    def best(entry: dict, task: dict) -> str:
        if not entry["best"]:
            return "n/a"
        return f"{entry['best']['score']:.3f} {_ci(entry['best']['interval'])} (step {entry['best']['step']})"

    def ship_prompt(task: dict) -> str:
        k = task["icl_recommended_k"]
        return f"the base model; {_n(task['icl']['shots'][str(k)]['prompt_tokens'], 1)} prompt tokens per query (k={k})"

    def shipped(run: dict) -> str:
        partial = run["params_total"] and run["params_trainable"] < run["params_total"]
        return f"the base model + adapter {format_bytes(run['changed_bytes'])}" if partial else \
            f"full weights {format_bytes(run['changed_bytes'])}"

    icl_best = lambda t: (f"{t['icl_best']['mean']:.3f} ± {t['icl_best']['std']:.3f} {_ci(t['icl_best']['interval'])} "  # noqa: E731
                          f"(k={t['icl_best']['k']})")
    rows = [
        per_run("**parameter updates**: trainable params", "0", lambda r: _n(r["params_trainable"])),
        per_run("changed weights (bytes)", "0 B", lambda r: format_bytes(r["changed_bytes"])),
        per_run("**data**: training examples", "0", lambda r: _n(r["train_examples"])),
        per_run("training tokens (incl. earlier runs)", "0", lambda r: _n(r["cumulative_tokens"])),
        per_run("training data (examples or tokens)", "k demonstrations",
                lambda r: _size(r["train_size"][1], r["train_size"][0]) if r["train_size"] else "n/a"),
        *[[label, "—", *[to_match(name, r) for r in trained]]
          for name, label in zip(names, per_task_labels("data to match ICL's best score (sweep)"))],
        *per_task("tokens to reach ICL's best score", lambda t: "—", reach),
        per_run("**efficiency**: tokens/s (training steps)", "—", lambda r: _n(r["tokens_per_s"], 1)),
        per_run("wall time (s)", _n(icl_run and icl_run["wall_s"], 1), lambda r: _n(r["wall_s"], 1)),
        per_run("peak memory", format_bytes(icl_run and icl_run["peak_memory_bytes"]), lambda r: format_bytes(r["peak_memory_bytes"])),
        per_run("training FLOPs (incl. earlier runs)", "0", lambda r: _e(r["cumulative_flops"])),
        per_run("**flexibility**: s from new task to first result", _n(icl_run and icl_run["first_result_s"], 1),
                lambda r: _n(r["first_result_s"], 1)),
        *per_task("**cost**: inference FLOPs per query", icl_query,
                  lambda e, t: _e(e["best"]["query_flops"]) if e["best"] else "n/a"),
        *per_task("break-even queries (training + 0-shot < k-shot)", lambda t: "—", break_even),
        per_run("**practicality**: hardware needed (peak memory)",
                format_bytes(icl_run and icl_run["peak_memory_bytes"]), lambda r: format_bytes(r["peak_memory_bytes"])),
        *[[label, ship_prompt(tasks[name]), *[shipped(r) for r in trained]]
          for name, label in zip(names, per_task_labels("what is shipped and kept"))],
        per_run("time to redo for a changed task (s)", _n(icl_run and icl_run["first_result_s"], 1),
                lambda r: _n(r["wall_s"], 1)),
        *per_task("**score**: best [95% interval]", icl_best, best),
    ]
    out += ["## Six dimensions, measured", "", _table(["", *columns], rows), "",
            "Trained runs are scored 0-shot; FLOPs are counted from the model configuration (lightning_adapt.record.flops); "
            "a query's inference FLOPs are a forward pass over its prompt and answer tokens.", ""]

    out += ["## ICL on the base model", ""]
    for name, task in tasks.items():
        shots = task["icl"]["shots"]
        others = [m for m in next(iter(shots.values()))["all_metrics"] if m != task["metric"]]
        out += [f"**{name}** (from run `{task['icl']['source']}`; other metrics: means over seeds)", "",
                _table(["k", f"{task['metric']} (mean ± std over seeds)", "95% interval (seeds × queries)", *others,
                        "prompt tokens", "FLOPs per query"],
                       [[k, f"{v['mean']:.3f} ± {v['std']:.3f}", _ci(v["interval"]),
                         *(f"{v['all_metrics'][m]:.3f}" for m in others), _n(v["prompt_tokens"], 1),
                         _e(v["query_flops"])] for k, v in shots.items()]), ""]

    out += ["## Break-even query counts", "",
            "Queries after which a trained model's total FLOPs (training to its best score + 0-shot queries) fall below "
            "k-shot prompting's (T-Few, Liu et al. 2022).", ""]
    shots = sorted({int(k) for task in tasks.values() for k in task["icl"]["shots"] if k != "0"})
    be_rows = [
        [name, method, *(_queries(entry["break_even"][str(k)]) if str(k) in entry["break_even"] else "—" for k in shots)]
        for name, task in tasks.items() for method, entry in task["methods"].items()
    ]
    out += [_table(["task", "method", *(f"vs k={k}" for k in shots)], be_rows) if be_rows and shots
            else "No trained runs, or no k-shot ICL to compare with.", ""]

    out += data_section(report)
    out += estimate_section(report)
    out += ["## Forgetting", "", "![forgetting](forgetting.png)", ""]
    loss_rows = []
    for r in trained:
        for key, label in (("general_loss", "general text"), ("domain_loss", "own validation data")):
            curve = r[key]
            if len(curve) > 1:
                before, after = curve[0]["loss"], curve[-1]["loss"]
                loss_rows.append([r["method"], label, f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"])
    out += [_table(["method", "held-out loss on", "before", "after", "change"], loss_rows) if loss_rows
            else "No run logged held-out losses (val/general_loss, val/domain_loss).", ""]
    score_rows = [
        [method, f"{name} {task['metric']} (k={task['k']})", f"{curve[0]['score']:.4f}", f"{curve[-1]['score']:.4f}",
         f"{curve[-1]['change']:+.4f}"]
        for name, task in report.get("general_tasks", {}).items() for method, curve in task["runs"].items()
    ]
    if score_rows:
        out += ["General-ability tasks (scored on every trained run at step 0 and every validation):", "",
                _table(["method", "score on", "before", "after", "change"], score_rows), ""]

    out += ["## Runs", ""]
    out += [f"- `{r['method']}` ({r['tier']}{', continues ' + r['continues'] if r['continues'] else ''}): `{r['log_dir']}`"
            for r in runs]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    out += ["", f"Library versions: {versions}. Configurations: report.json (`configs`).", ""]
    return "\n".join(out)
