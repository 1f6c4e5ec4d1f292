"""The report on a generation task (issue #35), from runs built in memory: a query's FLOPs count the tokens each method
generated (ICL points and trained points), so break-even pays for the demonstrations and each method's own reply
length; a metric below 0 (response_logprob) scores a consistent verdict; the default metric per task; every metric
of each arm's chosen point; report.md, report.html and the plots render; `estimate_icl` counts max_new_tokens."""

from __future__ import annotations

import statistics

import pytest

from lightning_adapt.icl import Generation, ICLTask
from lightning_adapt.estimate import estimate_icl, format_estimate
from lightning_adapt.record.flops import inference_flops
from lightning_adapt.testing import tiny_config
from lightning_adapt.verdict.plot_style import pyplot, score_axis
from lightning_adapt.verdict.report import write_report
from lightning_adapt.verdict.rules import break_even_queries, metric_of
from lightning_adapt.verdict.run import ReportError, measured_run
from lightning_adapt.verdict.summary import report_data
from lightning_adapt.verdict.text import recommendation_lines
from tests.helpers import write_instruction_file
from tests.test_selection_report import FT, SELECTED, TASK, TESTED, info, key, right

QUERIES = SELECTED + TESTED
GENERATE = {"max_new_tokens": 64, "stop": ["\n\n"], "metrics": ["chrf", "rougeL", "response_logprob"],
            "checks": [{"name": "greeting", "regex": "^Hello"}]}
SUPPORT = TASK | {"name": "support", "target": "reply", "choices": None, "shots": [0, 2], "seeds": [0],
                  "generate": GENERATE}
SCORES = ("checks", "check_greeting", "chrf", "rougeL", "response_logprob")


def evaluation(checks: list[float], logprob: float, chrf: float, generated: float) -> dict[str, list[float]]:
    """One evaluation's per-query values: the checks' pass rate (greeting passing alike), chrF and ROUGE-L around
    `chrf`, response_logprob around `logprob` (below 0), and `generated` tokens per reply."""
    wobble = [0.01 * (q % 5 - 2) for q in range(QUERIES)]
    return {"checks": checks, "check_greeting": checks, "chrf": [chrf + w for w in wobble],
            "rougeL": [chrf - 0.1 + w for w in wobble], "response_logprob": [logprob + 5 * w for w in wobble],
            "generated_tokens": [generated] * QUERIES}


def logged(task: str, k: int, values: dict[str, list[float]], step: int, prompt_tokens: float
           ) -> tuple[dict[str, dict[int, float]], list[dict]]:
    """The metrics an evaluation logs (each value's mean over the queries, prompt tokens) and its prediction records."""
    metrics = {key(task, name, k): {step: statistics.fmean(row)} for name, row in values.items()}
    metrics[key(task, "prompt_tokens", k)] = {step: prompt_tokens}
    records = [{"task": task, "k": k, "docs": 0, "seed": 0, "query": q, "part": "selection" if q < SELECTED else "test",
                "prediction": "Hello", "target": "Hello Ann,", **{name: row[q] for name, row in values.items()}}
               for q in range(QUERIES)]
    return metrics, records


def icl_run(tmp_path, points: dict[int, tuple[dict[str, list[float]], float]], task: dict = SUPPORT):
    metrics, found = {"time/wall_s": {0: 3.0}, f"icl/{task['name']}/seconds": {0: 2.0}}, []
    for k, (values, tokens) in points.items():
        more, records = logged(task["name"], k, values, 0, tokens)
        metrics |= more
        found += records
    return measured_run(tmp_path / "icl", info("icl", None, (task,)), metrics, {0: found})


def lora_run(tmp_path, steps: dict[int, dict[str, list[float]]], flops: float, tokens: float = 20.0):
    last = max(steps)
    metrics = {"flops/train": {s: flops * s / last for s in steps}, "train/tokens": {s: 50.0 * s for s in steps},
               "time/wall_s": {s: 1.0 + s for s in steps}, "time/train_s": {s: float(s) for s in steps}}
    found = {}
    for step, values in steps.items():
        more, found[step] = logged("support", 0, values, step, tokens)
        for name, value in more.items():
            metrics.setdefault(name, {}).update(value)
    return measured_run(tmp_path / "lora", info("lora", FT, (SUPPORT,)), metrics, found)


def base_and_lora(tmp_path, lora_logprob: float = -0.8):
    """k=0 rambles (60 tokens a reply, greeting on 2 of 10 selection and 6 of 30 test queries), k=2 (150 prompt
    tokens) replies in 45 and passes more; LoRA at step 4 replies in 42 tokens, passing 9/10 and 27/30."""
    base = evaluation(right(2, 6), -2.0, 0.3, 60.0)
    icl = icl_run(tmp_path, {0: (base, 20.0), 2: (evaluation(right(5, 15), -1.5, 0.4, 45.0), 150.0)})
    lora = lora_run(tmp_path, {0: base, 4: evaluation(right(9, 27), lora_logprob, 0.6, 42.0),
                               8: evaluation(right(7, 24), lora_logprob - 0.1, 0.55, 44.0)}, flops=8e9)
    return icl, lora


def test_query_flops_and_break_even_count_the_tokens_each_method_generated(tmp_path):
    task = report_data(list(base_and_lora(tmp_path)), {}, 1, 0.02, None)["tasks"]["support"]
    config = tiny_config()
    points = task["icl"]["points"]
    assert (points["k=0"]["generated_tokens"], points["k=2"]["generated_tokens"]) == (60.0, 45.0)
    assert points["k=0"]["query_flops"] == inference_flops(config, 20.0, 60.0)
    assert points["k=2"]["query_flops"] == inference_flops(config, 150.0, 45.0)  # demonstrations on every reply
    arm = task["arms"]["lora"]
    chosen = arm["chosen"]
    assert chosen["step"] == 4 and chosen["generated_tokens"] == 42.0
    assert chosen["query_flops"] == inference_flops(config, 20.0, 42.0)
    assert [p["generated_tokens"] for p in arm["timeline"]] == [60.0, 42.0, 44.0]
    training = 8e9 * 4 / 8
    assert arm["break_even"]["k=2"] == break_even_queries(training, inference_flops(config, 20.0, 42.0),
                                                          inference_flops(config, 150.0, 45.0))
    # against k=0, its own prompt: the shorter replies alone save (counted with k=0's prompt length)
    assert arm["break_even"]["k=0"] == break_even_queries(training, inference_flops(config, 20.0, 42.0),
                                                          inference_flops(config, 20.0, 60.0))
    assert arm["break_even"]["k=0"] > arm["break_even"]["k=2"]


def test_the_default_metric_of_a_generation_task_is_its_checks_and_the_report_names_it(tmp_path):
    data = report_data(list(base_and_lora(tmp_path)), {}, 1, 0.02, None)
    task = data["tasks"]["support"]
    assert task["metric"] == "checks" and "test checks" in task["rule"]["how"]
    assert task["recommendation"]["method"] == "lora"
    assert task["recommendation"]["score"] == pytest.approx(27 / 30)
    (line,) = recommendation_lines(data)
    assert line.startswith("support: recommend lora (fine-tuning; test checks 0.900 ")


@pytest.mark.parametrize("logged, expected", [
    (["acc", "acc_norm", "checks"], "acc"), (["check_greeting", "checks", "chrf", "response_logprob"], "checks"),
    (["chrf", "response_logprob", "rougeL"], "chrf"), (["response_logprob"], "response_logprob"), (["f1"], None)])
def test_metric_of_an_unlisted_task_is_the_first_default_it_logged(logged, expected):
    assert metric_of({}, "support", logged) == expected
    assert metric_of({"support": "rougeL"}, "support", logged) == "rougeL"  # a listed task: as listed
    assert metric_of("chrf", "support", logged) == "chrf"  # one metric for every task


def test_a_task_without_a_default_metric_is_refused_naming_what_it_logged(tmp_path):
    values = {"f1": [0.5] * QUERIES}
    icl = icl_run(tmp_path, {0: (values, 20.0)})
    with pytest.raises(ReportError, match=r"Task 'support' is not listed in `metric` and logged none of the "
                                          r"default metrics \['acc', 'checks'.*\(it logged: f1\)\..*"
                                          r"`metric: \{support: NAME\}`"):
        report_data([icl], {}, 1, 0.02, None)


@pytest.mark.parametrize("lora_logprob, method", [(-0.8, "lora"), (-2.2, "icl")])
def test_a_metric_below_0_scores_a_consistent_verdict(tmp_path, lora_logprob, method):
    """response_logprob (mean nats per token, below 0) as the task's metric: the baseline is k=2 (-1.5 beats k=0's
    -2.0); LoRA's -0.8 beats it, distinguishably and by more than the margin, and -2.2 does not."""
    data = report_data(list(base_and_lora(tmp_path, lora_logprob)), {"support": "response_logprob"}, 1, 0.02, None)
    task = data["tasks"]["support"]
    k2 = task["icl"]["points"]["k=2"]
    assert task["baseline"] == "k=2" and k2["mean"] == pytest.approx(-1.5)
    assert k2["interval"][0] < -1.5 < k2["interval"][1] < 0
    arm = task["arms"]["lora"]
    assert arm["chosen"]["score"] == pytest.approx(lora_logprob)
    difference = arm["versus"]["k=2"]
    assert difference["difference"] == pytest.approx(lora_logprob + 1.5)
    low, high = difference["interval"]
    assert (low > 0, high < 0) == ((True, False) if method == "lora" else (False, True))
    rec = task["recommendation"]
    assert rec["method"] == method and rec["score"] == pytest.approx(lora_logprob if method == "lora" else -1.5)
    assert "response_logprob is more than the margin 0.02 higher" in task["rule"]["how"]
    beats = "beats" if method == "lora" else "does not beat"
    assert f"fine-tuning: lora ({lora_logprob:.3f}) {beats} icl at k=2 (-1.500)" in rec["reasons"][0]
    assert arm["break_even"]["k=2"] == "not reached" if method == "icl" else isinstance(arm["break_even"]["k=2"], int)
    (line,) = recommendation_lines(data)
    assert f"test response_logprob {rec['score']:.3f} [" in line and "%" not in line


def test_an_arms_chosen_point_keeps_every_metric_on_the_test_queries(tmp_path):
    task = report_data(list(base_and_lora(tmp_path)), {}, 1, 0.02, None)["tasks"]["support"]
    chosen = task["arms"]["lora"]["chosen"]
    expected = evaluation(right(9, 27), -0.8, 0.6, 42.0)
    assert set(chosen["all_metrics"]) == set(SCORES)  # costs (prompt and generated tokens) are not metrics
    for name in SCORES:
        assert chosen["all_metrics"][name] == pytest.approx(statistics.fmean(expected[name][SELECTED:]))
    assert chosen["all_metrics"]["checks"] == chosen["score"]
    assert set(task["icl"]["points"]["k=2"]["all_metrics"]) == set(SCORES)


def test_report_views_show_the_generation_costs_and_every_metric_of_the_chosen_points(tmp_path):
    data = report_data(list(base_and_lora(tmp_path)), {"support": "response_logprob"}, 1, 0.02, None)
    out = write_report(data, tmp_path / "report", [tmp_path / "icl", tmp_path / "lora"], False, "")
    md = (out / "report.md").read_text()
    assert {"timeline.png", "cost.png", "report.html"} <= {path.name for path in out.iterdir()}
    header = next(line for line in md.splitlines() if line.startswith("| prompt | k |"))
    assert "| prompt tokens | generated tokens | FLOPs per query |" in header
    assert "| k=2 | 2 | 0 | -1.500 ± 0.000 |" in md
    cost = next(line for line in md.splitlines() if line.startswith("| **cost**: FLOPs per query |"))
    assert "(20 prompt + 60.0 generated tokens, k=0)" not in cost and "150 prompt + 45.0 generated tokens, k=2" in cost
    assert "20 prompt + 42.0 generated tokens" in cost
    others = next(line for line in md.splitlines() if line.startswith("| other metrics on the test queries at the"))
    assert "checks 0.500 · chrf 0.400" in others and "checks 0.900 · chrf 0.600" in others
    assert "response_logprob" not in others  # the task's own metric has its row
    assert "Its other metrics at the chosen step: check_greeting 0.900 · checks 0.900" in md
    assert "%" not in md.split("## How the verdict is decided")[0].replace("95%", "")


def test_the_score_axis_is_0_to_1_for_rates_and_the_scores_own_range_below_0():
    plt = pyplot()
    fig, ax = plt.subplots()
    score_axis(ax, [0.1, 0.95])
    assert ax.get_ylim() == pytest.approx((-0.02, 1.04))
    score_axis(ax, [-2.5, -1.5, -0.8])
    low, high = ax.get_ylim()
    assert low < -2.5 and -0.8 < high < 0
    plt.close(fig)


def test_estimate_icl_counts_max_new_tokens_as_a_generation_tasks_answer(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=12)
    task = ICLTask(name="colour", queries=str(data), template="{instruction}", target="output", max_queries=4,
                   shots=[0], seeds=[0], generate=Generation(max_new_tokens=16, metrics=["chrf"]))
    logprob_only = ICLTask(name="likely", queries=str(data), template="{instruction}", target="output", max_queries=4,
                           shots=[0], seeds=[0], generate=Generation(metrics=["response_logprob"]))
    generated, scored = estimate_icl([task, logprob_only], tiny_checkpoint)
    config = tiny_config()
    assert generated.generates and generated.answer_tokens == 16
    assert generated.query_flops == inference_flops(config, generated.prompt_tokens, 16)
    assert not scored.generates and scored.query_flops == inference_flops(config, scored.prompt_tokens, 1)
    printed = format_estimate(None, [generated, scored]).splitlines()
    assert printed[1].endswith("(with 16 generated tokens, max_new_tokens: an upper bound)")
    assert "generated" not in printed[2]
