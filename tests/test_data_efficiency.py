import math

import pytest

from lightning_adapt.verdict.data_efficiency import NOT_REACHED, REACHED, SMALLEST, data_efficiency, size_to_match
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


def arm(runs: list[str], score: float, docs: int = 0) -> dict:
    return {"runs": runs, "docs": docs, "chosen": {"score": score, "interval": [score - 0.1, score + 0.1]}}


def test_curves_come_from_the_arms_chosen_scores_and_the_target_from_the_k_shot_point_chosen_on_selection(tmp_path):
    """k=4 has the higher test mean, k=2 the higher selection mean: the target is k=2's test mean. The documents
    point (higher still) and the documents arm are no labelled-data comparison and stay out."""
    def run(method: str, examples: int) -> Run:
        details = {"data": {"train_size": {"examples": examples}}, "sweep": {"of": "lora", "examples": examples}}
        return measured_run(tmp_path / method, {"method": method, "module": "FineTuning", **details}, {}, {})

    task = {"icl": {"points": {p["label"]: p for p in (point(0, 0, 0.5, 0.5), point(2, 0, 0.6, 0.8),
                                                       point(4, 0, 0.7, 0.6), point(0, 2, 0.95, 0.9))}},
            "arms": {"lora-n8": arm(["lora-n8"], 0.5), "lora-n32": arm(["lora-n32"], 0.7),
                     "lora-n32 + 2 docs": arm(["lora-n32"], 0.99, docs=2)}}
    (out,) = data_efficiency([run("lora-n8", 8), run("lora-n32", 32)], {"sent": task}).values()
    assert (out["target"], out["target_k"], out["target_point"]) == (0.6, 2, "k=2")
    assert [p["k"] for p in out["icl"]] == [0, 2, 4]
    curve = out["curves"]["lora"]
    assert [(p["size"], p["mean"], p["runs"]) for p in curve["points"]] == [(8, 0.5, ["lora-n8"]), (32, 0.7, ["lora-n32"])]
    assert curve["swept"] and curve["to_match_icl"] == {"status": REACHED, "size": pytest.approx(16.0)}
