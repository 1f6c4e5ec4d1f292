"""Generation tasks' metrics: response_logprob, chrF/ROUGE-L, regex checks, generated tokens, and their bad input."""

import statistics

import pytest
import torch
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import CHRF

from lightning_adapt.icl import Check, Generation, ICLTask, ICLTaskError
from lightning_adapt.icl.encoding import encode_pair
from lightning_adapt.icl.evaluate import format_table
from lightning_adapt.icl.keys import GENERATED_TOKENS, icl_key
from lightning_adapt.icl.metrics import chrf, generation_metric, rouge_l
from lightning_adapt.icl.plan import encode_task
from lightning_adapt.icl.prompts import build_context
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.icl.scoring import Generated, Request, generate, naive_generate
from lightning_adapt.model.loading import bos_rule

QA = [  # two queries share their text and differ in the reference: each is scored against its own
    {"q": "the fox", "a": "quick brown fox"},
    {"q": "a dog", "a": "lazy dog"},
    {"q": "the food was", "a": "great and friendly"},
    {"q": "Paris is the", "a": "capital of France"},
    {"q": "the food was", "a": "far too long"},
    {"q": "film", "a": "boring film"},
]
CHECKS = [Check("greeting", r"^Hello [A-Z][a-z]+,"), Check("ticket_id", r"#[A-Z]{2}-\d{4}"),
          Check("signs_off", r"Best regards,\nNimbus Support$")]


@pytest.fixture
def qa_task(tmp_path, helpers):
    def make(records=QA, **overrides) -> ICLTask:
        path = helpers.write_jsonl(tmp_path / "qa.jsonl", records)
        spec = dict(name="qa", queries=str(path), template="Q: {q}\nA:", target="a", selection=None,
                    generate=Generation(max_new_tokens=6, stop=["\n"], metrics=["response_logprob"]))
        return ICLTask(**(spec | overrides))

    return make


def run(task, model, tokenizer, batch_size=4):
    runner = ICLRunner([task])
    runner.prepare(tokenizer, model.config.block_size)
    return runner.data[0], runner.run(model, tokenizer, batch_size)


def naive_mean_logprob(model, tokens: list[int], start: int) -> float:
    """One full forward of the whole sequence, log_softmax, the mean over the reference tokens."""
    with torch.no_grad():
        logprobs = model(torch.tensor([tokens[:-1]]))[0].double().log_softmax(-1)
    return statistics.fmean(logprobs[i - 1, tokens[i]].item() for i in range(start, len(tokens)))


@pytest.mark.parametrize("metrics, k", [(["response_logprob"], 0), (["chrf", "response_logprob"], 2)])
def test_response_logprob_equals_a_full_forward_per_sequence(tiny_model, qa_task, metrics, k):
    model, tokenizer = tiny_model
    task = qa_task(shots=[k], seeds=[0, 1], template="Q: {q}\nA: ",  # a trailing space moves into the reference
                   generate=Generation(max_new_tokens=6, metrics=metrics))
    data, results = run(task, model, tokenizer)
    add_bos = bos_rule(tokenizer, task.add_bos)
    for record in results.predictions:
        context = build_context(task, [data.demos[i] for i in record["demos"]], data.queries[record["query"]])
        context_ids, reference_ids = encode_pair(tokenizer, context, " " + record["target"], add_bos)
        expected = naive_mean_logprob(model, context_ids + reference_ids, len(context_ids))
        assert record["response_logprob"] == pytest.approx(expected, abs=1e-5) and expected < 0
        assert len(record["demos"]) == k
    by_query = {r["query"]: r["response_logprob"] for r in results.predictions if r["seed"] == 0}
    assert by_query[2] != pytest.approx(by_query[4])  # same prompt, other reference
    for row in results.rows:
        mine = [r["response_logprob"] for r in results.predictions if r["seed"] == row["seed"]]
        assert row["response_logprob"] == pytest.approx(statistics.fmean(mine))
    generated = metrics != ["response_logprob"]  # response_logprob alone generates nothing
    assert all(("prediction" in r) == generated and (GENERATED_TOKENS in r) == generated for r in results.predictions)
    assert all((GENERATED_TOKENS in row) == generated for row in results.rows)
    if generated:
        assert all(r["chrf"] == chrf(r["prediction"], r["target"]) for r in results.predictions)


def test_chrf_and_rouge_l_equal_the_libraries_on_fixed_strings():
    pairs = [("the cat lay on the mat", "the cat sat on the mat"), ("Hello Ann, thanks!", "Hello Ann,\nthanks."),
             ("completely different", "nothing alike here"), ("same words", "same words")]
    for prediction, target in pairs:
        assert generation_metric(prediction, target, "chrf") == CHRF().sentence_score(prediction, [target]).score / 100
        library = RougeScorer(["rougeL"]).score(target, prediction)["rougeL"].fmeasure
        assert generation_metric(prediction, target, "rougeL") == rouge_l(prediction, target) == library
    assert rouge_l(*pairs[0]) == pytest.approx(5 / 6)  # the longest common subsequence: 5 of 6 words each
    assert chrf("same words", "same words") == 1.0 and rouge_l("completely different", "nothing alike here") == 0.0


class FixedReplies:
    """A Scorer whose greedy replies are given: the n-th distinct prompt gets ``replies[n]``."""

    def __init__(self, replies: list[Generated]) -> None:
        self.replies, self.prompts = replies, []

    def generate(self, name, requests, max_new_tokens, stop):
        self.prompts += [r.tokens for r in requests]
        return self.replies[: len(requests)]

    def scores(self, name, requests):
        raise AssertionError("no log-likelihood is scored without response_logprob")


def test_regex_checks_pass_rates_on_constructed_replies(tiny_model, qa_task):
    _, tokenizer = tiny_model
    replies = [
        Generated(" Hello Ann,\nWe are on it. Your ticket is #DL-1234.\nBest regards,\nNimbus Support  ", 30),
        Generated("Hello ann, your ticket is #DL-12.\nBest regards,\nNimbus Support", 20),  # greeting, ticket fail
        Generated("Hi Bo, ticket #RF-0042. Best regards,\nNimbus Support.", 17),  # only the ticket passes
        Generated("", 1),  # EOS at once: counted, and every check fails
    ]
    task = qa_task(QA[:4], generate=Generation(metrics=["contains"], checks=CHECKS))
    plan = encode_task(task.load(), tokenizer, 512)
    results, scorer = ICLResults(), FixedReplies(replies)
    plan.evaluate(scorer, results)
    assert len(scorer.prompts) == 4
    passed = [[r[check.metric] for check in CHECKS] for r in results.predictions]
    assert passed == [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    assert [r["checks"] for r in results.predictions] == [1.0, 1 / 3, 1 / 3, 0.0]
    assert [r[GENERATED_TOKENS] for r in results.predictions] == [30, 20, 17, 1]
    assert [r["prediction"] for r in results.predictions] == [r.text for r in replies]
    (row,) = results.rows
    assert row["check_greeting"] == 0.25 and row["check_signs_off"] == 0.5 and row["checks"] == pytest.approx(5 / 12)
    assert row[GENERATED_TOKENS] == 17.0 and row["contains"] == 0.0
    assert list(row) == ["task", "k", "docs", "seed", "contains", "check_greeting", "check_ticket_id",
                         "check_signs_off", "checks", GENERATED_TOKENS, "prompt_tokens"]
    assert results.metrics()[icl_key("qa", "check_signs_off", 0)] == 0.5
    table = format_table(results)
    assert table.splitlines()[1].split(" | ")[-2:] == [GENERATED_TOKENS, "prompt_tokens"]
    assert "17.0 |" in table


def test_checks_alone_need_no_reference(tiny_model, qa_task):
    _, tokenizer = tiny_model
    task = qa_task([{"q": "hi", "a": ""}], generate=Generation(metrics=[], checks=CHECKS[:1]))
    results = ICLResults()
    encode_task(task.load(), tokenizer, 512).evaluate(FixedReplies([Generated("Hello Cy, yes.", 5)]), results)
    assert results.rows[0]["checks"] == results.rows[0]["check_greeting"] == 1.0


def test_generated_tokens_count_eos_and_stop_strings(tiny_model):
    model, tokenizer = tiny_model
    decode = lambda ids: tokenizer.decode(torch.tensor(ids))  # noqa: E731
    prompt = tuple(tokenizer.encode("Q: the food was\nA:").tolist())
    ids, sequence = [], list(prompt)
    with torch.no_grad():
        for _ in range(8):
            ids.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
            sequence.append(ids[-1])
    free = naive_generate(model, prompt, 8, [], None, decode)
    assert free == Generated(decode(ids), 8)
    n = next(i for i in range(1, 8) if ids[i] not in ids[:i])  # the first step whose token is new: call it EOS
    assert naive_generate(model, prompt, 8, [], ids[n], decode) == Generated(decode(ids[:n]), n + 1)
    stop = next(c for i, c in enumerate(free.text) if c not in free.text[:i] and not c.isspace())
    needed = next(i for i in range(1, 9) if stop in decode(ids[:i]))  # the tokens until the stop string is complete
    cut = naive_generate(model, prompt, 8, [stop], None, decode)
    assert cut.tokens == needed and cut.text == free.text[: free.text.index(stop)]
    requests = [Request(prompt, len(prompt))]
    for stops, eos in [([], None), ([], ids[n]), ([stop], None)]:
        assert generate(model, requests, 8, stops, eos, decode) == [naive_generate(model, prompt, 8, stops, eos, decode)]


def test_generated_tokens_of_a_task_are_the_replies_own(tiny_model, qa_task):
    model, tokenizer = tiny_model
    task = qa_task(shots=[0, 1], generate=Generation(max_new_tokens=5, stop=[], metrics=["exact_match", "rougeL"]))
    data, results = run(task, model, tokenizer)
    decode = lambda ids: tokenizer.decode(torch.tensor(ids))  # noqa: E731
    for record in results.predictions:
        context = build_context(task, [data.demos[i] for i in record["demos"]], data.queries[record["query"]])
        reply = naive_generate(model, tokenizer.encode(context).tolist(), 5, [], tokenizer.eos_id, decode)
        assert (record["prediction"], record[GENERATED_TOKENS]) == (reply.text, reply.tokens)
        assert record["rougeL"] == rouge_l(reply.text, record["target"])
    for row in results.rows:
        mine = [r[GENERATED_TOKENS] for r in results.predictions if r["k"] == row["k"]]
        assert row[GENERATED_TOKENS] == pytest.approx(statistics.fmean(mine))


@pytest.mark.parametrize(
    "generation, message",
    [
        (dict(checks=[Check("x", "(Best")]), r"`generate.checks` 'x': the regex '\(Best' does not compile: missing \), "
                                            r"unterminated subpattern at position 0"),
        (dict(metrics=["bleu", "chrf"]), r"unknown `generate.metrics` \['bleu'\]; the metrics are exact_match, "
                                         r"contains, chrf, rougeL, response_logprob"),
        (dict(metrics=["chrf", "chrf"]), "names a metric twice"),
        (dict(metrics=[]), r"`generate.metrics` is empty and there are no `generate.checks`"),
        (dict(checks=[Check("signs off", "x")]), "name 'signs off' must be letters, digits and _ only"),
        (dict(checks=[Check("a", "x"), Check("a", "y")]), "name 'a' is used twice"),
        (dict(checks=[Check("len_std", "x")]), "must not end in '_std'"),
        (dict(max_new_tokens=0), r"`generate.max_new_tokens` must be >= 1, got 0"),
        (dict(max_new_tokens=-3), r"`generate.max_new_tokens` must be >= 1, got -3"),
    ],
    ids=["regex", "unknown", "twice", "nothing", "name", "repeated", "std", "zero", "negative"],
)
def test_bad_generation_settings_are_refused_when_the_task_is_made(qa_task, generation, message):
    with pytest.raises(ICLTaskError, match=r"^ICL task 'qa': .*" + message):
        qa_task(generate=Generation(**generation))


@pytest.mark.parametrize("reference", ["", "  ", None])
def test_a_query_without_reference_is_refused_naming_file_and_row(qa_task, reference):
    task = qa_task(QA[:2] + [{"q": "x", "a": reference}], generate=Generation(metrics=["exact_match"], checks=CHECKS))
    with pytest.raises(ICLTaskError, match=r"query .*qa.jsonl: row 3: the reference answer \(target 'a'\) is empty, "
                                           r"but the metrics \['exact_match'\] compare with it"):
        task.load()
    with pytest.raises(ICLTaskError, match=r"qa.jsonl: row 3: field\(s\) \['a'\] not found"):
        qa_task(QA[:2] + [{"q": "x"}]).load()


def test_yaml_checks_become_checks_and_a_bad_regex_stops_the_command_before_the_model(tmp_path, helpers, capsys):
    from lightning_adapt.cli import icl_parser, main

    queries = helpers.write_jsonl(tmp_path / "q.jsonl", QA)
    config = tmp_path / "icl.yaml"
    yaml = (f"checkpoint_dir: {tmp_path / 'no-model'}\ntasks:\n  - name: qa\n    queries: {queries}\n"
            '    template: "Q: {{q}}\\nA:"\n    target: a\n    generate: {{max_new_tokens: 64, stop: ["\\n\\n"], '
            'metrics: [chrf, rougeL, response_logprob],\n      checks: [{{name: signs_off, regex: "{regex}"}}]}}\n')
    config.write_text(yaml.format(regex="Best regards,\\\\nNimbus Support$"))
    parser = icl_parser()
    (task,) = parser.instantiate_classes(parser.parse_args(["--config", str(config)])).tasks
    assert task.generate == Generation(64, ["\n\n"], ["chrf", "rougeL", "response_logprob"],
                                       [Check("signs_off", "Best regards,\\nNimbus Support$")])
    assert task.generate.checks[0].passes("Hi.\nBest regards,\nNimbus Support\n") == 1.0
    config.write_text(yaml.format(regex="[A-Z"))
    with pytest.raises(SystemExit) as raised:
        main(["icl", "--config", str(config)])
    assert str(raised.value).splitlines()[0] == (
        "lightning-adapt icl: error: ICL task 'qa': `generate.checks` 'signs_off': the regex '[A-Z' does not compile: "
        "unterminated character set at position 0"
    )
