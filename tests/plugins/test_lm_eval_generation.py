"""plugins/lm_eval: lm-eval `generate_until` tasks scored through the plugin report lightning-adapt's generation metrics
(chrf, rougeL, response_logprob, generated_tokens) beside lm-eval's own, per document and as the row's means.

Each value is checked against a direct computation on the tiny checkpoint: the text metrics of the logged response,
`naive_loglikelihood` of the request lm-eval would make of the reference, `naive_generate`'s token count."""

import json
import statistics
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install ./plugins/lm_eval)")

from lightning_adapt.icl import LMEvalTask, evaluate_checkpoint  # noqa: E402
from lightning_adapt.icl.keys import GENERATED_TOKENS  # noqa: E402
from lightning_adapt.icl.metrics import chrf, rouge_l  # noqa: E402
from lightning_adapt.icl.scoring import naive_generate, naive_loglikelihood  # noqa: E402
from lightning_adapt_lm_eval import LightningAdaptLM  # noqa: E402
from lightning_adapt_lm_eval.generation import reference  # noqa: E402
from tests.helpers import local_task_yaml  # noqa: E402

DOCS = [
    {"question": f"What does order {i} need?", "answer": f"Order {i} needs a {word} box.",
     "answers": [f"a {word} box", "a box"], "label": i % 2, "blank": " "}
    for i, word in enumerate("red blue green small large plain heavy light".split())
]
GENERATE = """output_type: generate_until
doc_to_text: "Q: {{{{question}}}}\\nA:"
doc_to_target: {target}
generation_kwargs:
  until: ["\\n", "e"]
  max_gen_toks: 8
  do_sample: false
"""
TASKS = {
    "gen": GENERATE.format(target='"{{answer}}"') + "metric_list:\n  - metric: exact_match\n",
    "gen_list": GENERATE.format(target="answers") + "metric_list:\n  - metric: exact_match\n",
    "gen_blank": GENERATE.format(target='"{{blank}}"') + "metric_list:\n  - metric: exact_match\n",
    "gen_own_chrf": GENERATE.format(target='"{{answer}}"') + "metric_list:\n  - metric: chrf\n",
    "gen_filtered": GENERATE.format(target='"{{answer}}"') + """metric_list:
  - metric: exact_match
filter_list:
  - name: word
    filter:
      - function: regex
        regex_pattern: "(\\\\w+)"
      - function: take_first
""",
    "gen_choice": GENERATE.format(target="label")
    + 'doc_to_choice: ["yes", "no"]\nmetric_list:\n  - metric: exact_match\n',
    "mc": """output_type: multiple_choice
doc_to_text: "Q: {{question}}\\nA:"
doc_to_choice: ["yes", "no"]
doc_to_target: label
metric_list:
  - metric: acc
""",
}
OURS = ("chrf", "rougeL", "response_logprob", GENERATED_TOKENS)


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm_eval_generation")
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    for name, body in TASKS.items():
        (folder / f"{name}.yaml").write_text(local_task_yaml(name, data, body))
    return folder


@pytest.fixture(scope="module")
def lm(tiny_checkpoint) -> LightningAdaptLM:
    return LightningAdaptLM(checkpoint_dir=str(tiny_checkpoint), batch_size=4, device="cpu")


def evaluated(tiny_checkpoint, task_dir, names, shots=(0,)):
    tasks = [LMEvalTask(name, include_path=[str(task_dir)], shots=list(shots)) for name in names]
    return evaluate_checkpoint(tiny_checkpoint, tasks, batch_size=4, progress=False)


def records_of(results, task, k=0, filter_name="none"):
    return sorted((p for p in results.predictions if p["task"] == task and p["k"] == k and p["filter"] == filter_name),
                  key=lambda p: p["query"])


def row_of(results, task, k=0):
    (row,) = [row for row in results.rows if row["task"] == task and row["k"] == k]
    return row


def naive_response_logprob(lm, context: str, continuation: str) -> float:
    """The mean per-token log-likelihood of `continuation` given `context`: one full forward of the tokens lm-eval's
    request gives (context left-truncated to the model's context)."""
    context_ids, continuation_ids = lm.encode_pair(context, continuation)
    tokens = [*context_ids, *continuation_ids][-(lm.max_length + 1):]
    return naive_loglikelihood(lm.model, tokens, len(tokens) - len(continuation_ids)) / len(continuation_ids)


def test_generate_until_reports_our_metrics_beside_lm_evals_equal_to_a_direct_computation(tiny_checkpoint, task_dir,
                                                                                          lm):
    results = evaluated(tiny_checkpoint, task_dir, ["gen"], shots=(0, 2))
    until, max_gen_toks = lm.generation_settings({"until": ["\n", "e"], "max_gen_toks": 8})
    generated = []
    for k in (0, 2):
        records, row = records_of(results, "gen", k), row_of(results, "gen", k)
        assert len(records) == len(DOCS) and "exact_match" in row  # lm-eval's own metric is still there
        for record in records:
            response, target = record["responses"][0], record["target"]
            assert record["chrf"] == chrf(response, target) and record["rougeL"] == rouge_l(response, target)
            assert record["response_logprob"] == pytest.approx(
                naive_response_logprob(lm, record["context"], " " + target), abs=1e-5)  # target_delimiter " "
            reply = naive_generate(lm.model, lm.tok_encode(record["context"]), max_gen_toks, until,
                                   lm.tokenizer.eos_id, lm.tok_decode)
            assert (record[GENERATED_TOKENS], response) == (reply.tokens, reply.text)
            generated.append(record[GENERATED_TOKENS])
        for metric in OURS:
            assert row[metric] == pytest.approx(statistics.fmean(record[metric] for record in records))
        assert row["response_logprob"] < 0
    assert min(generated) < 8 == max_gen_toks  # a stop string ended some replies: its tokens counted, not the budget


def test_the_reference_is_lm_evals_target_the_first_of_a_list_or_the_choice_a_label_names(tiny_checkpoint, task_dir,
                                                                                           lm):
    results = evaluated(tiny_checkpoint, task_dir, ["gen_list", "gen_blank", "gen_choice"])
    for record, doc in zip(records_of(results, "gen_list"), DOCS):
        assert record["target"] == doc["answers"]  # lm-eval's targets; ours compares with the first only
        assert record["chrf"] == chrf(record["responses"][0], doc["answers"][0])
        assert record["response_logprob"] == pytest.approx(
            naive_response_logprob(lm, record["context"], " " + doc["answers"][0]), abs=1e-5)
    for record, doc in zip(records_of(results, "gen_choice"), DOCS):
        assert record["rougeL"] == rouge_l(record["responses"][0], ["yes", "no"][doc["label"]])
    blank = records_of(results, "gen_blank")
    assert all(set(OURS) & set(record) == {GENERATED_TOKENS} for record in blank)  # no reference: a cost, no scores
    assert set(OURS) & set(row_of(results, "gen_blank")) == {GENERATED_TOKENS}
    task = LMEvalTask("gen_choice", include_path=[str(task_dir)]).load().loaded["tasks"]["gen_choice"]
    assert reference(task, {"target": 1, "doc": DOCS[0]}) == "no"
    assert reference(task, {"target": [], "doc": DOCS[0]}) is None


def test_lm_evals_own_metric_of_the_same_name_filters_and_tasks_that_do_not_generate(tiny_checkpoint, task_dir):
    results = evaluated(tiny_checkpoint, task_dir, ["gen_own_chrf", "gen_filtered", "mc"])
    own = row_of(results, "gen_own_chrf")
    lm_evals = {record["query"]: record["chrf"] for record in records_of(results, "gen_own_chrf")}
    assert all(isinstance(value, list) for value in lm_evals.values())  # lm-eval's (reference, response) pairs...
    assert own["chrf"] > 1  # ...and its corpus chrF (0-100) in the row, not ours (0-1)
    assert {"rougeL", "response_logprob", GENERATED_TOKENS} <= set(own)
    filtered, row = records_of(results, "gen_filtered", filter_name="word"), row_of(results, "gen_filtered")
    assert {"chrf:word", "rougeL:word", "exact_match:word", "response_logprob", GENERATED_TOKENS} <= set(row)
    assert "chrf" not in row  # the text metrics are per filter; the document's own are not
    for record in filtered:
        assert record["chrf"] == chrf(record["responses"][0], record["target"])
    assert row["chrf:word"] == pytest.approx(statistics.fmean(record["chrf"] for record in filtered))
    assert not set(OURS) & (set(row_of(results, "mc")) | {key for p in records_of(results, "mc") for key in p})
