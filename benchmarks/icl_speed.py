"""ICL scoring speed: our evaluator against one forward pass per (query, choice) and against HFLM-style padded batches,
in the same run, with the tokens each runs against the minimum an exact scorer needs.

    python benchmarks/icl_speed.py                      # SmolLM2-135M-Instruct under checkpoints/, else the tiny model
    python benchmarks/icl_speed.py --checkpoint_dir DIR --device cuda
    python benchmarks/icl_speed.py --threads 1          # on a busy CPU, 2 threads can be slower than 1
    python benchmarks/icl_speed.py --finetune_steps 100 # also: the callback's share of a training run
    python benchmarks/icl_speed.py --skip_speed --finetune_steps 100 --subsample 16  # and with an evaluation budget

(Run from the repository root with the package installed, or with PYTHONPATH=. .)

Peers, scoring exactly the token sequences ours scores: "naive" is one full forward per (query, choice), full-vocabulary
logits at every position; "HFLM-style" is lm-evaluation-harness's `HFLM` method: requests whose fed tokens are equal
(one-token choices of one context) run once, sorted longest first, in right-padded batches of whole sequences with
full-vocabulary log-softmax, no reuse of the shared k-shot prefix. Tokens are counted at the model's input embedding
(every position a forward pass runs, padding included); the minimum is the number of distinct prefixes of the fed
sequences (their token trie), what an exact scorer must run at least. Prints per scorer: seconds, tokens, minimum /
tokens, ours' speed-up over it measured and ideal (its tokens / ours), measured / ideal, the largest log-likelihood
difference to ours and whether the predictions are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import torch

from lightning_adapt.icl import ICLEvaluation, ICLTask
from lightning_adapt.icl.metrics import argmax
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.icl.scorer import Scorer
from lightning_adapt.icl.scoring import Request, naive_loglikelihood

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct"
SENTIMENT = ROOT / "lightning_adapt/data/builtin/sentiment"


class TokenCount:
    """Counts the token positions (padding included) entering a model's forward passes, at its input embedding."""

    def __init__(self, embedding: torch.nn.Module) -> None:
        self.tokens = 0
        self.handle = embedding.register_forward_pre_hook(self._count)

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.tokens += args[0].numel()


def trie_size(sequences: Sequence[Sequence[int]]) -> int:
    """Distinct non-empty prefixes of the sequences: the token positions an exact scorer must run at least."""
    return len({tuple(s[:n]) for s in set(map(tuple, sequences)) for n in range(1, len(s) + 1)})


def minimum(requests: Sequence[Request]) -> int:
    """The fewest token positions an exact scorer of ``requests`` runs (each feeds ``tokens[:-1]``)."""
    return trie_size([request.tokens[:-1] for request in requests])


@contextmanager
def recorded() -> Iterator[list[Request]]:
    """The requests every `Scorer` scores inside (our scorer's input, as lm-eval's plugin and `ICLRunner` pass it)."""
    requests: list[Request] = []
    scores = Scorer.scores

    def recording(self, name, batch):
        requests.extend(batch)
        return scores(self, name, batch)

    with mock.patch.object(Scorer, "scores", recording):
        yield requests


def tiny_checkpoint(folder: Path) -> Path:
    """The tiny random test model, with a 2048-token context so 8-shot prompts fit (RoPE has no
    learned positions, so only the config changes)."""
    from litgpt.utils import save_config

    from lightning_adapt.testing import make_tiny_checkpoint, tiny_config

    path = make_tiny_checkpoint(folder / "tiny-llama")
    save_config(tiny_config(block_size=2048), path)
    return path


def load(checkpoint_dir: Path, device: str):
    from litgpt import GPT, Config, Tokenizer

    model = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    state = torch.load(checkpoint_dir / "lit_model.pth", map_location="cpu", mmap=True, weights_only=True)
    model.load_state_dict(state.get("model", state))
    return model.to(device).eval(), Tokenizer(checkpoint_dir)


@torch.no_grad()
def hflm_style(model, sequences: list[tuple[tuple[int, ...], int]], batch_size: int) -> list[float]:
    """lm-eval's `HFLM` loglikelihood: equal fed sequences once, longest first, right-padded batches, log-softmax over
    the full vocabulary at every position."""
    readers: dict[tuple[int, ...], list[int]] = {}
    for n, (tokens, _) in enumerate(sequences):
        readers.setdefault(tokens[:-1], []).append(n)
    fed = sorted(readers, key=lambda t: (-len(t), t))
    device = model.lm_head.weight.device
    scores = [0.0] * len(sequences)
    for j in range(0, len(fed), batch_size):
        batch = fed[j : j + batch_size]
        idx = torch.zeros((len(batch), len(batch[0])), dtype=torch.long)
        for row, tokens in enumerate(batch):
            idx[row, : len(tokens)] = torch.tensor(tokens)
        logprobs = model(idx.to(device)).float().log_softmax(-1)
        for row, fed_tokens in enumerate(batch):
            for n in readers[fed_tokens]:
                tokens, start = sequences[n]
                targets = torch.tensor(tokens[start:], device=device)
                scores[n] = logprobs[row, start - 1 : len(tokens) - 1].gather(-1, targets[:, None]).sum().item()
    return scores


def speed(args: argparse.Namespace, checkpoint_dir: Path) -> None:
    model, tokenizer = load(checkpoint_dir, args.device)
    task = ICLTask(
        name="sentiment", queries=str(SENTIMENT / "test.jsonl"), demos=str(SENTIMENT / "demos.jsonl"),
        template="Review: {text}\nSentiment:", target="label", choices=["Positive", "Negative"],
        shots=[args.k], seeds=[0], max_queries=args.queries,
    )
    runner = ICLRunner([task])
    runner.prepare(tokenizer, model.config.block_size)
    items = runner.plans[0].prompts[(args.k, 0, 0)]
    sequences = [(item.context + c, len(item.context)) for item in items for c in item.continuations]
    least = trie_size([tokens[:-1] for tokens, _ in sequences])
    print(f"model {checkpoint_dir.name} on {args.device} ({torch.get_num_threads()} threads); {len(items)} queries x 2 "
          f"choices at k={args.k}; mean prompt {sum(len(i.context) for i in items) / len(items):.0f} tokens; "
          f"batch size {args.batch_size}; minimum an exact scorer runs (token trie): {least} tokens")

    if args.device != "cpu":
        runner.run(model, tokenizer, args.batch_size)  # warm-up (kernel selection, allocator)
    counter = TokenCount(model.transformer.wte)
    peers = {"HFLM-style": lambda: hflm_style(model, sequences, args.batch_size)}
    if not args.skip_unbatched:
        peers["naive"] = lambda: [naive_loglikelihood(model, tokens, s) for tokens, s in sequences]
    timings, scores, tokens = {}, {}, {}
    start = time.perf_counter()
    with recorded() as requests:
        results = runner.run(model, tokenizer, args.batch_size)
    timings["ours"], tokens["ours"] = time.perf_counter() - start, counter.tokens
    assert [(r.tokens, r.start) for r in requests] == sequences, "ours scored other sequences than the peers"
    scores["ours"] = [ll for p in results.predictions for ll in p["loglikelihoods"]]
    for name, run in peers.items():
        before, start = counter.tokens, time.perf_counter()
        scores[name] = run()
        timings[name], tokens[name] = time.perf_counter() - start, counter.tokens - before

    reference = [argmax(scores["ours"][i : i + 2]) for i in range(0, len(sequences), 2)]
    print(f"{'scorer':>10} {'seconds':>8} {'tokens':>7} {'min/tok':>7} {'ratio':>7} {'ideal':>7} {'meas/id':>7}  "
          "max |d ll|  identical predictions")
    for name, seconds in timings.items():
        predictions = [argmax(scores[name][i : i + 2]) for i in range(0, len(sequences), 2)]
        diff = max(abs(a - b) for a, b in zip(scores[name], scores["ours"]))
        measured, ideal = seconds / timings["ours"], tokens[name] / tokens["ours"]
        print(f"{name:>10} {seconds:8.2f} {tokens[name]:7d} {100 * least / tokens[name]:6.1f}% {measured:6.2f}x "
              f"{ideal:6.2f}x {100 * measured / ideal:6.1f}%  {diff:.2e}    {predictions == reference}")
    print("ratio = its seconds / ours; ideal = its tokens / ours; min/tok = the trie minimum / its tokens")


def callback_share(args: argparse.Namespace, checkpoint_dir: Path) -> None:
    """Wall-time share of ICLEvaluation in a short LoRA fine-tuning run (FineTuning + Instructions on the built-in
    sentiment training split, in the ICL task's own prompt format), for settings timed in the same run: the compare
    demo's evaluation during training (k=0, one seed), the issue's example (k=0 and 4, three seeds) and, with
    ``--subsample``, the first with that budget. Each share is of the run's wall time without the other settings'
    evaluations; the tokens its forward passes ran are printed against the minimum for the requests it scored."""
    import lightning as L
    from jsonargparse import ArgumentParser

    from lightning_adapt import FineTuning, Instructions, LoRA, Optimization
    from lightning_adapt.icl import evaluate_checkpoint

    class Timed(ICLEvaluation):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.seconds, self.tokens, self.least, self.evaluations = 0.0, 0, 0, 0

        def _evaluate(self, trainer, pl_module, *a, **kw):
            counter = TokenCount(pl_module.model.transformer.wte)
            start = time.perf_counter()
            try:
                with recorded() as requests:
                    super()._evaluate(trainer, pl_module, *a, **kw)
            finally:
                counter.handle.remove()
            self.seconds += time.perf_counter() - start
            self.tokens += counter.tokens
            self.least += minimum(requests)
            self.evaluations += 1

    parser = ArgumentParser()
    parser.add_function_arguments(evaluate_checkpoint)
    tasks = parser.instantiate_classes(parser.parse_path(ROOT / "configs/icl/sentiment.yaml")).tasks
    settings = {"k=0, 1 seed": Timed(tasks, shots=[0], seeds=[0], log_predictions=False),
                "k=0,4, 3 seeds": Timed(tasks, shots=[0, 4], seeds=[0, 1, 2], log_predictions=False)}
    if args.subsample:
        settings[f"k=0, 1 seed, subsample={args.subsample}"] = Timed(
            tasks, shots=[0], seeds=[0], log_predictions=False, subsample=args.subsample
        )
    module = FineTuning(checkpoint_dir, lora=LoRA(r=8, alpha=16, targets=["query", "value"]),
                        optimization=Optimization(learning_rate=2e-3),
                        max_seq_length=args.seq_len, export=False)
    data = Instructions("builtin:sentiment/train.jsonl", val_path="builtin:sentiment/validation.jsonl",
                        instruction_template="Review: {text}\nSentiment:", output_template=" {label}",
                        prompt_style="default", batch_size=8)
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(
            accelerator=args.device if args.device == "cpu" else "gpu", devices=1, max_steps=args.finetune_steps,
            val_check_interval=args.val_check_interval, check_val_every_n_epoch=None, limit_val_batches=4,
            num_sanity_val_steps=0, default_root_dir=folder, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=list(settings.values()),
        )
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        total = time.perf_counter() - start
    icl = sum(callback.seconds for callback in settings.values())
    print(f"LoRA fine-tuning, {args.finetune_steps} steps of 8 reviews, validation every {args.val_check_interval}: "
          f"{total - icl:.1f} s without ICL; {len(tasks[0].load().queries)} queries per full evaluation")
    for name, callback in settings.items():
        alone = total - icl + callback.seconds
        print(f"  ICLEvaluation {name}: {callback.evaluations} evaluations, {callback.seconds:.1f} s = "
              f"{100 * callback.seconds / alone:.1f}% of that run's wall time ({alone:.1f} s); {callback.tokens} "
              f"tokens run, minimum {callback.least} ({100 * callback.least / max(callback.tokens, 1):.1f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint_dir", type=Path, default=SMOLLM2)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 avoids oversubscription on a busy CPU)")
    parser.add_argument("--skip_unbatched", action="store_true", help="skip the slowest peer (one forward each)")
    parser.add_argument("--finetune_steps", type=int, default=0, help="> 0: also measure the callback's share")
    parser.add_argument("--skip_speed", action="store_true", help="only measure the callback's share")
    parser.add_argument("--val_check_interval", type=int, default=50)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--subsample", type=int, help="also time the k=0 setting with ICLEvaluation(subsample=N)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint_dir = args.checkpoint_dir
        if not (checkpoint_dir / "lit_model.pth").is_file():
            print(f"{checkpoint_dir} not found: using the tiny random model")
            checkpoint_dir = tiny_checkpoint(Path(folder))
        if not args.skip_speed:
            speed(args, checkpoint_dir)
        if args.finetune_steps:
            callback_share(args, checkpoint_dir)


if __name__ == "__main__":
    main()
