"""The report's numbers, from runs (`verdict.run`): per task ICL's points, each trained arm's timeline and chosen
point, break-even counts, the recommendation and how its choices were made (`verdict.points`, `verdict.arms`); per
run the six dimensions; forgetting; data efficiency. `report_data` gathers them as report.json holds them."""

from __future__ import annotations

from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import PROMPT_TOKENS, icl_key, parse_icl_key
from lightning_adapt.record.predictions import common_queries
from lightning_adapt.record.runs import (
    FIRST_RESULT_S,
    PARAMS_CHANGED_BYTES,
    PARAMS_TOTAL,
    PARAMS_TRAINABLE,
    PEAK_MEMORY,
    TRAIN_EXAMPLES,
    TRAIN_FLOPS,
    TRAIN_S,
    TRAIN_TOKENS,
    WALL_S,
    library_versions,
    tokens_per_second,
)
from lightning_adapt.verdict.arms import Arm, task_arms, tier_of
from lightning_adapt.verdict.data_efficiency import data_efficiency, run_size
from lightning_adapt.verdict.intervals import LEVEL, RESAMPLES, SEED
from lightning_adapt.verdict.points import ICLPoint, icl_points, icl_seconds, icl_source
from lightning_adapt.verdict.rules import METRIC, TIERS, Candidate, metric_of, recommend
from lightning_adapt.verdict.run import Run, agreed_specs, check_runs, json_data, link_runs
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
    """Per general-ability task (scored for forgetting): its score (`acc` when logged, else its first metric) at its
    fewest shots, and each trained run's curve of it with the change since the base model."""
    summary = {}
    for name, spec in agreed_specs(runs, "general_tasks").items():
        k = min(spec["shots"])
        logged = [parsed.metric for run in runs for parsed in map(parse_icl_key, run.metrics)
                  if parsed and parsed.task == name and parsed.k == k and not parsed.std and parsed.metric != PROMPT_TOKENS]
        if not logged:
            continue
        metric = METRIC if METRIC in logged else logged[0]
        curves = {run.method: change_curve(run, icl_key(name, metric, k), "score") for run in runs if run.trains}
        summary[name] = {"metric": metric, "k": k, "spec": spec, "runs": {m: c for m, c in curves.items() if c}}
    return summary


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
        "train_size": run_size(run),
        "estimate": run.info.get("estimate"),
        "train_tokens": tokens,
        "tokens_per_s": tokens_per_second(tokens, train_s),
        "wall_s": run.last(WALL_S),
        "train_s": train_s,
        "peak_memory_bytes": max(run.metrics[PEAK_MEMORY].values()) if PEAK_MEMORY in run.metrics else None,
        "training_flops": run.last(TRAIN_FLOPS, 0.0),
        "cumulative_flops": run.last(TRAIN_FLOPS, 0.0) + run.offset(TRAIN_FLOPS),
        "cumulative_tokens": tokens + run.offset(TRAIN_TOKENS),
        "first_result_s": None if first is None else first + run.offset(WALL_S),
        "general_loss": change_curve(run, "val/general_loss"),
        "domain_loss": change_curve(run, "val/domain_loss"),
        "search": run.info.get("search"),
        "sweep": run.info.get("sweep"),
    }


def task_summary(
    runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float, margin: float, spec: dict[str, Any]
) -> dict[str, Any]:
    """`task`'s entry of report.json: ICL's points on the base model, the best and the chosen one (fewest prompt
    tokens within the tolerance of the best), every trained arm with its chosen point and break-even counts, and the
    recommendation; every choice made on the selection part, every score on the test part."""
    source = icl_source(runs, task, metric)
    points = icl_points(source, task, metric, config, answer_tokens)
    best = max(points, key=lambda p: (p.scored.choice, -p.data["prompt_tokens"]))
    tolerance = max(margin, best.scored.selection_std)
    chosen = min((p for p in points if p.scored.choice >= best.scored.choice - tolerance),
                 key=lambda p: (p.data["prompt_tokens"], -p.scored.choice))
    prompted = sorted((p for p in points if p.prompted), key=lambda p: (-p.scored.choice, p.data["prompt_tokens"]))
    compared = chosen if chosen.prompted else next(iter(prompted), None)
    arms = task_arms(runs, task, metric, config, answer_tokens, points, best, tolerance)
    icl_method = next((run.method for run in runs if not run.trains), "icl")
    candidates = [Candidate(icl_method, 0, chosen.data["mean"], 0.0, chosen.scored.test)] + [
        Candidate(arm.name, arm.tier, arm.data["chosen"]["score"], arm.data["chosen"]["flops"], arm.outcomes)
        for arm in arms if arm.data["chosen"] is not None]
    choice, reasons, comparisons = recommend(candidates, tolerance)
    arm = next((arm for arm in arms if arm.name == choice.method), None) if choice.tier else None
    unsplit = ([] if all(p.scored.split for p in points) else [source.method]) + [
        method for one in arms for method in one.unsplit if method != source.method]
    return {
        "metric": metric,
        "spec": spec,
        "selection": selection_summary(spec, points, arms, list(dict.fromkeys(unsplit))),
        "tolerance": tolerance,
        "icl": {"source": source.method, "seconds": icl_seconds(source, task),
                "points": {point.label: point.data for point in points}},
        "icl_best": best.label,
        "icl_chosen": chosen.label,
        "break_even_point": None if compared is None else compared.label,
        "arms": {one.name: one.data for one in arms},
        "recommendation": {
            "method": choice.method, "tier": TIERS[choice.tier], "score": choice.score,
            "interval": chosen.data["interval"] if arm is None else arm.data["chosen"]["interval"],
            "training_flops": choice.flops,
            "search_flops": arm.data["search"]["training_flops"] if arm is not None and arm.data["search"] else None,
            "point": chosen.label if arm is None else None, "reasons": reasons, "comparisons": comparisons,
        },
    }


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
    tasks = check_runs(runs, metric)
    base = runs[0].root.info
    config = Config(**base["model_config"])
    summaries = {name: task_summary(runs, name, metric_of(metric, name), config, answer_tokens, margin, spec)
                 for name, spec in tasks.items()}
    report = {
        "base_model": {"name": base["model"], "checkpoint_dir": base["checkpoint_dir"]},
        "settings": {"metric": metric, "answer_tokens": answer_tokens, "margin": margin,
                     "intervals": {"level": LEVEL, "resamples": RESAMPLES, "seed": SEED}},
        "tasks": summaries,
        "data_efficiency": data_efficiency(runs, summaries),
        "general_tasks": general_summary(runs),
        "runs": [run_summary(run) for run in runs],
        "configs": {run.method: run.info for run in runs},
        "versions": library_versions(),
        **(extra or {}),
    }
    return json_data(report)  # what the files show is exactly what the JSON holds
