import math

import pytest

from lightning_adapt.verdict.data_efficiency import NOT_REACHED, REACHED, SMALLEST, data_efficiency, size_to_match, used
from lightning_adapt.verdict.run import Run, measured_run


def test_a_crossing_between_sizes_is_interpolated_in_log_size():
    # 0.5 at 8 examples, 0.7 at 32: 0.6 lies halfway in log(size), at sqrt(8 * 32) = 16
    assert size_to_match([(8, 0.5), (32, 0.7), (128, 0.9)], 0.6) == {"status": REACHED, "size": pytest.approx(16.0)}
    # a quarter of the way from 32 to 128 in log(size): 32 * 4 ** 0.25
    match = size_to_match([(8, 0.5), (32, 0.7), (128, 0.9)], 0.75)
    assert match["status"] == REACHED and match["size"] == pytest.approx(32 * 4**0.25)
    assert size_to_match([(8, 0.5), (32, 0.7)], 0.7) == {"status": REACHED, "size": pytest.approx(32.0)}


def test_the_first_crossing_counts_even_if_the_curve_dips_later():
    match = size_to_match([(10, 0.4), (100, 0.8), (1000, 0.5)], 0.6)
    assert match["status"] == REACHED and match["size"] == pytest.approx(10 * math.sqrt(10))


def test_reached_at_the_smallest_size_and_never_reached():
    assert size_to_match([(8, 0.9), (32, 0.95)], 0.8) == {"status": SMALLEST, "size": 8}
    assert size_to_match([(8, 0.5), (32, 0.55), (128, 0.59)], 0.6) == {"status": NOT_REACHED, "size": None}
    assert size_to_match([], 0.6) == {"status": NOT_REACHED, "size": None}


def point(k: int, docs: int, mean: float, selection: float | None) -> dict:
    return {"label": f"k={k}" + (f", {docs} docs" if docs else ""), "k": k, "docs": docs, "mean": mean, "std": 0.0,
            "interval": None, "selection_mean": selection, "prompt_tokens": 10.0 * (k + 1) + 100.0 * docs}


def arm(runs: list[str], file_size: int, timeline: list[tuple[int, float, int]], docs: int = 0) -> dict:
    """An arm trained on `file_size` examples, evaluated at (step, test score, examples seen), chosen at the last."""
    points = [{"step": step, "score": score, "interval": [score - 0.1, score + 0.1], "examples_seen": seen}
              for step, score, seen in [(0, 0.3, 0), *timeline]]
    return {"runs": runs, "docs": docs, "train_file": {"examples": file_size}, "timeline": points,
            "chosen": points[-1] | {"seeds": 1}}


def run(tmp_path, method: str, sweep: dict | None = None) -> Run:
    return measured_run(tmp_path / method, {"method": method, "module": "FineTuning", "sweep": sweep}, {}, {})


POINTS = {p["label"]: p for p in (point(0, 0, 0.5, 0.5), point(2, 0, 0.6, 0.8), point(4, 0, 0.7, 0.6),
                                  point(0, 2, 0.95, 0.9))}


def test_a_sweep_is_measured_in_the_examples_each_size_used_and_against_the_baseline(tmp_path):
    """Every size trained for 30 steps of 8 (240 examples seen): 8 and 32 examples used, the files repeated; the
    documents arm is no labelled-data comparison and stays out; the target is the baseline's test mean."""
    runs = [run(tmp_path, f"lora-n{n}", {"of": "lora", "examples": n}) for n in (8, 32)]
    task = {"icl": {"points": POINTS}, "baseline": "k=2",
            "arms": {"lora-n8": arm(["lora-n8"], 8, [(30, 0.5, 240)]),
                     "lora-n32": arm(["lora-n32"], 32, [(30, 0.7, 240)]),
                     "lora-n32 + 2 docs": arm(["lora-n32"], 32, [(30, 0.99, 240)], docs=2)}}
    (out,) = data_efficiency(runs, {"sent": task}).values()
    assert (out["target"], out["target_k"], out["target_point"]) == (0.6, 2, "k=2")
    assert [p["k"] for p in out["icl"]] == [0, 2, 4]
    curve = out["curves"]["lora"]
    assert [(p["size"], p["seen"], p["file_size"], p["mean"], p["runs"]) for p in curve["points"]] == [
        (8, 240, 8, 0.5, ["lora-n8"]), (32, 240, 32, 0.7, ["lora-n32"])]
    assert curve["swept"] and curve["to_match_icl"] == {"status": REACHED, "size": pytest.approx(16.0)}


def test_one_run_is_measured_in_the_examples_it_saw_up_to_each_evaluation_not_its_file(tmp_path):
    """300 examples in the file, 40 seen at step 5 (0.55), 80 at step 10 (0.65): ICL's 0.6 is matched at about
    sqrt(40 * 80) examples, not 300; with documents in the baseline, the best plain point on selection is the target."""
    task = {"icl": {"points": POINTS}, "baseline": "k=0, 2 docs",
            "arms": {"lora": arm(["lora"], 300, [(5, 0.55, 40), (10, 0.65, 80)])}}
    (out,) = data_efficiency([run(tmp_path, "lora")], {"sent": task}).values()
    assert out["target_point"] == "k=2"
    curve = out["curves"]["lora"]
    assert not curve["swept"] and curve["unit"] == "examples"
    assert [(p["step"], p["size"], p["file_size"], p["mean"]) for p in curve["points"]] == [(5, 40, 300, 0.55),
                                                                                            (10, 80, 300, 0.65)]
    assert curve["to_match_icl"] == {"status": REACHED, "size": pytest.approx(40 * 2**0.5)}
    assert used(None, 300) == 300 and used(900, 300) == 300
