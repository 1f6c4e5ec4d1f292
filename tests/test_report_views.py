"""report.md and the plots drawn from a report.json built by hand after the schema: a knowledge task with documents in
the prompt and a searched arm, and a plain task."""

from __future__ import annotations

import pytest

from lightning_adapt.verdict.markdown import markdown
from lightning_adapt.verdict.plots import plot_cost, plot_data, plot_forgetting, plot_timeline
from lightning_adapt.verdict.text import arm_name, point_label

FT, CPT = "lightning_adapt.methods.finetune.FineTuning", "lightning_adapt.methods.cpt.ContinualPretraining"
RATES, SEEDS = [1e-4, 1e-3], [0, 1]
SEARCH_RUNS = [f"lora-lr{lr:g}-s{seed}" for lr in RATES for seed in SEEDS]
ONE_DOC, CPT_DOCS = point_label(0, 1), arm_name("cpt", 1)
HOW = ("k, documents, evaluation steps and learning rates were chosen on {s} selection queries (25% drawn with seed "
       "0); every score, interval, paired test and break-even is on the other {t} test queries.")


def point(k: int, docs: int, mean: float, tokens: float, hit: float | None = None) -> dict:
    return {"label": point_label(k, docs), "k": k, "docs": docs, "mean": mean, "std": 0.02,
            "interval": [mean - 0.05, mean + 0.05], "selection_mean": mean + 0.01, "prompt_tokens": tokens,
            "query_flops": 1e6 * tokens, "hit_rate": hit, "all_metrics": {"acc": mean, "acc_calibrated": mean + 0.02}}


def timeline(scores: list[float], flops_per_step: float, prompt_tokens: float) -> list[dict]:
    return [{"step": 5 * i, "score": s, "selection_score": s + 0.01, "interval": [s - 0.06, s + 0.06],
             "tokens": 1000.0 * i, "flops": flops_per_step * i, "prompt_tokens": prompt_tokens}
            for i, s in enumerate(scores)]


def arm(runs: list[str], tier: str, scores: list[float], flops: float, prompt_tokens: float, labels: list[str],
        docs: int = 0, of: str | None = None, search: dict | None = None) -> dict:
    points = timeline(scores, flops, prompt_tokens)
    best = max(points[1:], key=lambda p: p["selection_score"])
    return {
        "runs": runs, "tier": tier, "docs": docs, "of": of or runs[0], "timeline": points,
        "chosen": best | {"query_flops": 1e6 * prompt_tokens, "seeds": 2 if search else 1},
        "reaches_best_icl": None,
        "break_even": {name: 1234 if i == 0 else "not reached" for i, name in enumerate(labels)},
        "break_even_search": {name: 5678 for name in labels} if search else None,
        "search": search,
    }


def search() -> dict:
    return {"of": "lora", "learning_rates": RATES, "seeds": SEEDS, "chosen_learning_rate": 1e-3,
            "configurations": [{"learning_rate": lr, "runs": [f"lora-lr{lr:g}-s{s}" for s in SEEDS],
                                "selection_mean": 0.5 + lr} for lr in RATES],
            "runs": 4, "training_flops": 4.4e12, "train_s": 40.0, "wall_s": 55.0}


def task(points: list[dict], arms: dict, rec: dict, selection: int, test: int) -> dict:
    by_label = {p["label"]: p for p in points}
    prompted = [p["label"] for p in points if p["label"] != "k=0"]
    return {"metric": "acc", "spec": {}, "tolerance": 0.02,
            "selection": {"selection_queries": selection, "test_queries": test,
                          "how": HOW.format(s=selection, t=test)},
            "icl": {"source": "icl", "seconds": 2.0, "points": by_label},
            "icl_best": prompted[-1], "icl_chosen": prompted[0], "break_even_point": prompted[0],
            "arms": arms,
            "recommendation": {"tier": "fine-tuning", "interval": [0.7, 0.9], "training_flops": 1e12,
                               "search_flops": None, "point": None, "reasons": ["a reason"], "comparisons": []} | rec}


def run(method: str, module: str | None, search: dict | None = None) -> dict:
    trained = module is not None
    loss = [{"step": 0, "loss": 2.0, "change": 0.0, "tokens": 0.0, "flops": 0.0},
            {"step": 10, "loss": 2.1, "change": 0.1, "tokens": 2000.0, "flops": 2e12}] if trained else []
    return {"method": method, "tier": "fine-tuning" if module == FT else "continual pretraining" if trained
            else "in-context learning", "module": module, "continues": None, "path": f"/runs/{method}",
            "log_dir": f"/runs/{method}/logs", "params_trainable": 100.0 if trained else 0.0, "params_total": 1000.0,
            "changed_bytes": 400.0 if trained else 0.0, "train_examples": 80.0, "train_size": ["examples", 300],
            "estimate": None, "train_tokens": 2000.0, "tokens_per_s": 50.0, "wall_s": 12.0, "train_s": 10.0,
            "peak_memory_bytes": 3e8, "training_flops": 1.1e12, "cumulative_flops": 1.1e12,
            "cumulative_tokens": 2000.0, "first_result_s": 5.0, "general_loss": loss, "domain_loss": [],
            "search": search, "sweep": None}


def hand_built() -> dict:
    """report.json's data for two tasks: `bios` with documents points, a searched LoRA arm, CPT and CPT + 1 document
    in the prompt; `sent` with demonstrations only."""
    bios_points = [point(0, 0, 0.16, 9), point(2, 0, 0.2, 40), point(0, 1, 0.9, 83, hit=0.95),
                   point(0, 3, 0.95, 240, hit=1.0)]
    bios_labels = [p["label"] for p in bios_points[1:]]
    bios_arms = {
        "lora": arm(SEARCH_RUNS, "fine-tuning", [0.16, 0.3, 0.4], 1e12, 9, bios_labels, of="lora", search=search()),
        "cpt": arm(["cpt"], "continual pretraining", [0.16, 0.5, 0.6], 2e12, 9, bios_labels),
        CPT_DOCS: arm(["cpt"], "continual pretraining", [0.9, 0.93, 0.97], 2e12, 83, bios_labels, docs=1,
                            of="cpt"),
    }
    sent_points = [point(0, 0, 0.55, 20), point(4, 0, 0.7, 100)]
    sent_arms = {
        "lora": arm(SEARCH_RUNS, "fine-tuning", [0.55, 0.8, 0.85], 1e12, 20, ["k=4"], of="lora", search=search()),
        "cpt": arm(["cpt"], "continual pretraining", [0.55, 0.6, 0.62], 2e12, 20, ["k=4"]),
    }
    lora_runs = [run(name, FT, {"of": "lora", "learning_rate": lr, "seed": seed, "learning_rates": RATES,
                                "seeds": SEEDS}) for name, (lr, seed) in zip(SEARCH_RUNS, [(lr, s) for lr in RATES
                                                                                            for s in SEEDS])]
    return {
        "base_model": {"name": "tiny", "checkpoint_dir": "/ckpt"},
        "settings": {"metric": "acc", "answer_tokens": 1, "margin": 0.02,
                     "intervals": {"level": 0.95, "resamples": 1000, "seed": 0}},
        "tasks": {
            "bios": task(bios_points, bios_arms, {"method": CPT_DOCS, "tier": "continual pretraining",
                                                  "score": 0.93}, 20, 60),
            "sent": task(sent_points, sent_arms, {"method": "lora", "score": 0.85, "search_flops": 4.4e12}, 30, 90),
        },
        "data_efficiency": {
            name: {"target": 0.7, "target_k": 4, "target_point": "k=4", "icl": [{"k": 4, "docs": 0, "mean": 0.7, "std": 0.02,
                                                                    "interval": None}],
                   "curves": {"lora": {"unit": "examples", "swept": False, "to_match_icl": {"status": "reached",
                                                                                           "size": 300},
                                       "points": [{"size": 300, "mean": 0.85, "std": 0.0, "seeds": 1,
                                                   "runs": ["lora"], "interval": [0.8, 0.9]}]}}}
            for name in ("bios", "sent")},
        "general_tasks": {},
        "runs": [run("icl", None), *lora_runs, run("cpt", CPT)],
        "configs": {},
        "versions": {"torch": "2"},
    }


@pytest.fixture
def report() -> dict:
    return hand_built()


def test_markdown_states_the_selection_the_search_and_the_documents(report):
    md = markdown(report)
    for how in (HOW.format(s=20, t=60), HOW.format(s=30, t=90)):
        assert how in md  # one sentence per task: choices on the selection queries, scores on the test queries
    assert "every choice" in md and "is made on the selection queries" in md and "on the test queries" in md
    header = next(line for line in md.splitlines() if line.startswith("|  | ICL |"))
    assert header == f"|  | ICL | lora | cpt | {CPT_DOCS} |"  # one column per arm: a search is one column
    search_row = next(line for line in md.splitlines() if line.startswith("| search (bios) |"))
    assert "4 runs (learning rates 0.0001, 0.001; seeds 0, 1), chosen lr 0.001" in search_row
    assert "| training FLOPs (with the run it continues) | 0 | 1.1e+12 | 1.1e+12 | 1.1e+12 |" in md
    assert "| training FLOPs of the whole search | — | 4.4e+12 (4 runs) | — | — |" in md
    assert "| time of the whole search: training steps; wall (s) | — | 40.0; 55.0 | — | — |" in md
    assert "1,234 vs k=2; with the whole search 5,678" in md
    assert f"| {ONE_DOC} | 0 | 1 | 0.900 ± 0.020 | [0.850, 0.950] | 0.910 | 0.920 | 83.0 | 8.3e+07 | 0.950 |" in md
    assert "| k=2 | 2 | 0 | 0.200 ± 0.020 | [0.150, 0.250] | 0.210 | 0.220 | 40.0 | 4e+07 | — | chosen" in md
    assert f"| arm | vs k=2 (baseline) | vs {ONE_DOC} | vs {point_label(0, 3)} |" in md
    assert "| lora (whole search) | 5,678 | 5,678 | 5,678 |" in md
    assert "| sent | — | 0.850 [0.790, 0.910] (step 10, 2 seeds) | 0.620" not in md  # a task without the arm: "—"
    assert "| **score** on the test queries [95% interval] (sent) | 0.700 ± 0.020 [0.650, 0.750] (k=4) | " \
           "0.850 [0.790, 0.910] (step 10, 2 seeds) | 0.620 [0.560, 0.680] (step 10) | — |" in md
    assert "- `lora-lr0.001-s1` (fine-tuning; search of `lora`: learning rate 0.001, seed 1): " in md
    assert f"{CPT_DOCS} at step 10 (chosen by its selection score 0.980) scores 0.970" in md


def test_the_plots_are_written(report, tmp_path):
    for plot, name in ((plot_timeline, "timeline.png"), (plot_cost, "cost.png"), (plot_forgetting, "forgetting.png"),
                       (plot_data, "data.png")):
        plot(report, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 20_000, name


def test_a_report_of_prompting_alone_has_no_arm_columns_and_no_search_rows(tmp_path):
    report = hand_built()
    for name, task in report["tasks"].items():
        task["arms"] = {}
        task["recommendation"] |= {"method": "icl", "tier": "in-context learning", "point": task["icl_chosen"]}
        report["data_efficiency"][name]["curves"] = {}
    report["runs"] = report["runs"][:1]
    md = markdown(report)
    assert "|  | ICL |\n" in md and "| training FLOPs of the whole search" not in md and "| search" not in md
    assert "No trained arms, or no ICL prompt with demonstrations or documents to compare with." in md
    for plot in (plot_timeline, plot_cost, plot_forgetting, plot_data):
        plot(report, tmp_path / "plot.png")
        assert (tmp_path / "plot.png").stat().st_size > 20_000, plot.__name__
