"""report.md, drawn from report.json's numbers: the recommendation, the six dimensions measured, ICL on the base
model, break-even counts, data efficiency, predicted vs measured, forgetting and the runs; one function per section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_adapt.core.units import format_bytes
from lightning_adapt.verdict.text import (
    flops_text,
    interval_text,
    match_text,
    number_text,
    queries_text,
    size_text,
    verdict,
)

RULES = (
    "Rules (the source material's order, applied to the measured scores): start with in-context learning, using the "
    "fewest demonstrations k whose score is within the tolerance of ICL's best; fine-tune only if a fine-tuning run's "
    "best 0-shot score beats ICL by more than the tolerance; continual pretraining (alone or followed by fine-tuning) "
    "only if it beats both by more than the tolerance — a domain gap. Within a tier the run needing the fewest "
    "training FLOPs within the tolerance of the tier's best is chosen. The tolerance is max(margin = {margin}, ICL's "
    "std across seeds at its best k). Besides, a costlier method replaces the cheaper choice only if their paired "
    "difference over the same test queries is distinguishable: its 95% interval (paired bootstrap: the same queries "
    "resampled for both methods, ICL's demonstration seeds resampled too) lies above 0; otherwise the cheaper one is "
    "kept. Every score's 95% interval is a percentile bootstrap over the test queries (ICL's over its seeds and "
    "queries; {resamples} resamples, seed {seed}). Runs that wrote no per-query predictions show n/a, and for them the "
    "tolerance rule alone decides."
)
"""The recommendation's rules as report.md states them under the recommendation."""


def markdown(report: dict[str, Any]) -> str:
    """report.md: the recommendation, the six-dimension table, scores, break-even counts, ICL detail, forgetting."""
    sections = (header, recommendation_section, six_dimensions_section, icl_section, break_even_section,
                data_section, estimate_section, forgetting_section, runs_section)
    return "\n".join(line for section in sections for line in section(report))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def header(report: dict[str, Any]) -> list[str]:
    runs = ", ".join(f"`{r['method']}`" for r in report["runs"])
    return [f"# Adaptation report: {report['base_model']['name']}", "",
            f"Base checkpoint `{report['base_model']['checkpoint_dir']}`; runs: {runs}; tasks: "
            f"{', '.join(report['tasks'])}.", "", "![timeline](timeline.png)", ""]


def recommendation_section(report: dict[str, Any]) -> list[str]:
    bootstrap = report["settings"]["intervals"]
    rules = RULES.format(margin=report["settings"]["margin"], resamples=bootstrap["resamples"], seed=bootstrap["seed"])
    return ["## Recommendation", "", *(recommendation_line(name, task) for name, task in report["tasks"].items()), "",
            rules, ""]


def recommendation_line(name: str, task: dict[str, Any]) -> str:
    """The verdict, then the numbers it rests on."""
    rec, icl, k = task["recommendation"], task["icl"]["shots"], task["icl_recommended_k"]
    line = (f"- **{verdict(name, task)}**. ICL on the base model reaches {icl[str(k)]['mean']:.3f} ± "
            f"{icl[str(k)]['std']:.3f} (95% interval {interval_text(icl[str(k)]['interval'])}) with k={k} (best "
            f"{task['icl_best']['mean']:.3f} at k={task['icl_best']['k']}); tolerance {task['tolerance']:.3f}. ")
    line += "; ".join(rec["reasons"]) + "." if rec["reasons"] else ""
    chosen, k = task["methods"].get(rec["method"]), task["break_even_k"]
    if chosen and chosen["best"]:
        best = chosen["best"]
        line += (f" {rec['method']} reaches {best['score']:.3f} (95% interval {interval_text(best['interval'])}) after "
                 f"{number_text(best['tokens'])} training tokens ({flops_text(best['flops'])} FLOPs)")
        if k is not None:
            line += f"; a {k}-shot query costs {flops_text(icl[str(k)]['query_flops'])} FLOPs, a 0-shot one " \
                    f"{flops_text(best['query_flops'])}"
        line += "."
    return line


# --- the six dimensions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """The six-dimension table's columns: ICL (the ICL-only run, when there is one), then each trained run."""

    report: dict[str, Any]

    @property
    def tasks(self) -> dict[str, Any]:
        return self.report["tasks"]

    @property
    def trained(self) -> list[dict[str, Any]]:
        return [r for r in self.report["runs"] if r["module"]]

    @property
    def icl(self) -> dict[str, Any] | None:
        return next((r for r in self.report["runs"] if not r["module"]), None)

    def icl_value(self, key: str) -> float | None:
        return self.icl and self.icl[key]

    def per_run(self, label: str, icl: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
        """One row: `icl` in the ICL column, `cell(run)` in each trained run's."""
        return [label, icl, *[cell(r) for r in self.trained]]

    def per_task(self, label: str, icl: Callable[[dict[str, Any]], str],
                 cell: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[list[str]]:
        """One row per task: `icl(task)`, then `cell(the run's entry, task)` for each trained run."""
        return [[row_label, icl(self.tasks[name]), *[cell(self.tasks[name]["methods"][r["method"]], self.tasks[name])
                                                    for r in self.trained]]
                for name, row_label in self.task_labels(label)]

    def task_labels(self, label: str) -> list[tuple[str, str]]:
        """(task, row label) per task; the task is named only when there are several."""
        several = len(self.tasks) > 1
        return [(name, label + (f" ({name})" if several else "")) for name in self.tasks]


def six_dimensions_section(report: dict[str, Any]) -> list[str]:
    columns = Columns(report)
    rows = [*update_rows(columns), *data_rows(columns), *efficiency_rows(columns), *flexibility_rows(columns),
            *cost_rows(columns), *practicality_rows(columns), *score_rows(columns)]
    return ["## Six dimensions, measured", "", table(["", "ICL", *[r["method"] for r in columns.trained]], rows), "",
            "Trained runs are scored 0-shot; FLOPs are counted from the model configuration "
            "(lightning_adapt.record.flops); a query's inference FLOPs are a forward pass over its prompt and answer "
            "tokens.", ""]


def update_rows(c: Columns) -> list[list[str]]:
    return [c.per_run("**parameter updates**: trainable params", "0", lambda r: number_text(r["params_trainable"])),
            c.per_run("changed weights (bytes)", "0 B", lambda r: format_bytes(r["changed_bytes"]))]


def data_rows(c: Columns) -> list[list[str]]:
    def to_match(name: str, run: dict[str, Any]) -> str:
        curves = c.report["data_efficiency"][name]["curves"].values()
        curve = next((c for c in curves if c["swept"] and any(run["method"] in p["runs"] for p in c["points"])), None)
        return "—" if curve is None else match_text(curve)

    def reach(entry: dict[str, Any], task: dict[str, Any]) -> str:
        point = entry["reaches_best_icl"]
        return "never" if point is None else f"{number_text(point['tokens'])} ({flops_text(point['flops'])} FLOPs)"

    return [
        c.per_run("**data**: training examples", "0", lambda r: number_text(r["train_examples"])),
        c.per_run("training tokens (incl. earlier runs)", "0", lambda r: number_text(r["cumulative_tokens"])),
        c.per_run("training data (examples or tokens)", "k demonstrations",
                  lambda r: size_text(r["train_size"][1], r["train_size"][0]) if r["train_size"] else "n/a"),
        *[[label, "—", *[to_match(name, r) for r in c.trained]]
          for name, label in c.task_labels("data to match ICL's best score (sweep)")],
        *c.per_task("tokens to reach ICL's best score", lambda t: "—", reach),
    ]


def efficiency_rows(c: Columns) -> list[list[str]]:
    return [
        c.per_run("**efficiency**: tokens/s (training steps)", "—", lambda r: number_text(r["tokens_per_s"], 1)),
        c.per_run("wall time (s)", number_text(c.icl_value("wall_s"), 1), lambda r: number_text(r["wall_s"], 1)),
        c.per_run("peak memory", format_bytes(c.icl_value("peak_memory_bytes")),
                  lambda r: format_bytes(r["peak_memory_bytes"])),
        c.per_run("training FLOPs (incl. earlier runs)", "0", lambda r: flops_text(r["cumulative_flops"])),
    ]


def flexibility_rows(c: Columns) -> list[list[str]]:
    return [c.per_run("**flexibility**: s from new task to first result", number_text(c.icl_value("first_result_s"), 1),
                      lambda r: number_text(r["first_result_s"], 1))]


def cost_rows(c: Columns) -> list[list[str]]:
    def icl_query(task: dict[str, Any]) -> str:
        k = task["icl_recommended_k"]
        return f"{flops_text(task['icl']['shots'][str(k)]['query_flops'])} (k={k})"

    def break_even(entry: dict[str, Any], task: dict[str, Any]) -> str:
        k = task["break_even_k"]
        if not entry["best"] or k is None:
            return "n/a"
        return f"{queries_text(entry['break_even'].get(str(k)))} vs {k}-shot"

    return [*c.per_task("**cost**: inference FLOPs per query", icl_query,
                        lambda e, t: flops_text(e["best"]["query_flops"]) if e["best"] else "n/a"),
            *c.per_task("break-even queries (training + 0-shot < k-shot)", lambda t: "—", break_even)]


def practicality_rows(c: Columns) -> list[list[str]]:
    def ship_prompt(task: dict[str, Any]) -> str:
        k = task["icl_recommended_k"]
        tokens = number_text(task["icl"]["shots"][str(k)]["prompt_tokens"], 1)
        return f"the base model; {tokens} prompt tokens per query (k={k})"

    def shipped(run: dict[str, Any]) -> str:
        partial = run["params_total"] and run["params_trainable"] < run["params_total"]
        return f"the base model + adapter {format_bytes(run['changed_bytes'])}" if partial else \
            f"full weights {format_bytes(run['changed_bytes'])}"

    return [
        c.per_run("**practicality**: hardware needed (peak memory)", format_bytes(c.icl_value("peak_memory_bytes")),
                  lambda r: format_bytes(r["peak_memory_bytes"])),
        *[[label, ship_prompt(c.tasks[name]), *[shipped(r) for r in c.trained]]
          for name, label in c.task_labels("what is shipped and kept")],
        c.per_run("time to redo for a changed task (s)", number_text(c.icl_value("first_result_s"), 1),
                  lambda r: number_text(r["wall_s"], 1)),
    ]


def score_rows(c: Columns) -> list[list[str]]:
    def icl_best(task: dict[str, Any]) -> str:
        best = task["icl_best"]
        return f"{best['mean']:.3f} ± {best['std']:.3f} {interval_text(best['interval'])} (k={best['k']})"

    def best(entry: dict[str, Any], task: dict[str, Any]) -> str:
        if not entry["best"]:
            return "n/a"
        return f"{entry['best']['score']:.3f} {interval_text(entry['best']['interval'])} (step {entry['best']['step']})"

    return c.per_task("**score**: best [95% interval]", icl_best, best)


# --- the other sections --------------------------------------------------------------------------------------------


def icl_section(report: dict[str, Any]) -> list[str]:
    out = ["## ICL on the base model", ""]
    for name, task in report["tasks"].items():
        shots = task["icl"]["shots"]
        others = [m for m in next(iter(shots.values()))["all_metrics"] if m != task["metric"]]
        out += [f"**{name}** (from run `{task['icl']['source']}`; other metrics: means over seeds)", "",
                table(["k", f"{task['metric']} (mean ± std over seeds)", "95% interval (seeds × queries)", *others,
                       "prompt tokens", "FLOPs per query"],
                      [[k, f"{v['mean']:.3f} ± {v['std']:.3f}", interval_text(v["interval"]),
                        *(f"{v['all_metrics'][m]:.3f}" for m in others), number_text(v["prompt_tokens"], 1),
                        flops_text(v["query_flops"])] for k, v in shots.items()]), ""]
    return out


def break_even_section(report: dict[str, Any]) -> list[str]:
    tasks = report["tasks"]
    shots = sorted({int(k) for task in tasks.values() for k in task["icl"]["shots"] if k != "0"})
    rows = [
        [name, method, *(queries_text(entry["break_even"][str(k)]) if str(k) in entry["break_even"] else "—"
                         for k in shots)]
        for name, task in tasks.items() for method, entry in task["methods"].items()
    ]
    return ["## Break-even query counts", "",
            "Queries after which a trained model's total FLOPs (training to its best score + 0-shot queries) fall below "
            "k-shot prompting's (T-Few, Liu et al. 2022).", "",
            table(["task", "method", *(f"vs k={k}" for k in shots)], rows) if rows and shots
            else "No trained runs, or no k-shot ICL to compare with.", ""]


def data_section(report: dict[str, Any]) -> list[str]:
    """The data-efficiency section: per task and curve, the scores per size and the size to match ICL."""
    out = ["## Data efficiency", "", "![data](data.png)", "",
           "Each trained run's best score against the data it trained on (sweep sizes are nested seeded subsets, "
           "every size trained for the same number of optimizer steps); ICL's k demonstrations count as k labelled "
           "examples. The size to match ICL is interpolated in log(size) between the sweep's sizes.", ""]
    rows = [
        [name, of, " · ".join(f"{size_text(p['size'], curve['unit'])}: {p['mean']:.3f}"
                              + (f" ± {p['std']:.3f} ({p['seeds']} seeds)" if p["seeds"] > 1 else "")
                              for p in curve["points"]),
         f"{task['target']:.3f} (k={task['target_k']})", match_text(curve)]
        for name, task in report["data_efficiency"].items() for of, curve in task["curves"].items()
    ]
    out += [table(["task", "run", "best score per data size", "best ICL", "data to match ICL"], rows) if rows
            else "No trained run recorded its training-set size.", ""]
    return out


def _versus(predicted: float | None, measured: float | None, show: Callable[[float], str]) -> str:
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
         _versus(r["estimate"]["training_flops"], r["training_flops"], flops_text)]
        for r in report["runs"] if r.get("estimate")
    ]
    return [table(["run", "peak memory", "time in training steps", "training FLOPs"], rows)] if rows else []


def estimate_section(report: dict[str, Any]) -> list[str]:
    """The predicted-vs-measured section (nothing when no run was estimated)."""
    rows = estimate_table(report)
    if not rows:
        return []
    return ["## Predicted vs measured", "",
            "Each run's estimate, made before it trained from a probe of 2 warm-up + 3 timed real steps "
            "(`lightning-adapt estimate`), against what it measured (predicted vs measured, relative error).", "",
            *rows, ""]


def forgetting_section(report: dict[str, Any]) -> list[str]:
    loss_rows = []
    for r in (r for r in report["runs"] if r["module"]):
        for key, label in (("general_loss", "general text"), ("domain_loss", "own validation data")):
            curve = r[key]
            if len(curve) > 1:
                before, after = curve[0]["loss"], curve[-1]["loss"]
                loss_rows.append([r["method"], label, f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}"])
    out = ["## Forgetting", "", "![forgetting](forgetting.png)", "",
           table(["method", "held-out loss on", "before", "after", "change"], loss_rows) if loss_rows
           else "No run logged held-out losses (val/general_loss, val/domain_loss).", ""]
    score_rows = [
        [method, f"{name} {task['metric']} (k={task['k']})", f"{curve[0]['score']:.4f}", f"{curve[-1]['score']:.4f}",
         f"{curve[-1]['change']:+.4f}"]
        for name, task in report.get("general_tasks", {}).items() for method, curve in task["runs"].items()
    ]
    if score_rows:
        out += ["General-ability tasks (scored on every trained run at step 0 and every validation):", "",
                table(["method", "score on", "before", "after", "change"], score_rows), ""]
    return out


def runs_section(report: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return ["## Runs", "",
            *(f"- `{r['method']}` ({r['tier']}{', continues ' + r['continues'] if r['continues'] else ''}): "
              f"`{r['log_dir']}`" for r in report["runs"]),
            "", f"Library versions: {versions}. Configurations: report.json (`configs`).", ""]
