"""The comparison report: ICL, fine-tuning and continual pretraining runs on one timeline, the six dimensions measured,
the break-even query count, and a recommendation derived from the numbers by stated rules.

A run directory is anything holding one `accounting.json` (written by the `Accounting` callback, or by
`record_evaluation` for compare's ICL-only run) next to a CSV logger's `metrics.csv`, and, where the evaluations
wrote them, per-query predictions (`lightning_adapt.record.predictions`), from which every score gets a bootstrap 95%
interval and every costlier-vs-cheaper step of the recommendation a paired comparison (`lightning_adapt.verdict.intervals`;
without them intervals read n/a and the tolerance rule alone decides). `report_data` computes the
report from loaded runs, `write_report` writes `report.md`, `report.json`, `timeline.png` and `forgetting.png` (the
plots and the Markdown drawn from the JSON's numbers), and `build_report` does both from run folders.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litgpt import Config

from lightning_adapt.verdict.data_efficiency import data_efficiency, run_size
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.verdict.intervals import LEVEL, RESAMPLES, SEED, Difference, paired_difference, seeds_queries_interval
from lightning_adapt.record.predictions import Outcomes, common_queries, matrix, outcomes, read_predictions
from lightning_adapt.record.runs import (
    FIRST_RESULT_S,
    PARAMS_CHANGED_BYTES,
    PARAMS_TOTAL,
    PARAMS_TRAINABLE,
    PEAK_MEMORY,
    RUN_INFO_FILE,
    TRAIN_EXAMPLES,
    TRAIN_FLOPS,
    TRAIN_S,
    TRAIN_TOKENS,
    WALL_S,
    library_versions,
)
from lightning_adapt.icl.keys import PROMPT_TOKENS, SECONDS, icl_key, parse_icl_key
from lightning_adapt.core.atomic import atomic_directory, check_output_dir

METRICS_FILE = "metrics.csv"
TIERS = {0: "in-context learning", 1: "fine-tuning", 2: "continual pretraining"}
TASK_IDENTITY = ("queries", "template", "target", "choices", "generate", "instruction", "target_delimiter",
                 "max_queries", "subsample_seed", "task", "include_path", "limit")
"""The task fields that must agree between runs (shots, seeds and demonstrations may differ: trained runs are
usually evaluated 0-shot only)."""
METRIC, ANSWER_TOKENS, MARGIN = "acc", 1, 0.02
"""The defaults of `build_report`'s `metric`, `answer_tokens` and `margin`, which `Compare` shares."""


class ReportError(ValueError):
    """Runs that cannot be compared: missing metrics, different base models or tasks, a method given twice."""


# --- pure arithmetic -----------------------------------------------------------------------------------------------


NOT_REACHED = "not reached"
"""A break-even entry for a run whose best score stays below the k-shot score (by more than the tolerance): cost
comparisons only count between runs that are at least as good."""


def break_even_queries(training_flops: float, trained_query_flops: float, prompting_query_flops: float) -> int | None:
    """The smallest number of queries n after which training + n trained (0-shot) queries cost fewer FLOPs than n
    k-shot prompted queries: training + n·trained < n·prompting. None when a trained query is not cheaper."""
    saving = prompting_query_flops - trained_query_flops
    if saving <= 0:
        return None
    return math.floor(training_flops / saving) + 1


def first_reaching(points: list[dict[str, float]], target: float) -> dict[str, float] | None:
    """The first timeline point whose score reaches `target`, or None."""
    return next((point for point in points if point["score"] >= target), None)


@dataclass(frozen=True)
class Candidate:
    """A method's best result on a task, as the recommendation rules see it; `outcomes` are its per-query values
    behind `score` (None without a predictions file), for paired comparisons."""

    method: str
    tier: int
    score: float
    flops: float
    outcomes: Outcomes | None = field(default=None, compare=False, repr=False)


def paired(costlier: Candidate, cheaper: Candidate) -> Difference | None:
    """`costlier`'s score minus `cheaper`'s, paired over the queries both have outcomes for (None without them)."""
    if costlier.outcomes is None or cheaper.outcomes is None:
        return None
    queries = common_queries(costlier.outcomes, cheaper.outcomes)
    if not queries:
        return None
    return paired_difference(matrix(costlier.outcomes, queries), matrix(cheaper.outcomes, queries))


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "\u2212")


def comparison_text(costlier: Candidate, cheaper: Candidate, difference: Difference) -> str:
    """E.g. "lora vs icl: +0.030 [−0.020, +0.080]"."""
    return (f"{costlier.method} vs {cheaper.method}: {_signed(difference.mean)} "
            f"[{_signed(difference.low)}, {_signed(difference.high)}]")


def recommend(candidates: list[Candidate], tolerance: float) -> tuple[Candidate, list[str], list[dict[str, Any]]]:
    """Apply the source material's order: start with ICL (tier 0); move to fine-tuning (tier 1) only if its best beats
    every lower tier by more than `tolerance`; to continual pretraining (tier 2) only if it beats ICL and fine-tuning
    by more than `tolerance`. Within a tier, the run with the fewest training FLOPs among those within `tolerance` of
    the tier's best is taken. A tier's pick replaces the cheaper choice so far only if, besides, the paired bootstrap
    of their difference over the same queries is distinguishable above 0 (its interval's low end > 0); where either
    lacks per-query outcomes the tolerance rule alone decides, and the reason says so. Returns the choice, one line of
    reasoning per tier considered, and the paired comparisons made (plain data)."""
    tiers = sorted({c.tier for c in candidates})
    chosen: Candidate | None = None
    best_below, reasons, comparisons = -math.inf, [], []
    for tier in tiers:
        members = [c for c in candidates if c.tier == tier]
        top = max(c.score for c in members)
        pick = min((c for c in members if c.score >= top - tolerance), key=lambda c: (c.flops, -c.score))
        if chosen is None:
            chosen, best_below = pick, top
            continue
        beats = top > best_below + tolerance
        difference = paired(pick, chosen)
        line = (f"{TIERS[tier]} ({pick.method}: {top:.3f}) {'beats' if beats else 'does not beat'} {best_below:.3f} "
                f"by more than {tolerance:.3f}")
        if difference is None:
            line += (f" (no per-query predictions for {pick.method} and {chosen.method}: the tolerance rule alone "
                     "decides)")
        else:
            comparisons.append({"method": pick.method, "versus": chosen.method, "difference": difference.mean,
                                "interval": [difference.low, difference.high], "queries": difference.queries,
                                "distinguishable": difference.distinguishable})
            where = f"on these {difference.queries} queries"
            text = comparison_text(pick, chosen, difference)
            if not beats:
                line += f" ({text} {where})"
            elif difference.low > 0:
                line += f", and {text} is distinguishable {where}"
            else:
                line += f", but {text}, not distinguishable {where}: choose the cheaper, {chosen.method}"
        reasons.append(line)
        if beats and (difference is None or difference.low > 0):
            chosen = pick
        best_below = max(best_below, top)
    return chosen, reasons, comparisons


# --- reading runs --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run directory: its `accounting.json` and its logged metrics."""

    path: Path
    log_dir: Path
    info: dict[str, Any]
    metrics: dict[str, dict[int, float]] = field(default_factory=dict)
    """key -> {step: value}; the last value logged at a step wins."""
    parent: Run | None = None
    predictions: dict[int, list[dict[str, Any]] | None] = field(default_factory=dict, repr=False)
    """step -> the evaluation's per-query predictions (None: none written), read on first use."""

    @property
    def method(self) -> str:
        return self.info["method"]

    @property
    def trains(self) -> bool:
        return self.info.get("module") is not None

    @property
    def root(self) -> Run:
        return self.parent.root if self.parent is not None else self

    def last(self, key: str, default: float | None = None) -> float | None:
        values = self.metrics.get(key)
        return values[max(values)] if values else default

    def at(self, key: str, step: int) -> float | None:
        """The value of `key` at the latest step <= `step`."""
        steps = [s for s in self.metrics.get(key, {}) if s <= step]
        return self.metrics[key][max(steps)] if steps else None

    def offset(self, key: str) -> float:
        """What the runs this one continues from had accumulated (CPT before CPT→FT)."""
        return 0.0 if self.parent is None else self.parent.offset(key) + (self.parent.last(key) or 0.0)

    def outcomes(self, task: str, metric: str, k: int, step: int) -> Outcomes | None:
        """`metric`'s per-query values of `task` at `k` shots in the evaluation at `step`, or None."""
        if step not in self.predictions:
            self.predictions[step] = read_predictions(self.log_dir, step)
        records = self.predictions[step]
        return None if records is None else outcomes(records, task, metric, k)


def load_run(path: str | Path) -> Run:
    """Read a run directory (or its log directory) written with the `Accounting` callback.

    Steps are optimizer steps completed when a value was measured: every writer (the modules, ICLEvaluation,
    Accounting) logs at that step.
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"Run directory '{path}' does not exist.")
    found = sorted(path.rglob(RUN_INFO_FILE))
    if not found:
        raise ReportError(
            f"'{path}' holds no {RUN_INFO_FILE}: the run was not launched with lightning_adapt's Accounting callback "
            "(add it to the Trainer's callbacks, with ICLEvaluation), so its costs are unknown."
        )
    if len(found) > 1:
        listed = ", ".join(str(p.parent) for p in found)
        raise ReportError(f"'{path}' holds several runs ({listed}); pass the one you mean.")
    log_dir = found[0].parent
    metrics_file = log_dir / METRICS_FILE
    if not metrics_file.is_file():
        raise ReportError(f"'{log_dir}' has {RUN_INFO_FILE} but no {METRICS_FILE}: log the run with a CSVLogger.")
    run = Run(path, log_dir, json.loads(found[0].read_text()))
    with open(metrics_file, newline="") as fp:
        reader = csv.DictReader(fp)
        columns = reader.fieldnames or []
        if "step" not in columns:
            raise ReportError(
                f"'{metrics_file}' has no 'step' column (its columns: {', '.join(columns) or 'none'}). "
                "The report reads Lightning's CSVLogger format: a 'step' column and one column per logged metric. "
                f"Log the run with a CSVLogger and leave its {METRICS_FILE} as written."
            )
        for row in reader:
            step = int(row["step"])
            for key, value in row.items():
                if key not in ("step", "epoch") and value not in ("", None):
                    run.metrics.setdefault(key, {})[step] = float(value)
    return run


def link_runs(runs: list[Run]) -> None:
    """A run whose base checkpoint is another run's export continues it (CPT→FT)."""
    exports = {run.info.get("export_dir"): run for run in runs if run.info.get("export_dir")}
    for run in runs:
        run.parent = exports.get(run.info.get("checkpoint_dir"))
        if run.parent is run:
            raise ReportError(f"Run '{run.path}' reads its base checkpoint from its own export folder.")


def check_runs(runs: list[Run], metric: str | dict[str, str]) -> dict[str, dict[str, Any]]:
    """Refuse runs that cannot share a timeline; return the tasks (name -> spec) and check each run's metrics."""
    if not runs:
        raise ReportError("No run directories given.")
    by_method: dict[str, Run] = {}
    for run in runs:
        if run.method in by_method:
            raise ReportError(
                f"Method '{run.method}' appears twice ('{by_method[run.method].path}' and '{run.path}'); each run "
                "needs its own name (Accounting(method=...))."
            )
        by_method[run.method] = run
    bases = {}
    for run in runs:
        bases.setdefault(run.root.info.get("checkpoint_dir"), []).append(run.method)
    if len(bases) > 1:
        listed = "; ".join(f"{base} ({', '.join(methods)})" for base, methods in bases.items())
        raise ReportError(f"Runs start from different base models, so they cannot share a timeline: {listed}.")
    for run in runs:
        if not run.info.get("tasks"):
            raise ReportError(f"Run '{run.path}' ({run.method}) evaluated no ICL task: add the ICLEvaluation callback.")
    tasks = agreed_specs(runs, "tasks")
    for run in runs:
        missing = sorted(set(tasks) - {spec["name"] for spec in run.info.get("tasks", [])})
        if missing:
            raise ReportError(f"Run '{run.path}' ({run.method}) did not evaluate task(s) {missing}; the other runs did.")
        needed = [TRAIN_FLOPS, TRAIN_TOKENS, WALL_S] if run.trains else [WALL_S]
        needed += [icl_key(name, metric_of(metric, name), 0) for name in tasks]
        absent = [key for key in needed if key not in run.metrics]
        if absent:
            have = sorted({parsed.metric for parsed in map(parse_icl_key, run.metrics) if parsed and parsed.k is not None})
            raise ReportError(
                f"Run '{run.log_dir}' ({run.method}) lacks the metric(s) {absent} in {METRICS_FILE} "
                f"(ICL metrics it has: {have}). Choose the `metric` among those; a run needs the Accounting and "
                "ICLEvaluation callbacks."
            )
    return tasks


def agreed_specs(runs: list[Run], field: str) -> dict[str, dict[str, Any]]:
    """The task specs (name -> spec) the runs' records list under `field` ("tasks" or "general_tasks"); a task that
    differs between runs in a `TASK_IDENTITY` field is refused."""
    specs: dict[str, dict[str, Any]] = {}
    owner: dict[str, Run] = {}
    for run in runs:
        for spec in run.info.get(field, []):
            name = spec["name"]
            if name not in specs:
                specs[name], owner[name] = spec, run
                continue
            for key in TASK_IDENTITY:
                if spec.get(key) != specs[name].get(key):
                    raise ReportError(
                        f"Task '{name}' differs between runs: {key} is {specs[name].get(key)!r} in "
                        f"'{owner[name].path}' ({owner[name].method}) but {spec.get(key)!r} in '{run.path}' ({run.method})."
                    )
    return specs


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


def metric_of(metric: str | dict[str, str], task: str) -> str:
    """The score used for `task`: one metric name for every task, or a per-task mapping (default "acc")."""
    return metric if isinstance(metric, str) else metric.get(task, METRIC)


# --- the numbers ---------------------------------------------------------------------------------------------------


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
        "tokens_per_s": tokens / train_s if train_s else None,
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
    k_compare = k_star if k_star > 0 else next(iter(prompted), None)
    icl_method = next((run.method for run in runs if not run.trains), "icl")
    source = next(run for run in runs if run.method == icl["source"])
    candidates = [Candidate(icl_method, 0, icl["shots"][k_star]["mean"], 0.0, source.outcomes(task, metric, k_star, 0))]
    methods = {}
    for run in runs:
        if not run.trains:
            continue
        points = timeline(run, task, metric)
        trained = [p for p in points if p["step"] > 0]
        entry: dict[str, Any] = {"timeline": points, "best": None, "reaches_best_icl": None, "break_even": {}}
        if trained:
            best = max(trained, key=lambda p: (p["score"], -p["flops"]))
            query = inference_flops(config, best["prompt_tokens"], answer_tokens)
            entry["best"] = best | {"query_flops": query}
            entry["reaches_best_icl"] = first_reaching(trained, best_icl["mean"])
            entry["break_even"] = {
                k: break_even_queries(best["flops"], query, v["query_flops"])
                if best["score"] >= v["mean"] - tolerance else NOT_REACHED
                for k, v in icl["shots"].items() if k > 0
            }
            candidates.append(Candidate(run.method, tier_of(run), best["score"], best["flops"],
                                        run.outcomes(task, metric, 0, best["step"])))
        methods[run.method] = entry
    choice, reasons, comparisons = recommend(candidates, tolerance)
    chosen = icl["shots"][k_star] if choice.tier == 0 else methods[choice.method]["best"]
    return {
        "metric": metric,
        "icl": icl,
        "icl_best": {"k": best_k, **best_icl},
        "icl_recommended_k": k_star,
        "break_even_k": k_compare,
        "tolerance": tolerance,
        "methods": methods,
        "recommendation": {"method": choice.method, "tier": TIERS[choice.tier], "score": choice.score,
                           "interval": chosen["interval"], "training_flops": choice.flops, "reasons": reasons,
                           "comparisons": comparisons},
    }


REPORT_KIND = "report"


def report_data(
    runs: list[Run], metric: str | dict[str, str], answer_tokens: float, margin: float, extra: dict[str, Any] | None
) -> dict[str, Any]:
    """What report.json holds, as plain JSON data, from loaded runs (the arguments are `build_report`'s)."""
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
    return json.loads(json.dumps(report, default=str))  # what the files show is exactly what the JSON holds


def write_report(
    report: dict[str, Any], out_dir: str | Path, run_dirs: list[str | Path], overwrite: bool, overwrite_hint: str
) -> Path:
    """Write `report` (from `report_data`) as `out_dir/` with report.json, timeline.png, forgetting.png and report.md,
    atomically; `out_dir` must not be, contain or lie inside one of `run_dirs` (see `build_report`)."""
    from lightning_adapt.verdict.plots import markdown, plot_data, plot_forgetting, plot_timeline

    with atomic_directory(out_dir, REPORT_KIND, run_dirs, overwrite, overwrite_hint) as staging:
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        plot_timeline(report, staging / "timeline.png")
        plot_forgetting(report, staging / "forgetting.png")
        plot_data(report, staging / "data.png")
        (staging / "report.md").write_text(markdown(report))
    return Path(out_dir)


def build_report(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] = METRIC,
    answer_tokens: float = ANSWER_TOKENS,
    margin: float = MARGIN,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Compare runs launched by `compare` or separately, and write `out_dir/` with report.md, report.json,
    timeline.png and forgetting.png (atomically: the folder appears complete or not at all). `out_dir` must not
    be, contain or lie inside a run folder; an earlier report there is replaced only with `overwrite`.

    Args:
        run_dirs: Run directories, each holding one accounting.json + metrics.csv (any depth below).
        out_dir: The report folder to write.
        metric: The ICL metric that scores every task (acc, acc_norm, acc_calibrated, exact_match ...), or a mapping
            task -> metric (unlisted tasks: acc).
        answer_tokens: Tokens a query's answer takes (1: a class label decided by its first token), for inference FLOPs.
        margin: A costlier method must beat a cheaper one by more than this (or ICL's std across seeds, if larger),
            and, where predictions were written, distinguishably on the same queries (paired bootstrap).
        extra: More entries for report.json (e.g. the compare configuration).
        overwrite: Replace an earlier report in `out_dir` (never anything else).
        overwrite_hint: How the caller's user says `overwrite` (named in the refusal).
    """
    return report_with_data(run_dirs, out_dir, metric, answer_tokens, margin, extra, overwrite, overwrite_hint)[0]


def report_with_data(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    metric: str | dict[str, str] = METRIC,
    answer_tokens: float = ANSWER_TOKENS,
    margin: float = MARGIN,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> tuple[Path, dict[str, Any]]:
    """`build_report`, also returning the report's data (what report.json holds): the output folder is checked
    before any run is read."""
    check_output_dir(out_dir, REPORT_KIND, run_dirs, overwrite, overwrite_hint)
    report = report_data([load_run(path) for path in run_dirs], metric, answer_tokens, margin, extra)
    return write_report(report, out_dir, run_dirs, overwrite, overwrite_hint), report
