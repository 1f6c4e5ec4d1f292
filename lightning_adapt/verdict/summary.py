"""The report's numbers, from runs (`verdict.run`): per task the ICL reference, each trained run's timeline, best score,
break-even counts and the recommendation; per run the six dimensions; forgetting; data efficiency. `report_data`
gathers them as report.json holds them."""

from __future__ import annotations

from typing import Any

from litgpt import Config

from lightning_adapt.icl.keys import PROMPT_TOKENS, SECONDS, icl_key, parse_icl_key
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.predictions import Outcomes, common_queries, matrix
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
from lightning_adapt.verdict.data_efficiency import data_efficiency, run_size
from lightning_adapt.verdict.intervals import LEVEL, RESAMPLES, SEED, seeds_queries_interval
from lightning_adapt.verdict.rules import (
    METRIC,
    NOT_REACHED,
    TIERS,
    Candidate,
    break_even_queries,
    first_reaching,
    metric_of,
    recommend,
)
from lightning_adapt.verdict.run import ReportError, Run, agreed_specs, check_runs, json_data, link_runs


def score_interval(found: Outcomes | None) -> list[float] | None:
    """The bootstrap 95% interval [low, high] of a score from its per-query outcomes (seeds and queries resampled),
    or None without them."""
    if found is None:
        return None
    return list(seeds_queries_interval(matrix(found, common_queries(found))))


def tier_of(run: Run) -> int:
    if not run.trains:
        return 0
    cpt = "ContinualPretraining" in run.info["module"] or (run.parent is not None and tier_of(run.parent) == 2)
    return 2 if cpt else 1


def icl_reference(runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float) -> dict[str, Any]:
    """Base-model k-shot scores: from the ICL-only run, else from the step-0 evaluation of a run that starts at the
    base model. {k: {mean, std, interval, prompt_tokens, query_flops}}, and which run they came from."""
    sources = [run for run in runs if not run.trains] + [run for run in runs if run.trains and run.parent is None]
    for run in sources:
        parsed = {key: icl for key in run.metrics if (icl := parse_icl_key(key)) and icl.task == task}
        shots = sorted(icl.k for icl in parsed.values() if icl.metric == metric and not icl.std and icl.k is not None)
        if shots:
            by_k = {}
            for k in shots:
                prompt = run.metrics[icl_key(task, PROMPT_TOKENS, k)][0]
                means = {icl.metric: run.metrics[key][0] for key, icl in parsed.items()
                         if icl.k == k and not icl.std and icl.metric != PROMPT_TOKENS}
                by_k[k] = {
                    "mean": means[metric],
                    "std": run.metrics.get(icl_key(task, metric, k, std=True), {0: 0.0})[0],
                    "interval": score_interval(run.outcomes(task, metric, k, 0)),
                    "prompt_tokens": prompt,
                    "query_flops": inference_flops(config, prompt, answer_tokens),
                    "all_metrics": means,
                }
            return {"source": run.method, "seconds": run.last(icl_key(task, SECONDS)), "shots": by_k}
    raise ReportError(f"No run evaluated task '{task}' on the base model (an ICL-only run or a step-0 evaluation).")


def timeline(run: Run, task: str, metric: str) -> list[dict[str, float]]:
    """The run's 0-shot scores on `task` at each evaluation, with their 95% interval over queries (None without
    predictions), the training tokens and FLOPs spent so far (the runs it continues from included) and the mean
    prompt length."""
    points = []
    for step, score in sorted(run.metrics.get(icl_key(task, metric, 0), {}).items()):
        points.append({
            "step": step,
            "score": score,
            "interval": score_interval(run.outcomes(task, metric, 0, step)),
            "tokens": (run.at(TRAIN_TOKENS, step) or 0.0) + run.offset(TRAIN_TOKENS),
            "flops": (run.at(TRAIN_FLOPS, step) or 0.0) + run.offset(TRAIN_FLOPS),
            "prompt_tokens": run.metrics[icl_key(task, PROMPT_TOKENS, 0)][step],
        })
    return points


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
    }


def trained_entry(run: Run, task: str, metric: str, config: Config, answer_tokens: float, icl: dict[str, Any],
                  tolerance: float) -> dict[str, Any]:
    """A trained run on `task`: its timeline, its best score (with the FLOPs of a 0-shot query there), where it first
    reaches ICL's best score, and its break-even query count against each k-shot prompt."""
    points = timeline(run, task, metric)
    trained = [p for p in points if p["step"] > 0]
    entry: dict[str, Any] = {"timeline": points, "best": None, "reaches_best_icl": None, "break_even": {}}
    if not trained:
        return entry
    best_icl = max(v["mean"] for v in icl["shots"].values())
    best = max(trained, key=lambda p: (p["score"], -p["flops"]))
    query = inference_flops(config, best["prompt_tokens"], answer_tokens)
    entry["best"] = best | {"query_flops": query}
    entry["reaches_best_icl"] = first_reaching(trained, best_icl)
    entry["break_even"] = {
        k: break_even_queries(best["flops"], query, v["query_flops"]) if best["score"] >= v["mean"] - tolerance
        else NOT_REACHED
        for k, v in icl["shots"].items() if k > 0
    }
    return entry


def task_summary(
    runs: list[Run], task: str, metric: str, config: Config, answer_tokens: float, margin: float
) -> dict[str, Any]:
    """ICL reference, each trained run's timeline and best score, break-even counts and the recommendation for `task`."""
    icl = icl_reference(runs, task, metric, config, answer_tokens)
    best_k = max(icl["shots"], key=lambda k: (icl["shots"][k]["mean"], -k))
    best_icl = icl["shots"][best_k]
    tolerance = max(margin, best_icl["std"])
    k_star = min(k for k, v in icl["shots"].items() if v["mean"] >= best_icl["mean"] - tolerance)
    prompted = sorted((k for k in icl["shots"] if k > 0), key=lambda k: (-icl["shots"][k]["mean"], k))
    icl_method = next((run.method for run in runs if not run.trains), "icl")
    source = next(run for run in runs if run.method == icl["source"])
    candidates = [Candidate(icl_method, 0, icl["shots"][k_star]["mean"], 0.0, source.outcomes(task, metric, k_star, 0))]
    methods = {}
    for run in (run for run in runs if run.trains):
        methods[run.method] = entry = trained_entry(run, task, metric, config, answer_tokens, icl, tolerance)
        if entry["best"] is not None:
            candidates.append(Candidate(run.method, tier_of(run), entry["best"]["score"], entry["best"]["flops"],
                                        run.outcomes(task, metric, 0, entry["best"]["step"])))
    choice, reasons, comparisons = recommend(candidates, tolerance)
    chosen = icl["shots"][k_star] if choice.tier == 0 else methods[choice.method]["best"]
    return {
        "metric": metric,
        "icl": icl,
        "icl_best": {"k": best_k, **best_icl},
        "icl_recommended_k": k_star,
        "break_even_k": k_star if k_star > 0 else next(iter(prompted), None),
        "tolerance": tolerance,
        "methods": methods,
        "recommendation": {"method": choice.method, "tier": TIERS[choice.tier], "score": choice.score,
                           "interval": chosen["interval"], "training_flops": choice.flops, "reasons": reasons,
                           "comparisons": comparisons},
    }


def report_data(
    runs: list[Run], metric: str | dict[str, str], answer_tokens: float, margin: float, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """What report.json holds, as plain JSON data, from runs read or measured (the arguments are `build_report`'s)."""
    link_runs(runs)
    tasks = check_runs(runs, metric)
    base = runs[0].root.info
    config = Config(**base["model_config"])
    summaries = {
        name: task_summary(runs, name, metric_of(metric, name), config, answer_tokens, margin) | {"spec": spec}
        for name, spec in tasks.items()
    }
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
