"""The report's opening: the verdict per task with the numbers it rests on, the timeline that shows it, how the
verdict is decided, and the words the report uses, explained for someone who has not read the code."""

from __future__ import annotations

from typing import Any

from lightning_adapt.verdict.blocks import Block, Heading, Items, Paragraph, Picture
from lightning_adapt.verdict.text import (
    CHOSEN,
    LAST,
    flops_text,
    interval_text,
    metrics_text,
    other_metrics,
    rate_text,
    seconds_text,
    seen_text,
    step_text,
    subsample_text,
    tokens_text,
    verdict,
)

TIMELINE = ("Timeline: each trained arm's test score against its training FLOPs, starting at the base model (0); "
            "ICL's prompts on the base model as horizontal lines, a colour each; each "
            "arm's chosen step ringed, the recommended method starred")
SUBSAMPLED_MARKERS = ("; hollow markers: evaluations on a subsample of the queries (wider intervals, no choice made "
                      "on them)")
COST = "Test score against the prompt tokens every query pays (trained arms at their chosen step)"
RULES = (
    "Every choice — ICL's prompt (k demonstrations, D retrieved documents), a trained arm's evaluation step, a "
    "search's learning rate — is made on the selection queries; every score, interval, paired difference and "
    "break-even count is on the test queries, at those choices. Prompting the base model is tried first, then "
    "fine-tuning, then continual pretraining. The baseline prompt is the one with the fewest prompt tokens that is "
    "not distinguishably worse than the best prompt on the selection queries."
)
INTERVALS = ("Every 95% interval is a percentile bootstrap over the test queries (ICL's and a search's over their "
             "seeds and the queries; {resamples} resamples, seed {seed}); runs that wrote no per-query predictions "
             "show n/a.")
TERMS = {
    "selection queries / test queries": "the task's queries split in two: every choice is made on the selection "
    "queries, every reported score is measured on the test queries, so no score was used to pick itself.",
    "k=4, 1 doc": "a prompt for the base model holding 4 worked examples (demonstrations) and 1 document retrieved "
    "for the query; k=0 is the bare question.",
    "baseline": "the one prompt every cost statement of a task's verdict compares against.",
    "arm": "a trained method as compared: one run, a search (one run per learning rate and seed, shown as one "
    "column), or a trained run evaluated with retrieved documents in its prompt.",
    "chosen step / last step": "a trained run is evaluated every few steps; its chosen step is the evaluation with the "
    "best selection score, its last step the final evaluation. Numbers say which one they are.",
    "examples seen / training file": "the training examples a run had read up to a step (batch size × steps, "
    "repeats counted) against the size of the file it trained on.",
    "FLOPs": "floating-point operations, counted from the model's configuration: training FLOPs are what a method "
    "spent learning, FLOPs per query what each later answer costs (its prompt, and the reply it generates).",
    "break-even": "the number of queries after which training plus answering with the trained model costs fewer "
    "FLOPs than answering every query with the baseline prompt; \"never\" when a trained query is not cheaper, or "
    "its score stays below the prompt's.",
    "training time / evaluation time": "seconds spent in training steps, and seconds spent evaluating (scoring "
    "prompts, held-out losses), counted apart so that slow evaluation is not charged to a method's training.",
}
"""The report's own words and what they mean."""


def others_text(point: dict[str, Any], metric: str) -> str:
    """"; other metrics: chrf 0.512 · rougeL 0.400" for a point with metrics besides `metric`, else ""."""
    return f"; other metrics: {metrics_text(point, metric)}" if other_metrics(point, metric) else ""


def point_text(point: dict[str, Any], metric: str) -> str:
    """An ICL point's test score, its interval and what it was chosen on, its cost and its other metrics, e.g. "k=4:
    test 0.700 (95% interval [0.610, 0.790]; selection score 0.720; 100 prompt tokens)"."""
    selection = "" if point["selection_mean"] is None else f"; selection score {point['selection_mean']:.3f}"
    return (f"{point['label']}: test {point['mean']:.3f} (95% interval {interval_text(point['interval'])}"
            f"{selection}; {tokens_text(point)}{others_text(point, metric)})")


def arm_text(name: str, arm: dict[str, Any], task: dict[str, Any]) -> str:
    """The recommended arm: its chosen point and its last, its other metrics at the chosen point, the data and time it
    took, and a query's cost beside the baseline prompt's."""
    chosen, last, search = arm["chosen"], arm["last"], arm["search"]
    seeds = f", mean of {chosen['seeds']} seeds" if chosen["seeds"] > 1 else ""
    how = "" if chosen["selection_score"] is None else f" (selection score {chosen['selection_score']:.3f}{seeds})"
    text = (f"`{name}` scores {chosen['score']:.3f} {interval_text(chosen['interval'])} {step_text(chosen, CHOSEN)}"
            f"{how}")
    if last and last["step"] != chosen["step"]:
        text += f"; {last['score']:.3f} {interval_text(last['interval'])} {step_text(last, LAST)}"
    if other_metrics(chosen, task["metric"]):
        text += f". Its other metrics at the chosen step: {metrics_text(chosen, task['metric'])}"
    text += (f". Up to its chosen step it saw {seen_text(chosen)}, spending {flops_text(chosen['flops'])} training "
             f"FLOPs, {seconds_text(chosen['train_seconds'])} s training and {seconds_text(chosen['eval_seconds'])} s "
             "evaluating")
    if search:
        text += (f"; the whole search, {search['runs']} runs, took {flops_text(search['training_flops'])} FLOPs, "
                 f"learning rate {rate_text(search['chosen_learning_rate'])} chosen")
    baseline = task["baseline"]
    if baseline is not None:
        point = task["icl"]["points"][baseline]
        text += (f". A query costs {flops_text(chosen['query_flops'])} FLOPs ({tokens_text(chosen)}), one with the "
                 f"{baseline} prompt {flops_text(point['query_flops'])} ({tokens_text(point)})")
    return text + "."


def grounds(task: dict[str, Any]) -> str:
    """What a task's verdict rests on: the baseline prompt, the comparisons made, the recommended arm's numbers."""
    rec = task["recommendation"]
    parts = [f"Baseline: ICL on the base model, {point_text(task['icl']['points'][task['baseline']], task['metric'])}."]
    if rec["reasons"]:
        parts.append("; ".join(rec["reasons"]) + ".")
    arm = task["arms"].get(rec["method"])
    if arm and arm["chosen"]:
        parts.append(arm_text(rec["method"], arm, task))
    return " ".join(parts)


def verdict_section(report: dict[str, Any], pictures: list[str]) -> list[Block]:
    """The verdict per task (in bold, the numbers it rests on below), then the timeline and the cost plot."""
    tasks = report["tasks"]
    blocks: list[Block] = [Heading("Recommendation"), Items([f"**{verdict(name, task)}**" for name, task in tasks.items()],
                                                     [grounds(task) for task in tasks.values()])]
    subsampled = any(subsample_text(task) for task in tasks.values())
    timeline = TIMELINE + (SUBSAMPLED_MARKERS if subsampled else "")
    blocks += [Picture(file, text) for file, text in (("timeline.png", timeline), ("cost.png", COST))
               if file in pictures]
    return blocks


def rules_section(report: dict[str, Any]) -> list[Block]:
    """How the verdict is decided: the order of methods, the rule (once when every task shares it), how each task's
    queries were split, the intervals."""
    bootstrap = report["settings"]["intervals"]
    tasks = report["tasks"]
    rules = list(dict.fromkeys(task["rule"]["how"] for task in tasks.values()))
    several = len(tasks) > 1
    blocks: list[Block] = [Heading("How the verdict is decided"), Paragraph(f"{RULES} {rules[0]}" if len(rules) == 1
                                                                             else RULES)]
    if len(rules) > 1:
        blocks.append(Items([f"**{name}**: {task['rule']['how']}" for name, task in tasks.items()]))
    blocks.append(Items([(f"**{name}**: " if several else "") + task["selection"]["how"]
                         for name, task in tasks.items()]))
    subsampled = [(f"**{name}**: " if several else "") + text for name, task in tasks.items()
                  if (text := subsample_text(task))]
    if subsampled:
        blocks.append(Items(subsampled))
    blocks.append(Paragraph(INTERVALS.format(resamples=bootstrap["resamples"], seed=bootstrap["seed"])))
    return blocks


def terms_section() -> list[Block]:
    """The words the report uses, for a reader who has not read the code."""
    return [Heading("Words used in this report"), Items([f"**{term}**: {meaning}" for term, meaning in TERMS.items()])]
