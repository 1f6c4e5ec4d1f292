"""The report's choices on the selection part and scores on the test part, built from runs held in memory
(`measured_run`): ICL points (k, documents), a trained run's evaluation step, a search's learning rate and seeds,
break-even against documents in the prompt, and the fallback without per-query predictions naming the parts."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from lightning_adapt.record.flops import inference_flops
from lightning_adapt.record.predictions import SELECTION, TEST
from lightning_adapt.record.runs import base_config_dict
from lightning_adapt.testing import tiny_config
from lightning_adapt.verdict.intervals import seeds_queries_interval
from lightning_adapt.verdict.rules import NOT_REACHED, break_even_queries
from lightning_adapt.verdict.run import ReportError, Run, measured_run
from lightning_adapt.verdict.summary import report_data
from lightning_adapt.verdict.text import recommendation_lines

FT, CPT = "lightning_adapt.methods.finetune.FineTuning", "lightning_adapt.methods.cpt.ContinualPretraining"
SELECTED, TESTED = 10, 30
"""Queries 0-9 are the selection part, 10-39 the test part."""
SPLIT = {"fraction": 0.25, "seed": 0, "path": None}
TASK = {"name": "sent", "queries": {"path": "/data/q.jsonl", "split": "train", "name": None}, "template": "{text}",
        "target": "label", "choices": ["Positive", "Negative"], "generate": None, "instruction": "",
        "target_delimiter": " ", "max_queries": None, "subsample_seed": 0, "shots": [0, 2, 4], "seeds": [0, 1],
        "selection": SPLIT, "context": None}
CONTEXT = {"documents": "/data/bios", "top_k": [2], "max_tokens": 512, "template": "{document}\n\n", "query": None,
           "text_field": "text", "id_field": None, "source": "source", "split": "train"}
BIOS = TASK | {"name": "bios", "shots": [0], "seeds": [0], "context": CONTEXT}


def right(selection: int, test: int) -> list[float]:
    """Per-query outcomes: `selection` of the 10 selection queries right, `test` of the 30 test queries right."""
    return [float(q < selection) for q in range(SELECTED)] + [float(q < test) for q in range(TESTED)]


def records(task: str, k: int, outcomes: list[float], seeds=(0,), docs: int = 0, parts: bool = True,
            hits: list[float] | None = None) -> list[dict]:
    """One evaluation's prediction records of one (task, k, docs) point, every seed scoring `outcomes` (and retrieving
    a query's source document per `hits`)."""
    found = []
    for seed in seeds:
        for query, value in enumerate(outcomes):
            record = {"task": task, "k": k, "docs": docs, "seed": seed, "query": query, "acc": value}
            if hits is not None:
                record["hit"] = hits[query]
            if parts:
                record["part"] = SELECTION if query < SELECTED else TEST
            found.append(record)
    return found


def info(method: str, module: str | None, tasks=(TASK,), **details) -> dict:
    return {"method": method, "module": module, "checkpoint_dir": "/ckpt/base", "export_dir": None,
            "model": "tiny-llama", "model_config": base_config_dict(tiny_config()), "tasks": list(tasks), **details}


def key(task: str, metric: str, k: int, docs: int = 0, std: bool = False) -> str:
    return f"icl/{task}/{metric}{'_std' if std else ''}@k{k}" + (f"d{docs}" if docs else "")


def icl_run(tmp_path: Path, points: dict[tuple[str, int, int], tuple[list[float], float]], parts: bool = True,
            predictions: bool = True, hits: dict[tuple[str, int, int], list[float]] | None = None) -> Run:
    """The ICL-only run: per (task, k, docs) its outcomes (two seeds for k > 0) and prompt tokens, the logged means
    over every query."""
    metrics: dict[str, dict[int, float]] = {"time/wall_s": {0: 3.0}}
    found: list[dict] = []
    for (task, k, docs), (outcomes, tokens) in points.items():
        seeds = (0, 1) if k else (0,)
        metrics[key(task, "acc", k, docs)] = {0: statistics.fmean(outcomes)}
        metrics[key(task, "acc", k, docs, std=True)] = {0: 0.0}
        metrics[key(task, "prompt_tokens", k, docs)] = {0: tokens}
        metrics[f"icl/{task}/seconds"] = {0: 2.0}
        hit = (hits or {}).get((task, k, docs))
        found += records(task, k, outcomes, seeds, docs, parts, hit)
        if hit is not None:
            metrics[key(task, "hit", k, docs)] = {0: statistics.fmean(hit)}
    tasks = sorted({task for task, _, _ in points})
    specs = [spec for spec in (TASK, BIOS) if spec["name"] in tasks]
    return measured_run(tmp_path / "icl", info("icl", None, specs), metrics, {0: found} if predictions else {})


def trained_run(tmp_path: Path, method: str, module: str, steps: dict[int, list[float]], flops: float,
                task: str = "sent", docs_steps: dict[int, list[float]] | None = None, tokens: float = 20.0,
                docs_tokens: float = 300.0, parts: bool = True, predictions: bool = True, **details) -> Run:
    """A trained run scored 0-shot at each step of `steps` (step 0: the base model), FLOPs growing linearly to
    `flops` at its last step; `docs_steps`: also scored with 2 documents in the prompt."""
    last = max(steps)
    metrics: dict[str, dict[int, float]] = {
        "flops/train": {s: flops * s / last for s in steps}, "train/tokens": {s: 50.0 * s for s in steps},
        "time/wall_s": {s: 1.0 + s for s in steps}, "time/train_s": {s: float(s) for s in steps},
        key(task, "acc", 0): {s: statistics.fmean(v) for s, v in steps.items()},
        key(task, "prompt_tokens", 0): {s: tokens for s in steps},
    }
    found = {s: records(task, 0, v, parts=parts) for s, v in steps.items()}
    for s, v in (docs_steps or {}).items():
        metrics.setdefault(key(task, "acc", 0, 2), {})[s] = statistics.fmean(v)
        metrics.setdefault(key(task, "prompt_tokens", 0, 2), {})[s] = docs_tokens
        found[s] = found.get(s, []) + records(task, 0, v, docs=2, parts=parts)
    spec = BIOS if task == "bios" else TASK
    return measured_run(tmp_path / method, info(method, module, (spec,), **details), metrics,
                        found if predictions else {})


def sentiment_icl(tmp_path: Path, **kwargs) -> Run:
    """On the test queries k=4 is best (0.9); on the selection queries k=2 is (0.8 against 0.5)."""
    return icl_run(tmp_path, {("sent", 0, 0): (right(2, 9), 10.0), ("sent", 2, 0): (right(8, 18), 50.0),
                              ("sent", 4, 0): (right(5, 27), 90.0)}, **kwargs)


def lora_steps() -> dict[int, list[float]]:
    """On the test queries step 4 is best (0.95); on the selection queries step 2 is (0.9 against 0.6)."""
    return {0: right(2, 9), 2: right(9, 21), 4: right(6, 28), 6: right(3, 12)}


def report(runs: list[Run], margin: float = 0.02) -> dict:
    return report_data(runs, "acc", 1, margin, None)


def test_choices_are_made_on_the_selection_queries_and_scored_on_the_test_queries(tmp_path):
    lora = trained_run(tmp_path, "lora", FT, lora_steps(), flops=6e9)
    task = report([sentiment_icl(tmp_path), lora])["tasks"]["sent"]
    points = task["icl"]["points"]
    assert list(points) == ["k=0", "k=2", "k=4"]
    # ICL: k=4 wins on the test queries (0.9), k=2 on the selection queries (0.8): the report takes k=2 at its test score
    assert points["k=4"]["mean"] == pytest.approx(27 / 30) and points["k=4"]["selection_mean"] == pytest.approx(0.5)
    assert points["k=2"]["mean"] == pytest.approx(18 / 30) and points["k=2"]["selection_mean"] == pytest.approx(0.8)
    assert task["icl_best"] == task["icl_chosen"] == task["baseline"] == task["break_even_point"] == "k=2"
    assert points["k=2"]["interval"] == pytest.approx(list(seeds_queries_interval([right(8, 18)[SELECTED:]] * 2)))
    # k=0 (2 of 10 selection queries right) is distinguishably below k=2 (8 of 10) on the selection queries
    assert points["k=0"]["versus_best"]["difference"] == pytest.approx(-0.6)
    assert points["k=0"]["versus_best"]["interval"][1] < 0 and points["k=0"]["versus_best"]["queries"] == 10
    assert points["k=2"]["versus_best"] is None
    assert task["rule"]["margin"] == 0.02 and "paired difference on the same test queries" in task["rule"]["how"]
    # a trained run: step 4 wins on the test queries (0.933), step 2 on the selection queries (0.9)
    arm = task["arms"]["lora"]
    assert [(p["step"], p["score"], p["selection_score"]) for p in arm["timeline"]] == [
        (0, pytest.approx(9 / 30), pytest.approx(0.2)), (2, pytest.approx(21 / 30), pytest.approx(0.9)),
        (4, pytest.approx(28 / 30), pytest.approx(0.6)), (6, pytest.approx(12 / 30), pytest.approx(0.3))]
    chosen = arm["chosen"]
    assert (chosen["step"], chosen["score"], chosen["selection_score"]) == (2, pytest.approx(0.7), pytest.approx(0.9))
    assert chosen["flops"] == 2e9 and chosen["tokens"] == 100
    assert chosen["interval"] == pytest.approx(list(seeds_queries_interval([right(9, 21)[SELECTED:]])))
    config = tiny_config()
    assert arm["break_even"] == {
        "k=0": None,  # a 0-shot prompt (10 tokens) is no dearer than a trained query (20 tokens)
        "k=2": break_even_queries(2e9, inference_flops(config, 20, 1), inference_flops(config, 50, 1)),
        "k=4": NOT_REACHED,  # 0.7 on the test queries, below k=4's 0.9 (what a choice on them would have hidden)
    }
    assert arm["versus"]["k=4"]["difference"] == pytest.approx(-0.2) and arm["versus"]["k=4"]["interval"][1] < 0
    assert arm["last"] == {"step": 6, "score": pytest.approx(12 / 30), "interval": arm["timeline"][-1]["interval"]}
    # the recommendation compares the chosen points' test outcomes, paired over the 30 test queries
    (comparison,) = task["recommendation"]["comparisons"]
    assert (comparison["method"], comparison["versus"], comparison["queries"]) == ("lora", "icl at k=2", 30)
    assert comparison["difference"] == pytest.approx(0.7 - 0.6)
    assert task["selection"] == {"selection_queries": 10, "test_queries": 30, "how": (
        "Choices of k and evaluation steps were made on 10 selection queries (25% drawn with seed 0); every score, "
        "interval, paired test and break-even is on the other 30 test queries.")}


def search_runs(tmp_path: Path) -> list[Run]:
    """LoRA searched over 2 learning rates × 2 seeds. On the selection queries 1e-3 is better (seeds 0.8 and 0.7
    against 0.5 and 0.6), on the test queries 1e-4 is; each seed of 1e-3 peaks at another step."""
    by_run = {(1e-4, 0): {2: right(5, 27), 4: right(4, 26)}, (1e-4, 1): {2: right(6, 28), 4: right(2, 25)},
              (1e-3, 0): {2: right(8, 26), 4: right(1, 10)}, (1e-3, 1): {2: right(3, 12), 4: right(7, 28)}}
    runs = []
    for index, ((lr, seed), steps) in enumerate(by_run.items()):
        search = {"of": "lora", "learning_rate": lr, "seed": seed, "learning_rates": [1e-4, 1e-3], "seeds": [0, 1]}
        runs.append(trained_run(tmp_path, f"lora-lr{lr:g}-s{seed}", FT, {0: right(2, 9), **steps},
                                flops=1e9 * (index + 1), search=search))
    return runs


def test_a_search_is_one_arm_chosen_on_the_selection_queries_and_costed_as_a_whole(tmp_path):
    runs = search_runs(tmp_path)
    data = report([sentiment_icl(tmp_path), *runs])
    task = data["tasks"]["sent"]
    assert list(task["arms"]) == ["lora"]  # four runs, one arm
    arm = task["arms"]["lora"]
    search = arm["search"]
    assert arm["runs"] == [run.method for run in runs] and arm["of"] == "lora"
    assert search["chosen_learning_rate"] == 1e-3 and search["runs"] == 4
    assert [(c["learning_rate"], c["runs"], c["selection_mean"]) for c in search["configurations"]] == [
        (1e-4, ["lora-lr0.0001-s0", "lora-lr0.0001-s1"], pytest.approx(0.55)),
        (1e-3, ["lora-lr0.001-s0", "lora-lr0.001-s1"], pytest.approx(0.75))]
    assert search["training_flops"] == pytest.approx(1e9 + 2e9 + 3e9 + 4e9)  # every run of the search
    assert search["train_seconds"] == 4 * 4.0 and search["wall_seconds"] == 4 * 5.0
    chosen = arm["chosen"]
    # each seed at its own chosen step (seed 0 at step 2, seed 1 at step 4), scored over seeds × test queries
    assert chosen["steps"] == [2, 4] and chosen["seeds"] == 2
    rows = [right(8, 26)[SELECTED:], right(7, 28)[SELECTED:]]
    assert chosen["score"] == pytest.approx((26 + 28) / 60)
    assert chosen["interval"] == pytest.approx(list(seeds_queries_interval(rows)))
    assert chosen["flops"] == pytest.approx((3e9 / 2 + 4e9) / 2)  # the mean of the chosen runs' FLOPs there
    # the timeline: the chosen learning rate's seeds averaged per step
    assert [(p["step"], p["score"]) for p in arm["timeline"]] == [
        (0, pytest.approx(9 / 30)), (2, pytest.approx(38 / 60)), (4, pytest.approx(38 / 60))]
    config = tiny_config()
    query, prompt = inference_flops(config, 20, 1), inference_flops(config, 50, 1)
    assert arm["versus"]["k=2"]["interval"][1] >= 0  # not distinguishably below the baseline: a break-even
    assert arm["break_even"]["k=2"] == break_even_queries(chosen["flops"], query, prompt)
    assert arm["break_even_search"]["k=2"] == break_even_queries(1e10, query, prompt)
    assert [r["search"] for r in data["runs"]][1:] == [run.info["search"] for run in runs]
    rec = task["recommendation"]
    assert rec["method"] == "lora" and rec["search_flops"] == pytest.approx(1e10)
    assert rec["training_flops"] == pytest.approx(chosen["flops"])
    (line,) = recommendation_lines(data)
    assert line.startswith("sent: recommend lora (fine-tuning, learning rate 0.001; test acc 0.900 [")
    assert line.endswith(f"cheaper than prompting with k=2 after {arm['break_even']['k=2']:,} queries "
                         f"({arm['break_even_search']['k=2']:,} counting the whole search)")
    assert "learning rates" in task["selection"]["how"]


def bios_runs(tmp_path: Path) -> list[Run]:
    """The base model: 0.2 / 0.3 alone, 0.9 / 0.8 with 2 retrieved documents (hit on 10/10 and 24/30 queries); CPT
    at step 4 reaches 0.9 / 0.83 alone and 1.0 / 0.97 with the documents."""
    icl = icl_run(tmp_path, {("bios", 0, 0): (right(2, 9), 9.0), ("bios", 0, 2): (right(9, 24), 300.0)},
                  hits={("bios", 0, 2): right(10, 24)})
    cpt = trained_run(tmp_path, "cpt", CPT, {0: right(2, 9), 4: right(9, 25)}, flops=4e9, task="bios", tokens=9.0,
                      docs_steps={0: right(9, 24), 4: right(10, 29)}, docs_tokens=300.0)
    return [icl, cpt]


def test_documents_in_the_prompt_are_an_icl_point_with_its_cost_hit_rate_and_break_even(tmp_path):
    task = report(bios_runs(tmp_path))["tasks"]["bios"]
    config = tiny_config()
    point = task["icl"]["points"]["k=0, 2 docs"]
    assert (point["k"], point["docs"], point["prompt_tokens"]) == (0, 2, 300.0)
    assert point["query_flops"] == inference_flops(config, 300, 1)
    assert point["mean"] == pytest.approx(0.8) and point["hit_rate"] == pytest.approx(0.8)
    assert task["icl"]["points"]["k=0"]["hit_rate"] is None
    assert task["icl_chosen"] == task["baseline"] == "k=0, 2 docs"
    cpt = task["arms"]["cpt"]
    assert cpt["tier"] == "continual pretraining" and cpt["chosen"]["score"] == pytest.approx(25 / 30)
    # not "k=0": a 0-shot prompt costs as much as a trained query
    assert cpt["break_even"] == {"k=0": None, "k=0, 2 docs": break_even_queries(4e9, inference_flops(config, 9, 1),
                                                                                inference_flops(config, 300, 1))}
    assert "documents" in task["selection"]["how"]


def test_a_trained_run_scored_with_documents_is_an_arm_of_its_own(tmp_path):
    data = report(bios_runs(tmp_path))
    task = data["tasks"]["bios"]
    assert list(task["arms"]) == ["cpt", "cpt + 2 docs"]
    arm = task["arms"]["cpt + 2 docs"]
    assert (arm["runs"], arm["docs"], arm["of"], arm["tier"]) == (["cpt"], 2, "cpt", "continual pretraining")
    assert [(p["step"], p["score"], p["prompt_tokens"]) for p in arm["timeline"]] == [
        (0, pytest.approx(0.8), 300.0), (4, pytest.approx(29 / 30), 300.0)]
    assert arm["chosen"]["step"] == 4 and arm["chosen"]["query_flops"] == inference_flops(tiny_config(), 300, 1)
    assert arm["break_even"] == {"k=0": None, "k=0, 2 docs": None}  # its queries cost as much: never cheaper
    # CPT with the documents beats prompting with them (0.967 against 0.8, right wherever the prompt is, and on 5 more
    # test queries): recommended, though never cheaper per query
    rec = task["recommendation"]
    assert (rec["method"], rec["tier"], rec["point"]) == ("cpt + 2 docs", "continual pretraining", None)
    (line,) = recommendation_lines(data)
    assert line.startswith("bios: recommend cpt + 2 docs (continual pretraining; test acc 0.967 [")
    assert line.endswith("; never cheaper than prompting with k=0, 2 docs")


def test_without_predictions_choices_and_scores_use_every_query_and_say_so(tmp_path):
    runs = [sentiment_icl(tmp_path, predictions=False),
            trained_run(tmp_path, "lora", FT, lora_steps(), flops=6e9, predictions=False)]
    task = report(runs)["tasks"]["sent"]
    points = task["icl"]["points"]
    # the logged means over all 40 queries: k=4 (32/40) beats k=2 (26/40) and is chosen on them
    assert points["k=4"]["mean"] == pytest.approx(32 / 40) and points["k=4"]["selection_mean"] is None
    assert points["k=4"]["interval"] is None and task["icl_chosen"] == "k=4"
    assert task["arms"]["lora"]["chosen"]["step"] == 4 and task["arms"]["lora"]["chosen"]["interval"] is None
    assert task["selection"] == {"selection_queries": 0, "test_queries": None, "how": (
        "No per-query predictions: choices of k and evaluation steps were made on the same queries the scores are "
        "reported on.")}


def test_predictions_without_parts_choose_and_score_on_every_query_and_say_so(tmp_path):
    runs = [sentiment_icl(tmp_path, parts=False), trained_run(tmp_path, "lora", FT, lora_steps(), flops=6e9, parts=False)]
    task = report(runs)["tasks"]["sent"]
    points = task["icl"]["points"]
    assert points["k=4"]["mean"] == pytest.approx(32 / 40) and task["icl_best"] == "k=4"
    # k=2 (26/40) is paired with k=4 over the same 40 queries: chosen (fewer prompt tokens) unless distinguishably worse
    versus = points["k=2"]["versus_best"]
    assert versus["difference"] == pytest.approx(-6 / 40) and versus["queries"] == 40
    assert task["icl_chosen"] == ("k=2" if versus["interval"][1] >= 0 else "k=4")
    assert task["arms"]["lora"]["chosen"]["step"] == 4
    assert task["arms"]["lora"]["chosen"]["interval"] == pytest.approx(list(seeds_queries_interval([right(6, 28)])))
    assert task["selection"]["how"] == ("The per-query predictions name no selection part: choices of k and evaluation "
                                        "steps were made on the same 40 queries the scores are reported on.")


def test_a_run_without_parts_beside_runs_with_them_is_named(tmp_path):
    runs = [sentiment_icl(tmp_path), trained_run(tmp_path, "lora", FT, lora_steps(), flops=6e9, parts=False)]
    task = report(runs)["tasks"]["sent"]
    assert task["icl_chosen"] == "k=2" and task["arms"]["lora"]["chosen"]["step"] == 4
    assert task["selection"]["how"].endswith(
        "on the other 30 test queries, except that lora wrote no per-query predictions with a selection part, so its "
        "choices were made on the queries its scores are reported on.")


def test_runs_may_differ_in_top_k_but_not_in_the_split_or_the_collection(tmp_path):
    icl, cpt = bios_runs(tmp_path)
    other = dict(cpt.info, tasks=[BIOS | {"context": CONTEXT | {"top_k": [1, 2]}}])
    report([icl, measured_run(cpt.log_dir, other, cpt.metrics, cpt.predictions)])  # accepted
    for changed, field in ((BIOS | {"context": CONTEXT | {"documents": "/data/other"}}, "context"),
                           (BIOS | {"selection": SPLIT | {"seed": 1}}, "selection")):
        moved = measured_run(cpt.log_dir, dict(cpt.info, tasks=[changed]), cpt.metrics, cpt.predictions)
        with pytest.raises(ReportError, match=f"Task 'bios' differs between runs: {field} is"):
            report([icl, moved])


def test_a_score_below_the_prompt_is_not_reached(tmp_path):
    weak = {0: right(2, 9), 2: right(9, 12)}  # chosen on selection (0.9), 0.4 on the test queries
    task = report([sentiment_icl(tmp_path), trained_run(tmp_path, "lora", FT, weak, flops=1e9)])["tasks"]["sent"]
    assert task["arms"]["lora"]["break_even"] == {"k=0": None, "k=2": NOT_REACHED, "k=4": NOT_REACHED}
    assert task["recommendation"]["method"] == "icl" and task["recommendation"]["point"] == "k=2"
    (line,) = recommendation_lines({"tasks": {"sent": task}})
    assert line.startswith("sent: recommend icl (in-context learning, k=2; test acc 0.600 [")
