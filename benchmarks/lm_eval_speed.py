"""lm-evaluation-harness: the `lightning-adapt` model (plugins/lm_eval) against lm-eval's own `HFLM`, in the same run,
on the same task, documents and weights, with the ideal ratio that prefix sharing allows beside the measured one.

    python benchmarks/lm_eval_speed.py [--shots 0 1 5 8] [--docs 120] [--batch_size 16] [--threads 2]
    python benchmarks/lm_eval_speed.py --checkpoint_dir DIR   # default: SmolLM2-135M-Instruct under checkpoints/,
                                                              # else the tiny random model (offline)

The task: the built-in test reviews (120), four choices (Negative, Positive, Neutral, Mixed), k demonstrations from the
built-in training reviews. With `fewshot_config: {sampler: first_n}` every document gets the same first k training
reviews (as lightning-adapt's own ICL tasks do per seed), so all prompts share the k demonstrations; one more row uses
lm-eval's default sampler, which draws different demonstrations for every document, so only a document's own choices
share a prompt prefix. `HFLM` runs transformers' Llama with the checkpoint's weights (written by
`lightning_adapt.formats.hf`) and the checkpoint's Hugging Face tokenizer.

Per row: seconds of one `simple_evaluate` per backend (lm-eval builds the requests, the backend scores them, lm-eval
aggregates) and their ratio; the ideal ratio, which is the tokens HFLM's forward passes process (its own batching:
sorted, one-token continuations of a context merged, right-padded batches) over the tokens ours process (shared
prefixes once, padding included), both counted at the model's input embedding; measured/ideal; lm-eval's own fixed
cost per call (a `simple_evaluate` whose model answers instantly); the seconds inside each backend's `loglikelihood`
(tokenizing and scoring, lm-eval's own work left out) and their ratio against the ideal; our tokens against the
minimum an exact scorer needs (every distinct prefix of the fed sequences once: the size of their token trie); and
whether both backends give the same predictions (the largest log-likelihood difference beside it). Each backend
first runs a small warm-up evaluation; lm-eval's task index is built once beforehand. Needs
`pip install -e './plugins/lm_eval[test]'`; nothing is fetched.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from icl_speed import SMOLLM2, TokenCount, minimum, recorded, tiny_checkpoint  # this folder's ICL benchmark

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
SAMPLERS = {
    "first_n": ("reviews_four_way_first_n", "fewshot_config:\n  sampler: first_n\n"),
    "default": ("reviews_four_way", ""),
}


@dataclass
class Run:
    """One `simple_evaluate` of one backend: its seconds, the seconds inside the backend's `loglikelihood` (scoring:
    tokenizing and running the model), accuracy, per-document choice log-likelihoods and the tokens its model ran."""

    seconds: float
    scoring: float
    accuracy: float
    loglikelihoods: list[list[float]]
    tokens: int


def write_tasks(folder: Path) -> None:
    """One task YAML per sampler in ``folder``."""
    folder.mkdir()
    for name, fewshot in SAMPLERS.values():
        text = TASK.format(name=name, test=SENTIMENT / "test.jsonl", train=SENTIMENT / "train.jsonl", fewshot=fewshot)
        (folder / f"{name}.yaml").write_text(text)


def hf_model(checkpoint_dir: Path, folder: Path):
    """transformers' model of the checkpoint's weights (float32, eval mode)."""
    from transformers import AutoModelForCausalLM

    from lightning_adapt.formats.hf import write_hf_model
    from lightning_adapt.model.loading import load_config

    folder.mkdir()
    state = torch.load(checkpoint_dir / "lit_model.pth", map_location="cpu", weights_only=True)
    write_hf_model(load_config(checkpoint_dir), state.get("model", state), checkpoint_dir, folder)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def instant_lm():
    """An lm-eval model that answers every request at once: `simple_evaluate` on it times lm-eval alone."""
    from lm_eval.api.model import LM

    class Instant(LM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return [(0.0, False)] * len(requests)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return [0.0] * len(requests)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return [""] * len(requests)

    return Instant()


def evaluate(model, counter: TokenCount | None, task_manager, task: str, shots: int, limit: int) -> Run:
    """One `simple_evaluate` of ``model``."""
    import lm_eval

    before, scoring = counter.tokens if counter else 0, []
    loglikelihood = model.loglikelihood

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return loglikelihood(*args, **kwargs)
        finally:
            scoring.append(time.perf_counter() - start)

    start = time.perf_counter()
    with mock.patch.object(model, "loglikelihood", timed):
        results = lm_eval.simple_evaluate(
            model=model, tasks=[task], num_fewshot=shots, limit=limit, bootstrap_iters=0, log_samples=True,
            task_manager=task_manager, random_seed=0, fewshot_random_seed=1234,
        )
    seconds = time.perf_counter() - start
    samples = sorted(results["samples"][task], key=lambda sample: sample["doc_id"])
    choices = [[response[0] for response in sample["filtered_resps"]] for sample in samples]
    tokens = counter.tokens - before if counter else 0
    return Run(seconds, sum(scoring), results["results"][task]["acc,none"], choices, tokens)


def row(label: str, hf: Run, ours: Run, fixed: float, least: int) -> str:
    """One printed row of the table."""
    measured, ideal, scoring = hf.seconds / ours.seconds, hf.tokens / ours.tokens, hf.scoring / ours.scoring
    argmax = lambda lls: [max(range(len(x)), key=x.__getitem__) for x in lls]  # noqa: E731
    same = argmax(hf.loglikelihoods) == argmax(ours.loglikelihoods) and hf.accuracy == ours.accuracy
    worst = max(abs(a - b) for x, y in zip(hf.loglikelihoods, ours.loglikelihoods) for a, b in zip(x, y))
    return (f"{label:>12} {hf.seconds:7.1f} {ours.seconds:7.1f} {measured:6.2f}x {hf.tokens:8d} {ours.tokens:7d} "
            f"{ideal:6.2f}x {100 * measured / ideal:6.1f}% {fixed:7.2f} {hf.scoring:7.2f} {ours.scoring:7.2f} "
            f"{scoring:6.2f}x {100 * scoring / ideal:6.1f}% {100 * least / ours.tokens:6.1f}%  {same} ({worst:.1e})")


HEADER = (f"{'k (sampler)':>12} {'HFLM s':>7} {'ours s':>7} {'ratio':>7} {'HFLM tok':>8} {'our tok':>7} {'ideal':>7} "
          f"{'meas/id':>7} {'fixed s':>7} {'HFLM sc':>7} {'our sc':>7} {'sc rat':>7} {'sc/id':>7} {'min/our':>7}  "
          "same predictions (max |d ll|)")
LEGEND = ("ratio = HFLM s / ours s (whole simple_evaluate); ideal = HFLM tokens / our tokens; meas/id = ratio / ideal; "
          "fixed = lm-eval alone per call (instant model); sc = seconds inside the backend's loglikelihood, sc rat "
          "their ratio, sc/id = sc rat / ideal; min/our = the token-trie minimum / our tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", type=Path, default=SMOLLM2)
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 1, 5, 8])
    parser.add_argument("--default_sampler_shots", type=int, default=5,
                        help="k of the row with lm-eval's default sampler (negative: no such row)")
    parser.add_argument("--docs", type=int, default=120, help="Test reviews evaluated (at most 120).")
    parser.add_argument("--batch_size", type=int, default=16, help="Sequences per forward pass, both backends.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from lightning_adapt_lm_eval import LightningAdaptLM
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = args.checkpoint_dir
        if not (checkpoint / "lit_model.pth").is_file():
            print(f"{checkpoint} not found: using the tiny random model")
            checkpoint = tiny_checkpoint(root)
        write_tasks(root / "tasks")
        start = time.perf_counter()
        task_manager = TaskManager(include_path=str(root / "tasks"))
        indexing = time.perf_counter() - start
        model = hf_model(checkpoint, root / "hf")
        hflm = HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(checkpoint),
                    batch_size=args.batch_size, device="cpu")
        ours = LightningAdaptLM(checkpoint_dir=str(checkpoint), batch_size=args.batch_size, device="cpu")
        counters = {"hf": TokenCount(model.get_input_embeddings()), "ours": TokenCount(ours.model.transformer.wte)}
        first_n = SAMPLERS["first_n"][0]
        for backend, counter in ((hflm, counters["hf"]), (ours, counters["ours"]), (instant_lm(), None)):
            evaluate(backend, counter, task_manager, first_n, 1, 4)  # warm-up: kernels, lm-eval's dataset cache

        rows = [(k, "first_n") for k in args.shots]
        if args.default_sampler_shots >= 0:
            rows.append((args.default_sampler_shots, "default"))
        lines = []
        for k, sampler in rows:
            task = SAMPLERS[sampler][0]
            fixed = evaluate(instant_lm(), None, task_manager, task, k, args.docs).seconds
            hf = evaluate(hflm, counters["hf"], task_manager, task, k, args.docs)
            with recorded() as requests:
                mine = evaluate(ours, counters["ours"], task_manager, task, k, args.docs)
            lines.append(row(f"{k} ({sampler})", hf, mine, fixed, minimum(requests)))
            print(lines[-1], flush=True)
    print(f"\n{checkpoint.name}, {args.docs} documents x 4 choices, batch size {args.batch_size}, {args.threads} CPU "
          f"threads; lm-eval's task index, built once before (not in the times): {indexing:.1f} s")
    print(LEGEND)
    print(HEADER)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
