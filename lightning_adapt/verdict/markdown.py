"""report.md, drawn from report.json's numbers: the recommendation, the six dimensions measured (a column per arm),
ICL's prompts on the base model, break-even counts, data efficiency, predicted vs measured, forgetting and the runs;
one function per section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lightning_adapt.core.units import format_bytes
from lightning_adapt.verdict.points import HIT
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
    "Rules: every choice — ICL's prompt (k demonstrations, D retrieved documents), a trained arm's evaluation step, a "
    "search's learning rate — is made on the selection queries; every score, interval, paired test and break-even "
    "count is on the test queries, at those choices. Prompting is tried first, then fine-tuning, then continual "
    "pretraining: ICL uses the prompt with the fewest prompt tokens whose selection score is within the tolerance of "
    "the best prompt's; fine-tuning is chosen only if a fine-tuning arm's score beats ICL by more than the tolerance; "
    "continual pretraining (alone, followed by fine-tuning, or with documents in the prompt) only if it beats both by "
    "more than the tolerance — a domain gap. Within a tier the arm needing the fewest training FLOPs within the "
    "tolerance of the tier's best is chosen. The tolerance is max(margin = {margin}, the best ICL prompt's std across "
    "seeds). Besides, a costlier method replaces the cheaper choice only if their paired difference over the same test "
    "queries is distinguishable: its 95% interval (paired bootstrap: the same queries resampled for both methods, "
    "seeds resampled too) lies above 0; otherwise the cheaper one is kept. Every score's 95% interval is a percentile "
    "bootstrap over the test queries (ICL's and a search's over their seeds and the queries; {resamples} resamples, "
    "seed {seed}). Runs that wrote no per-query predictions show n/a, and for them the tolerance rule alone decides."
)
"""The recommendation's rules as report.md states them under the recommendation."""
NO_DEMOS = "k=0"
"""The label of the ICL point without demonstrations or documents (no break-even against it)."""


def markdown(report: dict[str, Any]) -> str:
    """report.md: the recommendation, the six-dimension table, ICL's prompts, break-even counts, data efficiency,
    predicted vs measured, forgetting and the runs."""
    sections = (header, recommendation_section, six_dimensions_section, icl_section, break_even_section,
                data_section, estimate_section, forgetting_section, runs_section)
    return "\n".join(line for section in sections for line in section(report))


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def score_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def header(report: dict[str, Any]) -> list[str]:
    runs = ", ".join(f"`{r['method']}`" for r in report["runs"])
    return [f"# Adaptation report: {report['base_model']['name']}", "",
            f"Base checkpoint `{report['base_model']['checkpoint_dir']}`; runs: {runs}; tasks: "
            f"{', '.join(report['tasks'])}.", "", "![timeline](timeline.png)", "",
            "![accuracy against the prompt tokens paid on every query](cost.png)", ""]


def recommendation_section(report: dict[str, Any]) -> list[str]:
    bootstrap = report["settings"]["intervals"]
    rules = RULES.format(margin=report["settings"]["margin"], resamples=bootstrap["resamples"], seed=bootstrap["seed"])
    lines = [line for name, task in report["tasks"].items() for line in recommendation_lines(name, task)]
    return ["## Recommendation", "", *lines, "", rules, ""]


def point_text(point: dict[str, Any]) -> str:
    """An ICL point's test score, its interval and what it was chosen on, e.g. "k=4: 0.700 ± 0.050 (95% interval
    [0.610, 0.790]; selection score 0.720; 100 prompt tokens)"."""
    selection = "" if point["selection_mean"] is None else f"; selection score {point['selection_mean']:.3f}"
    return (f"{point['label']}: {point['mean']:.3f} ± {point['std']:.3f} (95% interval "
            f"{interval_text(point['interval'])}{selection}; {number_text(point['prompt_tokens'])} prompt tokens)")


def recommendation_lines(name: str, task: dict[str, Any]) -> list[str]:
    """The verdict, then the numbers it rests on, then how the choices were made (one sentence)."""
    rec, points = task["recommendation"], task["icl"]["points"]
    chosen, best = task["icl_chosen"], task["icl_best"]
    line = f"- **{verdict(name, task)}**. ICL on the base model: the chosen prompt {point_text(points[chosen])}"
    if best != chosen:
        line += f"; the best by selection score {point_text(points[best])}"
    line += f"; tolerance {task['tolerance']:.3f}."
    if rec["reasons"]:
        line += " " + "; ".join(rec["reasons"]) + "."
    arm = task["arms"].get(rec["method"])
    if arm and arm["chosen"]:
        line += " " + arm_text(rec["method"], arm, task)
    return [line, f"  {task['selection']['how']}"]


def arm_text(name: str, arm: dict[str, Any], task: dict[str, Any]) -> str:
    """The recommended arm's choice, its test score and costs, and a query's cost beside the baseline prompt's."""
    chosen, search = arm["chosen"], arm["search"]
    seeds = f", mean of {chosen['seeds']} seeds" if chosen["seeds"] > 1 else ""
    how = "on the queries it is scored on" if chosen["selection_score"] is None else \
        f"by its selection score {chosen['selection_score']:.3f}"
    text = (f"{name} at step {chosen['step']} (chosen {how}{seeds}) scores {chosen['score']:.3f} (95% interval {interval_text(chosen['interval'])}) after "
            f"{number_text(chosen['tokens'])} training tokens ({flops_text(chosen['flops'])} FLOPs")
    if search:
        text += (f"; the whole search, {search['runs']} runs, took {flops_text(search['training_flops'])} FLOPs; "
                 f"learning rate {rate_text(search['chosen_learning_rate'])} chosen")
    text += ")"
    baseline = task["break_even_point"]
    if baseline is not None:
        point = task["icl"]["points"][baseline]
        text += (f"; a query with the {baseline} prompt costs {flops_text(point['query_flops'])} FLOPs "
                 f"({number_text(point['prompt_tokens'])} prompt tokens), one to {name} "
                 f"{flops_text(chosen['query_flops'])} ({number_text(chosen['prompt_tokens'])} prompt tokens)")
    return text + "."


# --- the six dimensions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """The six-dimension table's columns: ICL (its chosen prompt; the ICL-only run's costs, when there is one), then
    one per arm (a trained run, a whole search, a trained run with documents in the prompt), in the order the tasks
    list them."""

    report: dict[str, Any]

    @property
    def tasks(self) -> dict[str, Any]:
        return self.report["tasks"]

    @cached_property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(arm for task in self.tasks.values() for arm in task["arms"]))

    @property
    def icl(self) -> dict[str, Any] | None:
        return next((r for r in self.report["runs"] if not r["module"]), None)

    def icl_value(self, key: str) -> float | None:
        return self.icl and self.icl[key]

    def entry(self, arm: str) -> dict[str, Any]:
        """The arm's entry in the first task that has it (what every task shares: its runs, its search)."""
        return next(task["arms"][arm] for task in self.tasks.values() if arm in task["arms"])

    def run(self, arm: str) -> dict[str, Any]:
        """The run behind an arm's per-run numbers (see `run_of`), in the first task that has it."""
        return self.run_of(self.entry(arm))

    def run_of(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The run behind an arm's entry: its run, or a search's first run at its chosen learning rate."""
        runs = {r["method"]: r for r in self.report["runs"]}
        search = entry["search"]
        if search:
            chosen = next((c for c in search["configurations"]
                           if c["learning_rate"] == search["chosen_learning_rate"]), search["configurations"][0])
            return runs[chosen["runs"][0]]
        return runs[entry["runs"][0]]

    def per_arm(self, label: str, icl: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
        """One row: `icl` in the ICL column, `cell(run)` in each arm's (its run, see `run`)."""
        return [label, icl, *[cell(self.run(arm)) for arm in self.arms]]

    def per_search(self, label: str, cell: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[str]:
        """One row: `cell(run, search)` in each search arm's column, "—" elsewhere."""
        return [label, "—", *[cell(self.run(arm), self.entry(arm)["search"]) if self.entry(arm)["search"] else "—"
                             for arm in self.arms]]

    def per_task(self, label: str, icl: Callable[[dict[str, Any]], str],
                 cell: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[list[str]]:
        """One row per task: `icl(task)`, then `cell(the arm's entry, task)` per arm ("—" where the task lacks it)."""
        return [[row_label, icl(self.tasks[name]),
                 *[cell(self.tasks[name]["arms"][arm], self.tasks[name]) if arm in self.tasks[name]["arms"] else "—"
                   for arm in self.arms]]
                for name, row_label in self.task_labels(label)]

    def task_labels(self, label: str) -> list[tuple[str, str]]:
        """(task, row label) per task; the task is named only when there are several."""
        several = len(self.tasks) > 1
        return [(name, label + (f" ({name})" if several else "")) for name in self.tasks]


def six_dimensions_section(report: dict[str, Any]) -> list[str]:
    columns = Columns(report)
    rows = [*update_rows(columns), *data_rows(columns), *efficiency_rows(columns), *flexibility_rows(columns),
            *cost_rows(columns), *practicality_rows(columns), *score_rows(columns)]
    return ["## Six dimensions, measured", "",
            "One column per arm: a trained run, a whole search (its chosen learning rate's runs), or a trained run "
            "with retrieved documents in its prompt. Scores are on the test queries at the choice made on the "
            "selection queries (ICL: the chosen prompt; an arm: its chosen evaluation step).", "",
            table(["", "ICL", *columns.arms], rows), "",
            "Trained runs are scored 0-shot (with documents in the prompt where the arm says so); FLOPs are counted "
            "from the model configuration (lightning_adapt.record.flops); a query's inference FLOPs are a forward pass "
            "over its prompt and answer tokens. A search's per-run numbers are those of its first run at the chosen "
            "learning rate.", ""]


def update_rows(c: Columns) -> list[list[str]]:
    return [c.per_arm("**parameter updates**: trainable params", "0", lambda r: number_text(r["params_trainable"])),
            c.per_arm("changed weights (bytes)", "0 B", lambda r: format_bytes(r["changed_bytes"]))]


def data_rows(c: Columns) -> list[list[str]]:
    def to_match(name: str, arm: str) -> str:
        """The size the sweep holding the arm needs to match ICL ("—": no sweep; an arm with documents has none)."""
        if c.entry(arm)["docs"]:
            return "—"
        members = {arm, *c.entry(arm)["runs"]}
        curves = c.report["data_efficiency"][name]["curves"].values()
        curve = next((v for v in curves if v["swept"] and any(members & set(p["runs"]) for p in v["points"])), None)
        return "—" if curve is None else match_text(curve)

    def reach(entry: dict[str, Any], task: dict[str, Any]) -> str:
        point = entry["reaches_best_icl"]
        return "never" if point is None else f"{number_text(point['tokens'])} ({flops_text(point['flops'])} FLOPs)"

    return [
        c.per_arm("**data**: training examples seen", "0", lambda r: number_text(r["train_examples"])),
        c.per_arm("training tokens (with the run it continues)", "0", lambda r: number_text(r["cumulative_tokens"])),
        c.per_arm("training file (examples or tokens)", "k demonstrations",
                  lambda r: size_text(r["train_size"][1], r["train_size"][0]) if r["train_size"] else "n/a"),
        *[[label, "—", *[to_match(name, arm) for arm in c.arms]]
          for name, label in c.task_labels("data to match ICL without documents (sweep)")],
        *c.per_task("tokens to reach ICL's best test score", lambda t: "—", reach),
    ]


def efficiency_rows(c: Columns) -> list[list[str]]:
    return [
        c.per_arm("**efficiency**: tokens/s (training steps)", "—", lambda r: number_text(r["tokens_per_s"], 1)),
        c.per_arm("wall time (s)", number_text(c.icl_value("wall_s"), 1), lambda r: number_text(r["wall_s"], 1)),
        c.per_arm("peak memory", format_bytes(c.icl_value("peak_memory_bytes")),
                  lambda r: format_bytes(r["peak_memory_bytes"])),
    ]


def flexibility_rows(c: Columns) -> list[list[str]]:
    return [c.per_arm("**flexibility**: s from new task to first result", number_text(c.icl_value("first_result_s"), 1),
                      lambda r: number_text(r["first_result_s"], 1))]


def rate_text(rate: float | None) -> str:
    """A learning rate; None is a seeds-only search's: the run's own."""
    return "its own" if rate is None else f"{rate:g}"


def search_text(search: dict[str, Any]) -> str:
    """E.g. "6 runs (learning rates 0.0001, 0.0003, 0.001; seeds 0, 1), chosen lr 0.0003"."""
    rates = ", ".join(rate_text(lr) for lr in search["learning_rates"] or [None])
    seeds = ", ".join(str(seed) for seed in search["seeds"])
    return f"{search['runs']} runs (learning rates {rates}; seeds {seeds}), chosen lr " \
           f"{rate_text(search['chosen_learning_rate'])}"


def cost_rows(c: Columns) -> list[list[str]]:
    def icl_query(task: dict[str, Any]) -> str:
        point = task["icl"]["points"][task["icl_chosen"]]
        tokens = number_text(point["prompt_tokens"])
        return f"{flops_text(point['query_flops'])} ({tokens} prompt tokens, {point['label']})"

    def arm_query(entry: dict[str, Any], task: dict[str, Any]) -> str:
        chosen = entry["chosen"]
        return "n/a" if not chosen else \
            f"{flops_text(chosen['query_flops'])} ({number_text(chosen['prompt_tokens'])} prompt tokens)"

    def break_even(entry: dict[str, Any], task: dict[str, Any]) -> str:
        label = task["break_even_point"]
        if not entry["chosen"] or label is None:
            return "n/a"
        text = f"{queries_text(entry['break_even'].get(label))} vs {label}"
        if entry["break_even_search"] is not None:
            text += f"; with the whole search {queries_text(entry['break_even_search'].get(label))}"
        return text

    searched = any(c.entry(arm)["search"] for arm in c.arms)
    return [
        *c.per_task("**cost**: inference FLOPs per query", icl_query, arm_query),
        c.per_arm("training FLOPs (with the run it continues)", "0", lambda r: flops_text(r["cumulative_flops"])),
        *([c.per_search("training FLOPs of the whole search",
                        lambda r, s: f"{flops_text(s['training_flops'])} ({s['runs']} runs)")] if searched else []),
        c.per_arm("time in training steps (s)", "0", lambda r: number_text(r["train_s"], 1)),
        *([c.per_search("time of the whole search: training steps; wall (s)",
                        lambda r, s: f"{number_text(s['train_s'], 1)}; {number_text(s['wall_s'], 1)}")]
          if searched else []),
        *(c.per_task("search", lambda t: "—", lambda e, t: search_text(e["search"]) if e["search"] else "—")
          if searched else []),
        *c.per_task("break-even queries (training + trained queries < prompted queries)", lambda t: "—", break_even),
    ]


def practicality_rows(c: Columns) -> list[list[str]]:
    def ship_prompt(task: dict[str, Any]) -> str:
        point = task["icl"]["points"][task["icl_chosen"]]
        documents = " and the document collection" if point["docs"] else ""
        return f"the base model{documents}; {number_text(point['prompt_tokens'], 1)} prompt tokens per query " \
               f"({point['label']})"

    def shipped(entry: dict[str, Any], task: dict[str, Any]) -> str:
        run, docs = c.run_of(entry), entry["docs"]
        partial = run["params_total"] and run["params_trainable"] < run["params_total"]
        weights = f"the base model + adapter {format_bytes(run['changed_bytes'])}" if partial else \
            f"full weights {format_bytes(run['changed_bytes'])}"
        return weights + (" and the document collection" if docs else "")

    return [
        c.per_arm("**practicality**: hardware needed (peak memory)", format_bytes(c.icl_value("peak_memory_bytes")),
                  lambda r: format_bytes(r["peak_memory_bytes"])),
        *c.per_task("what is shipped and kept", ship_prompt, shipped),
        c.per_arm("time to redo for a changed task (s)", number_text(c.icl_value("first_result_s"), 1),
                  lambda r: number_text(r["wall_s"], 1)),
    ]


def score_rows(c: Columns) -> list[list[str]]:
    def icl_score(task: dict[str, Any]) -> str:
        point = task["icl"]["points"][task["icl_chosen"]]
        return f"{point['mean']:.3f} ± {point['std']:.3f} {interval_text(point['interval'])} ({point['label']})"

    def arm_score(entry: dict[str, Any], task: dict[str, Any]) -> str:
        chosen = entry["chosen"]
        if not chosen:
            return "n/a"
        seeds = f", {chosen['seeds']} seeds" if chosen["seeds"] > 1 else ""
        return f"{chosen['score']:.3f} {interval_text(chosen['interval'])} (step {chosen['step']}{seeds})"

    def icl_selection(task: dict[str, Any]) -> str:
        return score_text(task["icl"]["points"][task["icl_chosen"]]["selection_mean"])

    return [*c.per_task("**score** on the test queries [95% interval]", icl_score, arm_score),
            *c.per_task("selection score of that choice", icl_selection,
                        lambda e, t: score_text(e["chosen"]["selection_score"]) if e["chosen"] else "n/a")]


# --- the other sections --------------------------------------------------------------------------------------------


def choice_text(label: str, task: dict[str, Any]) -> str:
    """What the report made of an ICL point: chosen, best by selection score, the break-even baseline."""
    roles = [("chosen", task["icl_chosen"]), ("best by selection", task["icl_best"]),
             ("break-even baseline", task["break_even_point"])]
    return ", ".join(role for role, which in roles if which == label) or "—"


def hit_text(point: dict[str, Any]) -> str:
    if not point["docs"]:
        return "—"
    return "n/a" if point["hit_rate"] is None else f"{point['hit_rate']:.3f}"


def icl_section(report: dict[str, Any]) -> list[str]:
    out = ["## ICL on the base model", "",
           "Every prompt evaluated: k demonstrations and D retrieved documents (BM25, best first, before the "
           "demonstrations). Scores are means over the demonstration seeds on the test queries; the selection score is "
           "on the selection queries, where the prompt was chosen. The hit rate is the share of test queries whose "
           "retrieved documents include the query's source document.", ""]
    for name, task in report["tasks"].items():
        points = task["icl"]["points"]
        others = [m for m in dict.fromkeys(m for p in points.values() for m in p["all_metrics"])
                  if m not in (task["metric"], HIT)]
        documents = any(p["docs"] for p in points.values())
        header = ["prompt", "k", "documents", f"{task['metric']} (mean ± std over seeds)",
                  "95% interval (seeds × queries)", "selection score", *others, "prompt tokens", "FLOPs per query",
                  *(["retrieval hit rate"] if documents else []), "choice"]
        rows = [[label, str(p["k"]), str(p["docs"]), f"{p['mean']:.3f} ± {p['std']:.3f}", interval_text(p["interval"]),
                 score_text(p["selection_mean"]), *(score_text(p["all_metrics"].get(m)) for m in others),
                 number_text(p["prompt_tokens"], 1), flops_text(p["query_flops"]),
                 *([hit_text(p)] if documents else []), choice_text(label, task)]
                for label, p in points.items()]
        out += [f"**{name}** (from run `{task['icl']['source']}`; other metrics: test means over seeds)", "",
                table(header, rows), ""]
    return out


def break_even_section(report: dict[str, Any]) -> list[str]:
    out = ["## Break-even query counts", "",
           "Queries after which an arm's total FLOPs (training to its chosen step + its queries) fall below prompting's "
           "(T-Few, Liu et al. 2022), against each ICL prompt; a search's second row counts the FLOPs of every run it "
           "trained. The verdict compares against the column marked baseline.", ""]
    for name, task in report["tasks"].items():
        labels = [label for label in task["icl"]["points"] if label != NO_DEMOS]
        rows = []
        for arm, entry in task["arms"].items():
            rows.append([arm, *(queries_text(entry["break_even"].get(label)) if entry["chosen"] else "n/a"
                                for label in labels)])
            if entry["break_even_search"] is not None:
                rows.append([f"{arm} (whole search)", *(queries_text(entry["break_even_search"].get(label))
                                                        for label in labels)])
        header = [f"vs {label}" + (" (baseline)" if label == task["break_even_point"] else "") for label in labels]
        out += [f"**{name}**", "", table(["arm", *header], rows) if rows and labels
                else "No trained arms, or no ICL prompt with demonstrations or documents to compare with.", ""]
    return out


def data_section(report: dict[str, Any]) -> list[str]:
    """The data-efficiency section: per task and curve, the scores per size and the size to match ICL."""
    out = ["## Data efficiency", "", "![data](data.png)", "",
           "Each trained run's test score at its chosen step against the data it trained on (sweep sizes are nested "
           "seeded subsets, every size trained for the same number of optimizer steps); ICL's k demonstrations count "
           "as k labelled examples. The size to match ICL is interpolated in log(size) between the sweep's sizes.", ""]
    rows = [
        [name, of, " · ".join(f"{size_text(p['size'], curve['unit'])}: {p['mean']:.3f}"
                              + (f" ± {p['std']:.3f} ({p['seeds']} seeds)" if p["seeds"] > 1 else "")
                              for p in curve["points"]),
         f"{task['target']:.3f} ({task['target_point']})", match_text(curve)]
        for name, task in report["data_efficiency"].items() for of, curve in task["curves"].items()
    ]
    header = ["task", "arm or sweep", "test score per data size", "ICL (chosen without documents)", "data to match ICL"]
    out += [table(header, rows) if rows
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
           table(["run", "held-out loss on", "before", "after (last validation)", "change"], loss_rows) if loss_rows
           else "No run logged held-out losses (val/general_loss, val/domain_loss).", ""]
    score_rows = [
        [method, f"{name} {task['metric']} (k={task['k']})", f"{curve[0]['score']:.4f}", f"{curve[-1]['score']:.4f}",
         f"{curve[-1]['change']:+.4f}"]
        for name, task in report.get("general_tasks", {}).items() for method, curve in task["runs"].items()
    ]
    if score_rows:
        out += ["General-ability tasks (scored on every trained run at step 0 and every validation):", "",
                table(["run", "score on", "before", "after (last validation)", "change"], score_rows), ""]
    return out


def run_details(run: dict[str, Any]) -> str:
    """A run's tier, what it continues, and which search or data-size sweep it belongs to."""
    parts = [run["tier"]]
    if run["continues"]:
        parts.append(f"continues `{run['continues']}`")
    if search := run.get("search"):
        parts.append(f"search of `{search['of']}`: learning rate {rate_text(search['learning_rate'])}, seed "
                     f"{search['seed']}")
    if sweep := run.get("sweep"):
        size = size_text(sweep["examples"], "examples") if "examples" in sweep else size_text(sweep.get("tokens"),
                                                                                              "tokens")
        parts.append(f"data-size sweep of `{sweep['of']}`: {size}, seed {sweep['seed']}")
    return "; ".join(parts)


def runs_section(report: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    return ["## Runs", "", *(f"- `{r['method']}` ({run_details(r)}): `{r['log_dir']}`" for r in report["runs"]),
            "", f"Library versions: {versions}. Configurations: report.json (`configs`).", ""]
