"""Evaluations on a subsample of the queries (`ICLEvaluation(subsample=N)`) in the report: marked on the timeline
("12 of 40 queries") with their own, wider intervals; every choice — the chosen step, the step that reaches ICL — is
made on the evaluations of every query."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_adapt.verdict.document import document
from lightning_adapt.verdict.markdown import markdown
from lightning_adapt.verdict.plots import PLOTS, drawn_plots
from lightning_adapt.verdict.run import Run
from tests.test_selection_report import FT, SELECTED, records, report, right, sentiment_icl, trained_run

SUBSET = [0, 4, 8] + list(range(10, 37, 3))
"""12 of the 40 queries: 3 of the 10 selection queries, 9 of the 30 test queries."""


def subsampled(values: dict[int, float]) -> list[float]:
    """Outcomes of every query, `values` on the subset's (by query), 0 elsewhere (filtered out)."""
    return [values.get(query, 0.0) for query in range(SELECTED + 30)]


def lora(tmp_path: Path, counted: bool = True) -> Run:
    """Scored whole at steps 0 and 6 (the last: 6 of 10 selection, 24 of 30 test queries right) and on `SUBSET` at 2
    and 4, where every selection query and 6 of 9 test queries are right: a choice on them would pick step 2; `counted`:
    the run logged how many queries each evaluation scored."""
    good = {query: 1.0 for query in SUBSET[:9]}
    steps = {0: right(2, 9), 2: subsampled(good), 4: subsampled(good | {SUBSET[3]: 0.0}), 6: right(6, 24)}
    run = trained_run(tmp_path, "lora", FT, steps, flops=6e9)
    for step in (2, 4):
        run.predictions[step] = [r for r in records("sent", 0, steps[step]) if r["query"] in SUBSET]
        run.metrics["icl/sent/acc@k0"][step] = sum(steps[step][q] for q in SUBSET) / len(SUBSET)
    if counted:
        run.metrics["icl/sent/queries"] = {0: 40.0, 2: 12.0, 4: 12.0, 6: 40.0}
    return run


def test_subsampled_points_are_marked_and_no_choice_is_made_on_them(tmp_path):
    task = report([sentiment_icl(tmp_path), lora(tmp_path)])["tasks"]["sent"]
    arm = task["arms"]["lora"]
    size = {"queries": 12, "of": 40}
    assert [(p["step"], p["subsample"]) for p in arm["timeline"]] == [(0, None), (2, size), (4, size), (6, None)]
    step_2, step_6 = arm["timeline"][2 // 2], arm["timeline"][-1]
    assert step_2["score"] == pytest.approx(6 / 9) and step_2["selection_score"] == 1.0  # the 9 test, 3 selection
    width = [p["interval"][1] - p["interval"][0] for p in (step_2, step_6)]
    assert width[0] > width[1]  # 9 test queries against 30
    assert arm["chosen"]["step"] == 6 and arm["chosen"]["subsample"] is None  # not step 2's selection score of 1.0
    assert arm["reaches_best_icl"]["step"] == 6  # k=2's 0.6 on the test queries: step 2 (0.667 on 9) is not asked

    unmarked = report([sentiment_icl(tmp_path), lora(tmp_path / "old", counted=False)])["tasks"]["sent"]
    assert unmarked["arms"]["lora"]["chosen"]["step"] == 2  # without the counts every evaluation is a whole one


def test_the_report_says_which_points_scored_a_subsample(tmp_path):
    data = report([sentiment_icl(tmp_path), lora(tmp_path)])
    text = markdown(document(data, drawn_plots(data)))
    assert ("lora at steps 2, 4 (12 of 40 queries): evaluations on a seeded subsample of the queries (the same "
            "queries at every step and in every run), with wider intervals; no choice is made on them. Chosen steps, "
            "learning rates and the step that reaches ICL are among the evaluations of every query (step 0 and each "
            "run's last).") in text
    assert "hollow markers: evaluations on a subsample of the queries" in text
    PLOTS["timeline.png"](data, tmp_path / "timeline.png")  # drawn, hollow markers and their legend entry included
    assert (tmp_path / "timeline.png").stat().st_size > 0

    whole = report([sentiment_icl(tmp_path), trained_run(tmp_path, "full", FT, {0: right(2, 9), 2: right(6, 24)}, 1e9)])
    assert "subsample" not in markdown(document(whole, drawn_plots(whole)))
