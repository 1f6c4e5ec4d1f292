"""A report.json built by hand after its schema, for the tests of the report's views (report.md, report.html, the
plots): a knowledge task `bios` with documents in the prompt, a searched LoRA arm, CPT and CPT + 1 document in the
prompt; a plain task `sent` with demonstrations only. Each trained arm's chosen step (5) is not its last (10)."""

from __future__ import annotations

from lightning_adapt.icl.keys import point_label
from lightning_adapt.verdict.text import arm_name

FT, CPT = "lightning_adapt.methods.finetune.FineTuning", "lightning_adapt.methods.cpt.ContinualPretraining"
RATES, SEEDS = [1e-4, 1e-3], [0, 1]
SEARCH_RUNS = [f"lora-lr{lr:g}-s{seed}" for lr in RATES for seed in SEEDS]
ONE_DOC, CPT_DOCS = point_label(0, 1), arm_name("cpt", 1)
HOW = ("k, documents, evaluation steps and learning rates were chosen on {s} selection queries (25% drawn with seed "
       "0); every score, interval, paired test and break-even is on the other {t} test queries.")
RULE = ("A costlier method is chosen over a cheaper one only where it scores more than the margin 0.02 higher and the "
        "95% interval of their paired difference on the same test queries lies above 0.")


def point(k: int, docs: int, mean: float, tokens: float, hit: float | None = None) -> dict:
    return {"label": point_label(k, docs), "k": k, "docs": docs, "mean": mean, "std": 0.02,
            "interval": [mean - 0.05, mean + 0.05], "selection_mean": mean + 0.01, "prompt_tokens": tokens,
            "query_flops": 1e6 * tokens, "hit_rate": hit, "all_metrics": {"acc": mean, "acc_calibrated": mean + 0.02},
            "versus_best": None}


def timeline(scores: list[float], flops_per_step: float, prompt_tokens: float) -> list[dict]:
    """Evaluations at steps 0, 5, 10, ...; the selection score is highest at step 5 (the chosen step)."""
    return [{"step": 5 * i, "score": s, "selection_score": s + (0.2 if i == 1 else 0.01),
             "interval": [s - 0.06, s + 0.06], "tokens": 1000.0 * i, "flops": flops_per_step * i,
             "prompt_tokens": prompt_tokens, "examples": 40.0 * i}
            for i, s in enumerate(scores)]


def versus(score: float, icl: dict) -> dict:
    difference = score - icl["mean"]
    return {"difference": difference, "interval": [difference - 0.05, difference + 0.05], "queries": 60}


def break_even(score: float, prompt_tokens: float, icl: dict, count: int) -> int | str | None:
    """"not reached" where the paired interval lies below 0, else `count` where a trained query is cheaper."""
    if versus(score, icl)["interval"][1] < 0:
        return "not reached"
    return count if icl["prompt_tokens"] > prompt_tokens else None


def arm(runs: list[str], tier: str, scores: list[float], flops: float, prompt_tokens: float, points: list[dict],
        docs: int = 0, of: str | None = None, search: dict | None = None) -> dict:
    steps = timeline(scores, flops, prompt_tokens)
    chosen, last = steps[1], steps[-1]
    score = chosen["score"]
    return {
        "runs": runs, "tier": tier, "docs": docs, "of": of or runs[0], "timeline": steps,
        "chosen": chosen | {"query_flops": 1e6 * prompt_tokens, "seeds": 2 if search else 1, "steps": [5],
                            "examples_seen": 40.0, "tokens_seen": 1000.0, "train_seconds": 4.0,
                            "eval_seconds": 30.0, "wall_seconds": 36.0},
        "last": {"step": last["step"], "score": last["score"], "interval": last["interval"]},
        "train_file": {"examples": 300},
        "reaches_best_icl": None,
        "break_even": {p["label"]: break_even(score, prompt_tokens, p, 1234) for p in points},
        "break_even_search": {p["label"]: break_even(score, prompt_tokens, p, 5678) for p in points} if search
        else None,
        "versus": {p["label"]: versus(score, p) for p in points},
        "search": search,
    }


def search() -> dict:
    return {"of": "lora", "learning_rates": RATES, "seeds": SEEDS, "chosen_learning_rate": 1e-3,
            "configurations": [{"learning_rate": lr, "runs": [f"lora-lr{lr:g}-s{s}" for s in SEEDS],
                                "selection_mean": 0.5 + lr} for lr in RATES],
            "runs": 4, "training_flops": 4.4e12, "train_seconds": 40.0, "eval_seconds": 120.0, "wall_seconds": 170.0}


def task(points: list[dict], arms: dict, rec: dict, selection: int, test: int, baseline: str, best: str) -> dict:
    return {"metric": "acc", "spec": {}, "rule": {"margin": 0.02, "how": RULE},
            "selection": {"selection_queries": selection, "test_queries": test, "how": HOW.format(s=selection, t=test)},
            "icl": {"source": "icl", "seconds": 2.0, "points": {p["label"]: p for p in points}},
            "icl_best": best, "icl_chosen": baseline, "baseline": baseline, "break_even_point": baseline,
            "arms": arms,
            "recommendation": {"tier": "fine-tuning", "interval": [0.7, 0.9], "training_flops": 1e12,
                               "search_flops": None, "point": None, "baseline": baseline,
                               "reasons": ["a reason"], "comparisons": []} | rec}


def run(method: str, module: str | None, search: dict | None = None, general_change: float = 0.1) -> dict:
    trained = module is not None
    loss = [{"step": 0, "loss": 2.0, "change": 0.0, "tokens": 0.0, "flops": 0.0},
            {"step": 10, "loss": 2.0 + general_change, "change": general_change, "tokens": 2000.0, "flops": 2e12}] \
        if trained else []
    return {"method": method, "tier": "fine-tuning" if module == FT else "continual pretraining" if trained
            else "in-context learning", "module": module, "continues": None, "path": f"/runs/{method}",
            "log_dir": f"/runs/{method}/logs", "params_trainable": 100.0 if trained else 0.0, "params_total": 1000.0,
            "changed_bytes": 400.0 if trained else 0.0, "train_examples": 80.0,
            "train_file": {"examples": 300} if trained else None, "estimate": None, "train_tokens": 2000.0,
            "tokens_per_s": 50.0, "wall_seconds": 112.0 if trained else 20.0, "train_seconds": 10.0 if trained else 0.0,
            "eval_seconds": 85.0 if trained else 18.0, "peak_memory_bytes": 3e8, "training_flops": 1.1e12,
            "cumulative_flops": 1.1e12, "cumulative_tokens": 2000.0, "first_result_s": 5.0, "general_loss": loss,
            "domain_loss": [], "search": search, "sweep": None}


def curve(of: str, sizes: list[int], swept: bool) -> dict:
    return {"unit": "examples", "swept": swept, "to_match_icl": {"status": "reached", "size": sizes[-1]},
            "points": [{"size": size, "mean": 0.5 + 0.1 * i, "std": 0.0, "seeds": 1, "runs": [of],
                        "interval": [0.45 + 0.1 * i, 0.55 + 0.1 * i], "seen": size * 2, "file_size": 300}
                       | ({} if swept else {"step": 5 * (i + 1)}) for i, size in enumerate(sizes)]}


def hand_built() -> dict:
    """report.json's data for two tasks (see the module docstring); no data-size sweep, general text scored with one
    block length."""
    bios_points = [point(0, 0, 0.16, 9), point(2, 0, 0.2, 40), point(0, 1, 0.9, 83, hit=0.95),
                   point(0, 3, 0.95, 240, hit=1.0)]
    bios_arms = {
        "lora": arm(SEARCH_RUNS, "fine-tuning", [0.16, 0.3, 0.4], 1e12, 9, bios_points, of="lora", search=search()),
        "cpt": arm(["cpt"], "continual pretraining", [0.16, 0.5, 0.6], 2e12, 9, bios_points),
        CPT_DOCS: arm(["cpt"], "continual pretraining", [0.9, 0.97, 0.93], 2e12, 83, bios_points, docs=1, of="cpt"),
    }
    sent_points = [point(0, 0, 0.55, 20), point(4, 0, 0.7, 100)]
    sent_arms = {
        "lora": arm(SEARCH_RUNS, "fine-tuning", [0.55, 0.8, 0.85], 1e12, 20, sent_points, of="lora", search=search()),
        "cpt": arm(["cpt"], "continual pretraining", [0.55, 0.6, 0.62], 2e12, 20, sent_points),
    }
    lora_runs = [run(name, FT, {"of": "lora", "learning_rate": lr, "seed": seed, "learning_rates": RATES,
                                "seeds": SEEDS})
                 for name, (lr, seed) in zip(SEARCH_RUNS, [(lr, s) for lr in RATES for s in SEEDS])]
    return {
        "base_model": {"name": "tiny", "checkpoint_dir": "/ckpt"},
        "settings": {"metric": "acc", "answer_tokens": 1, "margin": 0.02,
                     "intervals": {"level": 0.95, "resamples": 1000, "seed": 0}},
        "tasks": {
            "bios": task(bios_points, bios_arms, {"method": CPT_DOCS, "tier": "continual pretraining", "score": 0.97,
                                                  "interval": [0.91, 1.0]}, 20, 60, ONE_DOC, point_label(0, 3)),
            "sent": task(sent_points, sent_arms, {"method": "lora", "score": 0.8, "search_flops": 4.4e12}, 30, 90,
                         "k=0", "k=4"),
        },
        "data_efficiency": {  # measured against the baseline, or without documents the best prompt without them
            name: {"target": target["mean"], "target_k": target["k"], "target_point": target["label"],
                   "icl": [{key: p[key] for key in ("k", "docs", "mean", "std", "interval")} for p in points
                           if not p["docs"]],
                   "curves": {"lora": curve("lora", [40, 80], swept=False)}}
            for name, points, target in (("bios", bios_points, bios_points[1]), ("sent", sent_points, sent_points[0]))},
        "general": {"block_length": 256},
        "general_tasks": {},
        "runs": [run("icl", None), *lora_runs, run("cpt", CPT, general_change=-0.3)],
        "configs": {},
        "versions": {"torch": "2"},
    }


def with_sweep(report: dict) -> dict:
    """`report` with a data-size sweep of LoRA on `sent` over three sizes."""
    report["data_efficiency"]["sent"]["curves"]["lora-sweep"] = curve("lora", [25, 50, 100], swept=True)
    return report
