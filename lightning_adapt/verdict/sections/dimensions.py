"""The six-dimension table: parameter updates, data, efficiency, flexibility, cost, practicality, and the score; a
column for ICL (its baseline prompt) and one per trained arm, a row per measurement (per task where it differs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from lightning_adapt.core.units import format_bytes
from lightning_adapt.verdict.blocks import Block, Heading, Paragraph, Table
from lightning_adapt.verdict.text import (
    difference_text,
    file_text,
    flops_text,
    interval_text,
    match_text,
    metrics_text,
    number_text,
    other_metrics,
    queries_text,
    rate_text,
    score_text,
    seconds_text,
    size_text,
    tokens_text,
)

INTRO = ("One column per arm: a trained run, a whole search (its chosen learning rate's runs), or a trained run with "
         "retrieved documents in its prompt; the ICL column is the baseline prompt on the base model. Scores are on "
         "the test queries; a trained arm's are at its chosen step unless the row says last step.")
NOTES = ("Trained runs are scored 0-shot (with documents in the prompt where the arm says so). FLOPs are counted from "
         "the model configuration; a query's FLOPs are a forward pass over its prompt and answer tokens (where a task "
         "generates its replies, the mean tokens each method generated, as measured; else the report's answer "
         "tokens). Times: "
         "training counts the training steps only, evaluating counts scoring and held-out losses, wall is "
         "everything including loading and writing. A search's per-run numbers are those of its first run at the "
         "chosen learning rate.")


@dataclass(frozen=True)
class Columns:
    """The table's columns: ICL (its baseline prompt; the ICL-only run's costs, when there is one), then one per arm
    (a trained run, a whole search, a trained run with documents in the prompt), in the order the tasks list them."""

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

    @property
    def continues(self) -> bool:
        """Whether some run continues another (then cumulative costs are shown beside a run's own)."""
        return any(r["continues"] for r in self.report["runs"])

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

    def per_search(self, label: str, cell: Callable[[dict[str, Any]], str]) -> list[list[str]]:
        """One row (none without a search): `cell(search)` in each search arm's column, "—" elsewhere."""
        if not any(self.entry(arm)["search"] for arm in self.arms):
            return []
        return [[label, "—", *[cell(self.entry(arm)["search"]) if self.entry(arm)["search"] else "—"
                              for arm in self.arms]]]

    def per_task(self, label: str, icl: Callable[[dict[str, Any]], str],
                 cell: Callable[[dict[str, Any], dict[str, Any]], str]) -> list[list[str]]:
        """One row per task: `icl(task)`, then `cell(the arm's entry, task)` per arm ("—" where the task lacks it,
        "n/a" where the arm has no chosen point)."""
        return [[row_label, icl(self.tasks[name]),
                 *[("n/a" if not self.tasks[name]["arms"][arm]["chosen"]
                    else cell(self.tasks[name]["arms"][arm], self.tasks[name]))
                   if arm in self.tasks[name]["arms"] else "—" for arm in self.arms]]
                for name, row_label in self.task_labels(label)]

    def task_labels(self, label: str) -> list[tuple[str, str]]:
        """(task, row label) per task; the task is named only when there are several."""
        return [(name, label + suffix) for name, suffix in self.task_suffixes()]

    def task_suffixes(self) -> list[tuple[str, str]]:
        """(task, " (task)") per task, or (task, "") when there is one task."""
        several = len(self.tasks) > 1
        return [(name, f" ({name})" if several else "") for name in self.tasks]


def baseline(task: dict[str, Any]) -> dict[str, Any]:
    return task["icl"]["points"][task["baseline"]]


def update_rows(c: Columns) -> list[list[str]]:
    return [c.per_arm("**parameter updates**: trainable parameters", "0",
                      lambda r: number_text(r["params_trainable"])),
            c.per_arm("weights changed (bytes)", "0 B", lambda r: format_bytes(r["changed_bytes"]))]


def data_rows(c: Columns) -> list[list[str]]:
    def to_match(name: str, arm: str) -> str:
        """The data the arm (or the sweep holding it) needed to match ICL; "—" for an arm with documents."""
        if c.entry(arm)["docs"]:
            return "—"
        members = {arm, *c.entry(arm)["runs"]}
        curves = c.report["data_efficiency"][name]["curves"]
        curve = next((v for v in curves.values() if v["swept"] and any(members & set(p["runs"]) for p in v["points"])),
                     curves.get(arm))
        return "—" if curve is None else match_text(curve)

    def reach(entry: dict[str, Any], task: dict[str, Any]) -> str:
        point = entry["reaches_best_icl"]
        if point is None:
            return "never"
        seen = "" if point.get("examples") is None else f", {size_text(point['examples'], 'examples')} seen"
        return f"step {point['step']}{seen} ({flops_text(point['flops'])} FLOPs)"

    return [
        *c.per_task("**data**: training examples seen to the chosen step", lambda t: "0",
                    lambda e, t: number_text(e["chosen"]["examples_seen"])),
        *c.per_task("training tokens seen to the chosen step", lambda t: "0",
                    lambda e, t: number_text(e["chosen"]["tokens_seen"])),
        c.per_arm("training file", "the prompt's k demonstrations", lambda r: file_text(r["train_file"])),
        *([c.per_arm("training tokens including the run it continues", "0",
                     lambda r: number_text(r["cumulative_tokens"]))] if c.continues else []),
        *[[f"data used to match ICL's {c.report['data_efficiency'][name]['target_point']} prompt{suffix}", "—",
           *[to_match(name, arm) for arm in c.arms]]
          for name, suffix in c.task_suffixes()],
        *c.per_task("first step not distinguishably below ICL's best prompt", lambda t: "—", reach),
    ]


def time_rows(c: Columns) -> list[list[str]]:
    return [
        c.per_arm("**efficiency**: time in training steps (s)", "0", lambda r: seconds_text(r["train_seconds"])),
        c.per_arm("time evaluating (s)", seconds_text(c.icl_value("eval_seconds")),
                  lambda r: seconds_text(r["eval_seconds"])),
        c.per_arm("wall time, everything (s)", seconds_text(c.icl_value("wall_seconds")),
                  lambda r: seconds_text(r["wall_seconds"])),
        c.per_arm("training tokens per second", "—", lambda r: number_text(r["tokens_per_s"], 1)),
        c.per_arm("peak memory", format_bytes(c.icl_value("peak_memory_bytes")),
                  lambda r: format_bytes(r["peak_memory_bytes"])),
        c.per_arm("**flexibility**: s from a new task to its first result", seconds_text(c.icl_value("first_result_s")),
                  lambda r: seconds_text(r["first_result_s"])),
    ]


def search_text(search: dict[str, Any]) -> str:
    """E.g. "6 runs (learning rates 0.0001, 0.0003, 0.001; seeds 0, 1), chosen lr 0.0003"."""
    rates = ", ".join(rate_text(lr) for lr in search["learning_rates"] or [None])
    seeds = ", ".join(str(seed) for seed in search["seeds"])
    return f"{search['runs']} runs (learning rates {rates}; seeds {seeds}), chosen lr " \
           f"{rate_text(search['chosen_learning_rate'])}"


def cost_rows(c: Columns) -> list[list[str]]:
    def icl_query(task: dict[str, Any]) -> str:
        point = baseline(task)
        return f"{flops_text(point['query_flops'])} ({tokens_text(point)}, {point['label']})"

    def arm_query(entry: dict[str, Any], task: dict[str, Any]) -> str:
        chosen = entry["chosen"]
        return f"{flops_text(chosen['query_flops'])} ({tokens_text(chosen)})"

    def break_even(entry: dict[str, Any], task: dict[str, Any]) -> str:
        label = task["baseline"]
        text = f"{queries_text(entry['break_even'].get(label))} vs {label}"
        if entry["break_even_search"] is not None:
            text += f"; with the whole search {queries_text(entry['break_even_search'].get(label))}"
        return text

    return [
        *c.per_task("**cost**: FLOPs per query", icl_query, arm_query),
        c.per_arm("training FLOPs", "0", lambda r: flops_text(r["training_flops"])),
        *([c.per_arm("training FLOPs including the run it continues", "0",
                     lambda r: flops_text(r["cumulative_flops"]))] if c.continues else []),
        *c.per_search("training FLOPs of the whole search",
                      lambda s: f"{flops_text(s['training_flops'])} ({s['runs']} runs)"),
        *c.per_search("time of the whole search: training; evaluating; wall (s)",
                      lambda s: f"{seconds_text(s['train_seconds'])}; {seconds_text(s['eval_seconds'])}; "
                                f"{seconds_text(s['wall_seconds'])}"),
        *(c.per_task("search", lambda t: "—", lambda e, t: search_text(e["search"]) if e["search"] else "—")
          if any(c.entry(arm)["search"] for arm in c.arms) else []),
        *c.per_task("break-even: queries until cheaper than the baseline prompt", lambda t: "—", break_even),
    ]


def practicality_rows(c: Columns) -> list[list[str]]:
    def ship_prompt(task: dict[str, Any]) -> str:
        point = baseline(task)
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
        *c.per_task("**practicality**: what is shipped and kept", ship_prompt, shipped),
        c.per_arm("time to redo for a changed task, wall (s)", seconds_text(c.icl_value("first_result_s")),
                  lambda r: seconds_text(r["wall_seconds"])),
    ]


def score_rows(c: Columns) -> list[list[str]]:
    def icl_score(task: dict[str, Any]) -> str:
        point = baseline(task)
        return f"{point['mean']:.3f} {interval_text(point['interval'])} ({point['label']})"

    def arm_score(entry: dict[str, Any], task: dict[str, Any]) -> str:
        chosen = entry["chosen"]
        seeds = f", {chosen['seeds']} seeds" if chosen["seeds"] > 1 else ""
        return f"{chosen['score']:.3f} {interval_text(chosen['interval'])} (step {chosen['step']}{seeds})"

    def last_score(entry: dict[str, Any], task: dict[str, Any]) -> str:
        last = entry["last"]
        return f"{last['score']:.3f} {interval_text(last['interval'])} (step {last['step']})"

    def versus(entry: dict[str, Any], task: dict[str, Any]) -> str:
        return difference_text(entry["versus"].get(task["baseline"]))

    others = any(other_metrics(point, task["metric"]) for task in c.tasks.values()
                 for point in [baseline(task), *(arm["chosen"] for arm in task["arms"].values() if arm["chosen"])])
    return [
        *c.per_task("**score** on the test queries at the chosen step [95% interval]", icl_score, arm_score),
        *(c.per_task("other metrics on the test queries at the chosen step",
                     lambda t: metrics_text(baseline(t), t["metric"]),
                     lambda e, t: metrics_text(e["chosen"], t["metric"])) if others else []),
        *c.per_task("score at the last step [95% interval]", lambda t: "—", last_score),
        *c.per_task("difference to the baseline prompt, same test queries [95% interval]", lambda t: "—", versus),
        *c.per_task("selection score of the chosen point", lambda t: score_text(baseline(t)["selection_mean"]),
                    lambda e, t: score_text(e["chosen"]["selection_score"])),
    ]


def dimensions_section(report: dict[str, Any]) -> list[Block]:
    columns = Columns(report)
    rows = [*update_rows(columns), *data_rows(columns), *time_rows(columns), *cost_rows(columns),
            *practicality_rows(columns), *score_rows(columns)]
    return [Heading("Six dimensions, measured"), Paragraph(INTRO),
            Table(["", "ICL (baseline prompt)", *columns.arms], rows, row_headers=True), Paragraph(NOTES)]
