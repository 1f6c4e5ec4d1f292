"""The report's numbers, from runs (`verdict.run`): per task ICL's points, each trained arm's timeline and chosen
point, break-even counts, the recommendation and how its choices were made (`verdict.points`, `verdict.arms`); per
run the six dimensions; forgetting (and the general-text block length it was measured with); data efficiency.
`report_data` gathers them as report.json holds them."""

from __future__ import annotations

from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import COSTS_LOGGED, icl_key, parse_icl_key
from lightning_adapt.record.predictions import common_queries
from lightning_adapt.record.runs import (
    FIRST_RESULT_S,
    PARAMS_CHANGED_BYTES,
    PARAMS_TOTAL,
    PARAMS_TRAINABLE,
    EVAL_S,
    PEAK_MEMORY,
    TRAIN_EXAMPLES,
    PADDING_SHARE,
    TRAIN_FLOPS,
    TRAIN_S,
    TRAIN_TOKENS,
    WALL_S,
    library_versions,
    tokens_per_second,
)
from lightning_adapt.verdict.arms import Arm, task_arms, tier_of
from lightning_adapt.verdict.data_efficiency import data_efficiency
from lightning_adapt.verdict.intervals import LEVEL, RESAMPLES, SEED
from lightning_adapt.verdict.points import ICLPoint, chosen_prompt, icl_points, icl_seconds, icl_source
from lightning_adapt.verdict.rules import TIERS, Candidate, metric_of, recommend, rule_text
from lightning_adapt.verdict.run import Run, agreed_specs, check_runs, json_data, link_runs, train_file
from lightning_adapt.verdict.text import selection_text


def change_curve(run: Run, key: str, value_name: str = "loss") -> list[dict[str, float]]:
    """A held-out loss (or score) at each validation as `value_name`, and its change since the base model: since this
    run's first value, plus the change the runs it continues from ended with (each run measures with its own block
    length)."""
    values = sorted(run.metrics.get(key, {}).items())
    earlier = change_curve(run.parent, key, value_name) if run.parent is not None else []
    offset = earlier[-1]["change"] if earlier else 0.0
    return [
        {"step": step, value_name: value, "change": value - values[0][1] + offset,
         "tokens": (run.at(TRAIN_TOKENS, step) or 0.0) + run.offset(TRAIN_TOKENS),
         "flops": (run.at(TRAIN_FLOPS, step) or 0.0) + run.offset(TRAIN_FLOPS)}
        for step, value in values
    ]


def general_summary(runs: list[Run]) -> dict[str, Any]:
    """Per general-ability task (scored for forgetting): its score (the default metric, `rules.metric_of`, else its
    first metric) at its fewest shots, and each trained run's curve of it with the change since the base model."""
    summary = {}
    for name, spec in agreed_specs(runs, "general_tasks").items():
        k = min(spec["shots"])
        logged = [parsed.metric for run in runs for parsed in map(parse_icl_key, run.metrics)
                  if parsed and parsed.task == name and parsed.k == k and not parsed.std
                  and parsed.metric not in COSTS_LOGGED]
        if not logged:
            continue
        metric = metric_of({}, name, logged) or logged[0]
        curves = {run.method: change_curve(run, icl_key(name, metric, k), "score") for run in runs if run.trains}
        summary[name] = {"metric": metric, "k": k, "spec": spec, "runs": {m: c for m, c in curves.items() if c}}
    return summary


GENERAL_LOSS = "val/general_loss"
BLOCK_LENGTH_HPARAM = "general_val_length"
"""A module's hyperparameter: the tokens the model reads per block of general text (runs recorded before it: their
max_seq_length, else the model's context)."""


def general_block_length(run: Run) -> int:
    """The tokens the model read per block of general text in `run`."""
    hparams = run.info.get("hparams") or {}
    length = hparams.get(BLOCK_LENGTH_HPARAM) or hparams.get("max_seq_length")
    return int(length or run.root.info["model_config"]["block_size"])


def general_blocks(runs: list[Run]) -> dict[str, Any]:
    """report.json's `general`: the block length every run scored general text in, or (when they differ) each
    run's and a note saying what that means for reading the losses."""
    lengths = {run.method: general_block_length(run) for run in runs if GENERAL_LOSS in run.metrics}
    if len(set(lengths.values())) <= 1:
        return {"block_length": next(iter(lengths.values()), None)}
    listed = ", ".join(f"{method} {length}" for method, length in lengths.items())
    return {"block_length": None, "block_lengths": lengths, "note": (
        f"The runs scored general text in blocks of different lengths ({listed} tokens), so their losses differ "
        "before any training: compare each run's change since its own first value, not the losses across runs.")}


def run_summary(run: Run) -> dict[str, Any]:
    """The six dimensions' per-run numbers, straight from the logged metrics."""
    tokens, train_s = run.last(TRAIN_TOKENS, 0.0), run.last(TRAIN_S, 0.0)
    first = run.last(FIRST_RESULT_S)
    return {
        "method": run.method,
        "tier": TIERS[tier_of(run)],
        "module": run.info.get("module"),
        "continues": None if run.parent is None else run.parent.method,
        "path": str(run.path),
        "log_dir": str(run.log_dir),
        "params_trainable": run.last(PARAMS_TRAINABLE, 0.0),
        "params_total": run.last(PARAMS_TOTAL),
        "changed_bytes": run.last(PARAMS_CHANGED_BYTES, 0.0),
        "train_examples": run.last(TRAIN_EXAMPLES, 0.0),
        "train_file": train_file(run),
        "estimate": run.info.get("estimate"),
        "train_tokens": tokens,
        "tokens_per_s": tokens_per_second(tokens, train_s),
        "wall_seconds": run.last(WALL_S),
        "train_seconds": train_s,
        "eval_seconds": run.last(EVAL_S, None if run.trains else run.last(WALL_S)),
        "peak_memory_bytes": max(run.metrics[PEAK_MEMORY].values()) if PEAK_MEMORY in run.metrics else None,
        "training_flops": run.last(TRAIN_FLOPS, 0.0),
        "padding_share": run.last(PADDING_SHARE),
        "cumulative_flops": run.last(TRAIN_FLOPS, 0.0) + run.offset(TRAIN_FLOPS),
        "cumulative_tokens": tokens + run.offset(TRAIN_TOKENS),
        "first_result_s": None if first is None else first + run.offset(WALL_S),
        "general_loss": change_curve(run, GENERAL_LOSS),
        "domain_loss": change_curve(run, "val/domain_loss"),
        "search": run.info.get("search"),
        "sweep": run.info.get("sweep"),
    }


def task_summary(
    runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float, margin: float, spec: dict[str, Any]
) -> dict[str, Any]:
    """`task`'s entry of report.json: ICL's points on the base model, the best and the chosen one (the baseline
    every cost statement compares against), every trained arm with its chosen point and break-even counts, the
    recommendation, and the rule it was made by; every choice made on the selection part, every score on the test
    part."""
    source = icl_source(runs, task, metric)
    points = icl_points(source, task, metric, config, answer_tokens)
    best, chosen = chosen_prompt(points, margin)
    arms = task_arms(runs, task, metric, config, answer_tokens, points, best, margin)
    icl_method = next((run.method for run in runs if not run.trains), "icl")
    candidates = [Candidate(icl_method, 0, chosen.data["mean"], 0.0, chosen.scored.test, chosen.label)] + [
        Candidate(arm.name, arm.tier, arm.data["chosen"]["score"], arm.data["chosen"]["flops"], arm.outcomes)
        for arm in arms if arm.data["chosen"] is not None]
    choice, reasons, comparisons = recommend(candidates, margin)
    arm = next((arm for arm in arms if arm.name == choice.method), None) if choice.tier else None
    unsplit = ([] if all(p.scored.split for p in points) else [source.method]) + [
        method for one in arms for method in one.unsplit if method != source.method]
    return {
        "metric": metric,
        "spec": spec,
        "selection": selection_summary(spec, points, arms, list(dict.fromkeys(unsplit))),
        "rule": decision_rule(metric, margin, candidates),
        "icl": {"source": source.method, "seconds": icl_seconds(source, task),
                "points": {point.label: point.data for point in points}},
        "icl_best": best.label,
        "icl_chosen": chosen.label,
        "baseline": chosen.label,
        "break_even_point": chosen.label,
        "arms": {one.name: one.data for one in arms},
        "recommendation": {
            "method": choice.method, "tier": TIERS[choice.tier], "score": choice.score,
            "interval": chosen.data["interval"] if arm is None else arm.data["chosen"]["interval"],
            "training_flops": choice.flops,
            "search_flops": arm.data["search"]["training_flops"] if arm is not None and arm.data["search"] else None,
            "point": chosen.label if arm is None else None, "baseline": chosen.label, "reasons": reasons,
            "comparisons": comparisons,
        },
    }


def decision_rule(metric: str, margin: float, candidates: list[Candidate]) -> dict[str, Any]:
    """report.json's `rule`: the margin (in `metric`), and the rule in a sentence; paired where ICL's baseline and at
    least one trained arm (or ICL alone) have per-query outcomes, naming the arms decided on their means."""
    baseline, trained = candidates[0], candidates[1:]
    means_only = [c.name for c in trained if c.outcomes is None]
    paired = baseline.outcomes is not None and (not trained or len(means_only) < len(trained))
    return {"margin": margin, "how": rule_text(metric, margin, paired, means_only)}


def selection_summary(spec: dict[str, Any], points: list[ICLPoint], arms: list[Arm], unsplit: list[str]
                      ) -> dict[str, Any]:
    """How many queries the choices were made on and the scores reported on (from ICL's predictions), and `how`:
    the sentence that says so, naming the runs whose choices had no held-out queries to be made on."""
    split = next((p.scored for p in points if p.scored.split), None)
    scored_on = split or next((p.scored for p in points if p.scored.test), None)
    sizes = {"selection_queries": len(common_queries(split.selection)) if split else 0,
             "test_queries": len(common_queries(scored_on.test)) if scored_on else None}
    choices = [name for name, made in (
        ("k", len({p.k for p in points}) > 1), ("documents", len({p.docs for p in points}) > 1),
        ("evaluation steps", any(arm.data["chosen"] for arm in arms)),
        ("learning rates", any(arm.data["search"] for arm in arms))) if made]
    unsplit_everywhere = split is None and all(arm.unsplit or not arm.data["chosen"] for arm in arms)
    how = selection_text(spec.get("selection"), choices, [] if unsplit_everywhere else unsplit, unsplit_everywhere,
                         **sizes)
    return sizes | {"how": how}


def report_data(
    runs: list[Run], metric: str | dict[str, str], answer_tokens: float, margin: float, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """What report.json holds, as plain JSON data, from runs read or measured (the arguments are `build_report`'s)."""
    link_runs(runs)
    tasks, metrics = check_runs(runs, metric)
    base = runs[0].root.info
    config = Config(**base["model_config"])
    summaries = {name: task_summary(runs, name, metrics[name], config, answer_tokens, margin, spec)
                 for name, spec in tasks.items()}
    report = {
        "base_model": {"name": base["model"], "checkpoint_dir": base["checkpoint_dir"]},
        "settings": {"metric": metric, "answer_tokens": answer_tokens, "margin": margin,
                     "intervals": {"level": LEVEL, "resamples": RESAMPLES, "seed": SEED}},
        "tasks": summaries,
        "data_efficiency": data_efficiency(runs, summaries),
        "general_tasks": general_summary(runs),
        "general": general_blocks(runs),
        "runs": [run_summary(run) for run in runs],
        "configs": {run.method: run.info for run in runs},
        "versions": library_versions(),
        **(extra or {}),
    }
    return json_data(report)  # what the files show is exactly what the JSON holds
