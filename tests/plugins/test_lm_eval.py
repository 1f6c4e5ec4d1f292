"""plugins/lm_eval: the `lightning-adapt` model inside lm-evaluation-harness gives lm-eval's own numbers.

The reference is lm-eval's `HFLM` on the same model: transformers de-quantizes the GGUF file of SmolLM2-135M-Instruct
(the file plugins/gguf converts), with the Hugging Face tokenizer of the converted folder (transformers' GGUF
tokenizer splits some digit runs differently, see test_gguf.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install ./plugins/lm_eval)")
pytest.importorskip("transformers", reason="the parity tests need transformers (pip install './plugins/lm_eval[test]')")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402

from lightning_adapt.core.plugins import plugin  # noqa: E402
from lightning_adapt_lm_eval import LightningAdaptLM  # noqa: E402
from tests.helpers import local_task_manager, local_task_yaml  # noqa: E402

pytestmark = pytest.mark.slow

LOGLIKELIHOOD = [
    ("The capital of France is", " Paris"),  # greedy
    ("The capital of France is", " London"),
    ("The capital of France is", " Paris, the city of light"),  # several tokens
    ("", "Hello world"),  # empty context: conditioned on BOS
    ("Question: 2+2=\nAnswer: ", "4"),  # trailing space moves to the continuation
    ("Review: great food\nSentiment:", " Positive"),
    ("Review: great food\nSentiment:", " Negative"),
]
GENERATE = [
    ("The capital of France is", {"until": ["."], "max_gen_toks": 16, "do_sample": False}),
    ("Q: What is 2+2?\nA:", {"until": ["\n"], "max_gen_toks": 10}),
    ("Once upon a time", {"until": ["zzz"], "max_gen_toks": 12}),  # runs to max_gen_toks
]
PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog. It was a sunny day, and the children played in the park while "
    "their parents watched from the benches. Later, everyone went home for dinner."
)
REVIEWS = [
    ("The soup was cold and the waiter rude.", 0), ("Lovely staff, great pasta.", 1),
    ("Never again, the worst pizza in town.", 0), ("A delightful evening, we will be back.", 1),
    ("Overpriced and bland.", 0), ("Fresh bread and friendly service.", 1), ("We waited an hour for cold fries.", 0),
    ("Best burger I have had in years.", 1), ("The room smelled and the food was greasy.", 0),
    ("Wonderful desserts and a cosy room.", 1), ("Rude staff, dirty tables.", 0), ("The curry was rich and fragrant.", 1),
    ("My steak was raw and the wine sour.", 0), ("Great value, generous portions.", 1),
    ("Noisy, slow, and the salad was wilted.", 0), ("Perfect sushi, we loved it.", 1),
    ("They forgot half our order.", 0), ("Charming little bistro with superb coffee.", 1),
    ("Stale cake and lukewarm tea.", 0), ("The chef came out to greet us, lovely food.", 1),
]
TASK_BODY = """output_type: multiple_choice
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_choice: ["Negative", "Positive"]
doc_to_target: label
metric_list:
  - metric: acc
"""


@pytest.fixture(scope="module")
def hflm(smollm2_transformers, smollm2_dir):
    """lm-eval's Hugging Face model on the GGUF file, batch size 1 (no padding)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    return HFLM(pretrained=smollm2_transformers, tokenizer=AutoTokenizer.from_pretrained(smollm2_dir), batch_size=1,
                device="cpu")


@pytest.fixture(scope="module")
def ours(smollm2_dir) -> LightningAdaptLM:
    return LightningAdaptLM(checkpoint_dir=str(smollm2_dir), batch_size=4, device="cpu")


def instances(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def test_registered_under_its_name(ours):
    assert get_model("lightning-adapt") is LightningAdaptLM
    assert plugin("lm-eval") is LightningAdaptLM  # lightning-adapt's own entry-point group finds it too
    assert ours.max_length == 8192 and ours.add_bos is False and ours.prefix_token_id == 1  # HFLM's, for SmolLM2


def test_loglikelihoods_and_is_greedy_match_hflm(hflm, ours):
    reference = hflm.loglikelihood(instances("loglikelihood", LOGLIKELIHOOD), disable_tqdm=True)
    got = ours.loglikelihood(instances("loglikelihood", LOGLIKELIHOOD))
    assert [greedy for _, greedy in got] == [greedy for _, greedy in reference]
    assert got[0][1] and not got[1][1]  # both outcomes are exercised
    assert max(abs(a - b) for (a, _), (b, _) in zip(got, reference)) <= 1e-4


def test_rolling_loglikelihood_matches_hflm(hflm, ours):
    requests = instances("loglikelihood_rolling", [(PARAGRAPH,)])
    reference = hflm.loglikelihood_rolling(requests, disable_tqdm=True)
    assert ours.loglikelihood_rolling(requests) == pytest.approx(reference, abs=1e-3)
    ours.max_length = 16  # several disjoint windows: still the sum over the whole text, as lm-eval's windows give it
    try:
        hflm._max_length = 16
        windowed = ours.loglikelihood_rolling(requests)
        assert windowed == pytest.approx(hflm.loglikelihood_rolling(requests, disable_tqdm=True), abs=1e-3)
        assert windowed[0] < reference[0] - 1  # less context, lower likelihood: the windows really are shorter
    finally:
        ours.max_length, hflm._max_length = 8192, None


def test_generated_strings_match_hflm(hflm, ours):
    reference = hflm.generate_until(instances("generate_until", GENERATE), disable_tqdm=True)
    got = ours.generate_until(instances("generate_until", GENERATE))
    assert got == reference
    assert got[0] == " Paris" and "." not in got[0] and "\n" not in got[1]


def test_without_lm_eval_the_error_names_the_package_to_install():
    hide_lm_eval = "import sys; sys.modules['lm_eval'] = None; import lightning_adapt_lm_eval"
    result = subprocess.run([sys.executable, "-c", hide_lm_eval], capture_output=True, text=True)
    assert result.returncode != 0
    assert "needs the lm-eval package: pip install ./plugins/lm_eval" in result.stderr


def test_sampling_is_refused(ours):
    with pytest.raises(ValueError, match="greedily"):
        ours.generate_until(instances("generate_until", [("Hi", {"do_sample": True, "temperature": 0.7})]))


@pytest.mark.parametrize("k", [0, 2])
def test_simple_evaluate_gives_hflms_accuracy(hflm, ours, tmp_path, k):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in REVIEWS))
    (tmp_path / "reviews.yaml").write_text(local_task_yaml("reviews_sentiment", data, TASK_BODY))
    accuracies = []
    for model in (hflm, ours):
        results = lm_eval.simple_evaluate(
            model=model, tasks=["reviews_sentiment"], num_fewshot=k, task_manager=local_task_manager(tmp_path),
            bootstrap_iters=0, log_samples=True,
        )
        samples = results["samples"]["reviews_sentiment"]
        assert len(samples) == len(REVIEWS)
        accuracies.append((results["results"]["reviews_sentiment"]["acc,none"], samples))
    (hf_acc, hf_samples), (our_acc, our_samples) = accuracies
    assert our_acc == hf_acc
    assert 0.5 < our_acc  # a trained model, better than chance on easy reviews
    worst = max(
        abs(a[0] - b[0])
        for x, y in zip(hf_samples, our_samples)
        for a, b in zip(x["filtered_resps"], y["filtered_resps"])
    )
    assert worst <= 1e-4


def test_command_line_runs_a_task_with_model_args(smollm2_dir, tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in REVIEWS[:4]))
    (tmp_path / "reviews.yaml").write_text(local_task_yaml("reviews_sentiment", data, TASK_BODY))
    command = [
        sys.executable, "-m", "lightning_adapt_lm_eval", "--model", "lightning-adapt", "--model_args",
        f"checkpoint_dir={smollm2_dir},batch_size=16", "--tasks", "reviews_sentiment", "--include_path", str(tmp_path),
        "--output_path", str(tmp_path / "out"),
    ]  # lm-eval's --batch_size (default 1) and --device (default cuda:0) are passed too: neither clashes
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reviews_sentiment" in result.stdout and "acc" in result.stdout
    (written,) = (tmp_path / "out").rglob("results_*.json")
    assert json.loads(written.read_text())["config"]["model"] == "lightning-adapt"
