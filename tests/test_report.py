import csv
import json
from pathlib import Path

import pytest

from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.runs import base_config_dict
from lightning_adapt.record.predictions import write_predictions
from lightning_adapt.verdict.report import build_report
from lightning_adapt.verdict.rules import NOT_REACHED, Candidate, break_even_queries, recommend
from lightning_adapt.verdict.run import ReportError, load_run
from lightning_adapt.verdict.summary import report_data
from lightning_adapt.testing import tiny_config

TASK = {"name": "sent", "queries": {"path": "/data/q.jsonl", "split": "train", "name": None}, "template": "{text}",
        "target": "label", "choices": ["Positive", "Negative"], "generate": None, "instruction": "",
        "target_delimiter": " ", "max_queries": None, "subsample_seed": 0, "shots": [0, 4], "seeds": [0, 1]}


def test_break_even_on_hand_computed_cases():
    # training 1000 FLOPs, a trained query 10, a prompted query 20: 1000 + 100*10 = 2000 is not below 2000, n=101 is
    assert break_even_queries(1000, 10, 20) == 101
    assert break_even_queries(999, 10, 20) == 100  # 999 + 1000 < 2000, and 999 + 990 >= 1980
    assert break_even_queries(0, 10, 20) == 1
    assert break_even_queries(1000, 20, 20) is None  # a trained query is not cheaper: never
    assert break_even_queries(1000, 30, 20) is None
    assert break_even_queries(3e15, 1e9, 4e9) == 1_000_001


def test_recommendation_follows_the_source_order():
    """Without per-query outcomes the means decide, with the margin."""
    icl = Candidate("icl", 0, 0.70, 0.0, point="k=4")
    lora, full = Candidate("lora", 1, 0.90, 1e12), Candidate("full", 1, 0.91, 5e12)
    cpt = Candidate("cpt", 2, 0.915, 9e12)
    assert recommend([icl, Candidate("lora", 1, 0.71, 1e12)], 0.02)[0] == icl  # not better by more than the margin
    choice, reasons, _ = recommend([icl, lora, full, cpt], 0.02)
    assert choice == lora  # cheapest fine-tuning within the margin of the best; CPT not better than it by > 0.02
    # each line names the tier's pick with the pick's own score (lora's 0.900, not the tier's top 0.910)
    assert reasons[0].startswith("fine-tuning: lora (0.900) beats icl at k=4 (0.700): +0.200 (no per-query predictions")
    assert reasons[-1] == ("continual pretraining: cpt (0.915) does not beat lora (0.900): +0.015 (no per-query "
                           "predictions for cpt and lora: the means decide), not more than the margin 0.020: keep the "
                           "cheaper, lora")
    assert recommend([icl, lora, Candidate("cpt", 2, 0.95, 9e12)], 0.02)[0].method == "cpt"  # a domain gap
    assert recommend([icl, Candidate("lora", 1, 0.2, 1e12), Candidate("cpt", 2, 0.75, 1e13)], 0.02)[0].method == "cpt"


def write_run(root: Path, info: dict, rows: list[dict]) -> Path:
    """A run directory as the Accounting callback and a CSVLogger leave it."""
    log_dir = root / "logs" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "accounting.json").write_text(json.dumps(info))
    keys = ["step", "epoch"] + sorted({key for row in rows for key in row} - {"step", "epoch"})
    with open(log_dir / "metrics.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return root


def info(method: str, module: str | None, checkpoint_dir="/ckpt/base", export_dir=None, task=TASK) -> dict:
    return {"method": method, "module": module, "checkpoint_dir": checkpoint_dir, "export_dir": export_dir,
            "model": "tiny-llama", "model_config": base_config_dict(tiny_config()), "tasks": [task]}


def icl_rows() -> list[dict]:
    """The ICL-only run as `record_evaluation` leaves it: the evaluation's metrics, its time and memory."""
    return [{"step": 0, "icl/sent/acc@k0": 0.5, "icl/sent/acc_std@k0": 0.0, "icl/sent/prompt_tokens@k0": 20,
             "icl/sent/acc@k4": 0.7, "icl/sent/acc_std@k4": 0.05, "icl/sent/prompt_tokens@k4": 100,
             "icl/sent/acc_calibrated@k4": 0.75, "icl/sent/acc_calibrated@k0": 0.55, "icl/sent/seconds": 2.0,
             "time/wall_s": 3.0, "time/first_result_s": 3.0, "memory/peak_bytes": 1e8}]


def lora_rows(final_score: float = 0.9) -> list[dict]:
    """ICLEvaluation's, Accounting's and the module's rows (self.log's with an epoch column), all at the optimizer
    steps completed."""
    return [
        {"step": 0, "icl/sent/acc@k0": 0.5, "icl/sent/prompt_tokens@k0": 20},
        {"step": 0, "flops/train": 0, "train/tokens": 0, "train/examples": 0, "params/trainable": 100,
         "params/total": 1000, "params/changed_bytes": 400, "time/wall_s": 1.0, "time/train_s": 0.0,
         "time/eval_s": 0.0, "memory/peak_bytes": 2e8},
        {"step": 0, "val/general_loss": 2.0},
        {"step": 0, "time/eval_s": 0.5, "time/wall_s": 1.5},  # the step-0 evaluation ends at the first step
        {"step": 1, "flops/train": 1e9, "train/tokens": 50, "train/examples": 2, "time/wall_s": 2.5, "time/train_s": 1.0,
         "time/eval_s": 0.5, "memory/peak_bytes": 3e8},
        {"step": 1, "epoch": 0, "train/loss": 3.0},
        {"step": 2, "flops/train": 2e9, "train/tokens": 100, "train/examples": 4, "time/wall_s": 3.5,
         "time/train_s": 2.0, "time/eval_s": 0.5, "memory/peak_bytes": 3e8},
        {"step": 2, "epoch": 0, "train/loss": 2.5},
        {"step": 2, "epoch": 0, "val/general_loss": 2.25},
        {"step": 2, "icl/sent/acc@k0": final_score, "icl/sent/prompt_tokens@k0": 20},
        {"step": 2, "time/first_result_s": 5.0},
        {"step": 2, "time/eval_s": 3.0, "time/wall_s": 6.0},
    ]


FT = "lightning_adapt.methods.finetune.FineTuning"


@pytest.fixture
def runs(tmp_path):
    icl = write_run(tmp_path / "icl", info("icl", None), icl_rows())
    lora = write_run(tmp_path / "lora", info("lora", FT), lora_rows())
    return icl, lora


def report_of(paths: list[Path], **settings) -> dict:
    """report.json's data for run folders (`build_report`'s defaults)."""
    return report_data([load_run(path) for path in paths], settings.get("metric", "acc"), 1,
                       settings.get("margin", 0.02), None)


@pytest.mark.parametrize("final_score, expected", [(0.69, "counted"), (0.6, NOT_REACHED)])
def test_break_even_only_for_runs_that_reach_the_k_shot_score_without_predictions(tmp_path, final_score, expected):
    """No per-query predictions: 4-shot ICL's 0.7 is reached within the margin (0.69: a cost comparison), not by 0.6
    (0.05 across ICL's seeds widens nothing: the margin alone decides), and the rule's sentence says so."""
    icl = write_run(tmp_path / "icl", info("icl", None), icl_rows())
    lora = write_run(tmp_path / "lora", info("lora", FT), lora_rows(final_score=final_score))
    task = report_of([icl, lora])["tasks"]["sent"]
    even = task["arms"]["lora"]["break_even"]["k=4"]
    assert task["arms"]["lora"]["versus"]["k=4"] == {"difference": pytest.approx(final_score - 0.7), "interval": None,
                                                     "queries": None}
    assert task["rule"]["how"].startswith("Without per-query predictions the means decide")
    if expected == NOT_REACHED:
        assert even == NOT_REACHED and task["arms"]["lora"]["reaches_best_icl"] is None
    else:
        assert isinstance(even, int) and even > 0 and task["arms"]["lora"]["reaches_best_icl"]["step"] == 2


def test_report_numbers_come_from_the_logged_metrics(tmp_path, runs):
    report = report_of(list(runs))
    task = report["tasks"]["sent"]
    config = tiny_config()
    assert task["icl"]["points"]["k=4"] == {
        "label": "k=4", "k": 4, "docs": 0, "mean": 0.7, "std": 0.05, "interval": None, "selection_mean": None,
        "prompt_tokens": 100.0, "generated_tokens": None, "query_flops": inference_flops(config, 100, 1),
        "hit_rate": None, "all_metrics": {"acc": 0.7, "acc_calibrated": 0.75}, "versus_best": None,
    }
    assert list(task["icl"]["points"]) == ["k=0", "k=4"]
    assert task["icl_best"] == task["icl_chosen"] == task["baseline"] == task["break_even_point"] == "k=4"
    assert task["rule"]["margin"] == 0.02 and "tolerance" not in task
    # no predictions: choices and scores on the logged means, and the sentence says so
    assert task["selection"] == {"selection_queries": 0, "test_queries": None, "how": (
        "The task has no selection split (selection: null): choices of k and evaluation steps were made on the same "
        "queries the scores are reported on.")}
    lora = task["arms"]["lora"]
    assert (lora["runs"], lora["tier"], lora["docs"], lora["of"], lora["search"]) == (["lora"], "fine-tuning", 0, "lora",
                                                                                       None)
    # every logged value sits at the optimizer step it was measured after (self.log rows are one step behind)
    assert [(p["step"], p["score"], p["tokens"], p["flops"]) for p in lora["timeline"]] == [(0, 0.5, 0, 0), (2, 0.9, 100, 2e9)]
    q0, q4 = inference_flops(config, 20, 1), inference_flops(config, 100, 1)
    chosen = lora["chosen"]
    assert chosen["step"] == 2 and chosen["query_flops"] == q0 and chosen["seeds"] == 1
    # what it spent up to the chosen evaluation: its data seen, its training and its evaluation time apart
    assert (chosen["examples_seen"], chosen["tokens_seen"]) == (4, 100) and lora["train_file"] is None
    assert (chosen["train_seconds"], chosen["eval_seconds"], chosen["wall_seconds"]) == (2.0, 3.0, 6.0)
    assert lora["last"] == {"step": 2, "score": 0.9, "interval": None}
    assert lora["break_even"] == {"k=0": None, "k=4": int(2e9 // (q4 - q0)) + 1} and lora["break_even_search"] is None
    assert lora["reaches_best_icl"]["tokens"] == 100
    rec = task["recommendation"]
    assert rec["method"] == "lora" and rec["point"] is None and rec["baseline"] == "k=4"
    summary = next(r for r in report["runs"] if r["method"] == "lora")
    assert summary["search"] is None and summary["sweep"] is None
    assert summary["tokens_per_s"] == 50.0 and summary["peak_memory_bytes"] == 3e8
    assert (summary["train_seconds"], summary["eval_seconds"], summary["wall_seconds"]) == (2.0, 3.0, 6.0)
    assert summary["train_examples"] == 4 and summary["changed_bytes"] == 400 and summary["first_result_s"] == 5.0
    assert [(p["step"], p["loss"], p["change"], p["tokens"]) for p in summary["general_loss"]] == [(0, 2.0, 0.0, 0), (2, 2.25, 0.25, 100)]
    icl = next(r for r in report["runs"] if r["method"] == "icl")
    assert (icl["train_seconds"], icl["eval_seconds"], icl["wall_seconds"]) == (0.0, 3.0, 3.0)
    assert report["configs"]["lora"]["module"] == FT and "torch" in report["versions"]
    assert report["general"] == {"block_length": tiny_config().block_size}  # one run scored general text


def test_icl_stays_recommended_when_training_does_not_beat_it_and_metric_is_selectable(tmp_path):
    icl = write_run(tmp_path / "icl", info("icl", None), icl_rows())
    lora = write_run(tmp_path / "lora", info("lora", FT), lora_rows(final_score=0.71))
    assert report_of([icl, lora])["tasks"]["sent"]["recommendation"]["method"] == "icl"
    calibrated = report_of([icl], metric={"sent": "acc_calibrated"})
    task = calibrated["tasks"]["sent"]
    assert task["icl"]["points"][task["icl_best"]]["mean"] == 0.75


def test_a_run_continuing_another_adds_its_cost(tmp_path, runs):
    cpt = write_run(tmp_path / "cpt", info("cpt", "lightning_adapt.methods.cpt.ContinualPretraining",
                                           export_dir="/runs/cpt/final"), lora_rows())
    chained = write_run(tmp_path / "cpt+lora", info("cpt+lora", FT, checkpoint_dir="/runs/cpt/final"), lora_rows())
    report = report_of([*runs, cpt, chained])
    timeline = report["tasks"]["sent"]["arms"]["cpt+lora"]["timeline"]
    assert [(p["tokens"], p["flops"]) for p in timeline] == [(100, 2e9), (200, 4e9)]
    summary = next(r for r in report["runs"] if r["method"] == "cpt+lora")
    assert summary["continues"] == "cpt" and summary["tier"] == "continual pretraining"
    assert summary["first_result_s"] == 6.0 + 5.0  # after the CPT run's whole wall time
    assert [p["change"] for p in summary["general_loss"]] == [0.25, 0.5]


def test_bad_runs_are_refused_with_the_reason(tmp_path, runs):
    icl, lora = runs
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReportError, match="holds no accounting.json.*Accounting callback"):
        build_report([icl, empty], tmp_path / "r")
    (lora / "logs" / "version_1").mkdir()
    (lora / "logs" / "version_1" / "accounting.json").write_text("{}")
    with pytest.raises(ReportError, match="holds several runs"):
        load_run(lora)
    with pytest.raises(ReportError, match="no metrics.csv"):
        load_run(lora / "logs" / "version_1")

    other_base = write_run(tmp_path / "other", info("full", FT, checkpoint_dir="/ckpt/other"), lora_rows())
    with pytest.raises(ReportError, match="different base models.*/ckpt/base \\(icl\\).*/ckpt/other \\(full\\)"):
        build_report([icl, other_base], tmp_path / "r")
    other_task = write_run(tmp_path / "t", info("full", FT, task=TASK | {"template": "Review: {text}"}), lora_rows())
    with pytest.raises(ReportError, match="Task 'sent' differs between runs: template is '\\{text\\}'"):
        build_report([icl, other_task], tmp_path / "r")
    twice = write_run(tmp_path / "twice", info("icl", None), icl_rows())
    with pytest.raises(ReportError, match="Method 'icl' appears twice"):
        build_report([icl, twice], tmp_path / "r")
    no_flops = write_run(tmp_path / "nf", info("full", FT), [{k: v for k, v in r.items() if k != "flops/train"}
                                                              for r in lora_rows()])
    with pytest.raises(ReportError, match="lacks the metric\\(s\\) \\['flops/train'\\]"):
        build_report([icl, no_flops], tmp_path / "r")
    with pytest.raises(ReportError, match="lacks the metric.*icl/sent/exact_match@k0.*ICL metrics it has: \\['acc'"):
        build_report([icl], tmp_path / "r", metric="exact_match")
    assert not (tmp_path / "r").exists()  # nothing half-written


def right_on(indices, n: int = 120) -> list[float]:
    chosen = set(indices)
    return [float(i in chosen) for i in range(n)]


@pytest.mark.parametrize("gains, losses, expected", [(15, 9, "icl"), (30, 0, "lora")])
def test_the_recommendation_needs_a_distinguishable_paired_difference(tmp_path, gains, losses, expected):
    """4-shot ICL is right on queries 0-83 of 120 (0.7, both seeds); LoRA gains `gains` queries and loses `losses`.
    +15/-9 is 0.75: beyond the tolerance (0.02), but the paired 95% interval (0.05 ± 0.08) includes 0, so ICL stays;
    +30 is 0.95, distinguishable."""
    icl_right, base_right = right_on(range(84)), right_on(range(60))
    final = right_on([*range(losses, 84), *range(84, 84 + gains)])
    score = sum(final) / 120
    icl = write_run(tmp_path / "icl", info("icl", None), [icl_rows()[0] | {"icl/sent/acc_std@k4": 0.0}])
    lora = write_run(tmp_path / "lora", info("lora", FT), lora_rows(final_score=score))
    log = Path("logs") / "version_0"
    write_predictions(icl / log, 0, [{"task": "sent", "k": k, "seed": seed, "query": i, "acc": values[i]}
                                     for k, values in ((0, base_right), (4, icl_right)) for seed in (0, 1) for i in range(120)])
    for step, values in ((0, base_right), (2, final)):
        write_predictions(lora / log, step, [{"task": "sent", "k": 0, "seed": 0, "query": i, "acc": values[i]} for i in range(120)])
    task = report_of([icl, lora])["tasks"]["sent"]
    low, high = task["icl"]["points"]["k=4"]["interval"]
    assert low < 0.7 < high and high - low == pytest.approx(2 * 1.96 * (0.21 / 120) ** 0.5, abs=0.02)
    best = task["arms"]["lora"]["chosen"]
    assert best["step"] == 2 and best["interval"][0] < score < best["interval"][1]
    assert task["arms"]["lora"]["timeline"][0]["interval"] == [pytest.approx(v) for v in task["icl"]["points"]["k=0"]["interval"]]
    # predictions without `part`: every query both chooses and scores
    assert task["selection"]["test_queries"] == 120 and "the same 120 queries" in task["selection"]["how"]
    rec = task["recommendation"]
    assert rec["method"] == expected and rec["interval"] == (best["interval"] if expected == "lora" else [low, high])
    (comparison,) = rec["comparisons"]
    assert (comparison["method"], comparison["versus"], comparison["queries"]) == ("lora", "icl at k=4", 120)
    assert comparison["difference"] == pytest.approx(score - 0.7)
    assert comparison["distinguishable"] == comparison["beats"] == (expected == "lora")
    (reason,) = rec["reasons"]
    if expected == "icl":
        assert reason.startswith("fine-tuning: lora (0.750) does not beat icl at k=4 (0.700): +0.050 [\u2212")
        assert reason.endswith("on 120 test queries, not distinguishable from 0: keep the cheaper, icl at k=4")
    else:
        assert reason.startswith("fine-tuning: lora (0.950) beats icl at k=4 (0.700): +0.250 [+")
        assert reason.endswith("on 120 test queries, above 0 and above the margin 0.020: choose lora")


def test_predictions_are_found_beside_the_record_accounting_adds(tmp_path):
    """With TensorBoard or W&B only, Accounting's CSV logger writes `record/` inside the log folder that
    ICLEvaluation writes its predictions into; an lm-eval metric with a filter reads that filter's records."""
    record = tmp_path / "run" / "tb" / "version_0" / "record"
    record.mkdir(parents=True)
    (record / "accounting.json").write_text(json.dumps(info("lora", FT)))
    (record / "metrics.csv").write_text("step,icl/sent/acc@k0\n0,1.0\n")
    write_predictions(record.parent, 0, [
        {"task": "sent", "k": 0, "seed": 0, "query": 7, "acc": True},
        {"task": "sent", "k": 0, "seed": 0, "query": 7, "lm_eval_task": "sub", "filter": "strict", "em": 0.0},
    ])
    run = load_run(tmp_path / "run")
    assert run.outcomes("sent", "acc", 0, 0) == {0: {(None, 7): 1.0}}
    assert run.outcomes("sent", "em:strict", 0, 0) == {0: {("sub", 7): 0.0}}
    assert run.outcomes("sent", "acc", 4, 0) is None and run.outcomes("sent", "acc", 0, 2) is None
