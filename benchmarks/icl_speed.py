"""ICL scoring speed: our evaluator against one forward pass per (query, choice), in the same run.

    python benchmarks/icl_speed.py                      # SmolLM2-135M-Instruct under checkpoints/, else the tiny model
    python benchmarks/icl_speed.py --checkpoint_dir DIR --device cuda
    python benchmarks/icl_speed.py --threads 1          # on a busy CPU, 2 threads can be slower than 1
    python benchmarks/icl_speed.py --finetune_steps 100 # also: the callback's share of a training run

(Run from the repository root with the package installed, or with PYTHONPATH=. .)

Peers: "naive" is one full forward per (query, choice), full-vocabulary logits at every position;
"naive-batched" is lm-evaluation-harness's method (padded batches of whole sequences, no reuse of
the shared k-shot prefix). Both score exactly the same token sequences as ours. Prints seconds,
speed ratios, the largest log-likelihood difference and whether the predictions are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lightning_adapt.icl import ICLEvaluation, ICLTask
from lightning_adapt.icl.metrics import argmax
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.icl.scoring import naive_loglikelihood

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct"
SENTIMENT = ROOT / "lightning_adapt/data/builtin/sentiment"


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
def naive_batched(model, sequences: list[tuple[tuple[int, ...], int]], batch_size: int) -> list[float]:
    """lm-eval's loglikelihood: padded batches of whole sequences, log-softmax over the full vocabulary."""
    out = [0.0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    device = model.lm_head.weight.device
    for j in range(0, len(order), batch_size):
        batch = order[j : j + batch_size]
        width = max(len(sequences[i][0]) for i in batch) - 1
        idx = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens = sequences[i][0][:-1]
            idx[row, : len(tokens)] = torch.tensor(tokens)
        logprobs = model(idx.to(device)).float().log_softmax(-1)
        for row, i in enumerate(batch):
            tokens, start = sequences[i]
            targets = torch.tensor(tokens[start:], device=device)
            out[i] = logprobs[row, start - 1 : len(tokens) - 1].gather(-1, targets[:, None]).sum().item()
    return out


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
    print(f"model {checkpoint_dir.name} on {args.device} ({torch.get_num_threads()} threads); {len(items)} queries x 2 choices at k={args.k}; "
          f"mean prompt {sum(len(i.context) for i in items) / len(items):.0f} tokens; batch size {args.batch_size}")

    if args.device != "cpu":
        runner.run(model, tokenizer, args.batch_size)  # warm-up (kernel selection, allocator)
    timings, scores = {}, {}
    start = time.perf_counter()
    results = runner.run(model, tokenizer, args.batch_size)
    timings["ours"] = time.perf_counter() - start
    scores["ours"] = [ll for p in results.predictions for ll in p["loglikelihoods"]]
    start = time.perf_counter()
    scores["naive-batched"] = naive_batched(model, sequences, args.batch_size)
    timings["naive-batched"] = time.perf_counter() - start
    if not args.skip_unbatched:
        start = time.perf_counter()
        scores["naive"] = [naive_loglikelihood(model, tokens, s) for tokens, s in sequences]
        timings["naive"] = time.perf_counter() - start

    reference = [argmax(scores["ours"][i : i + 2]) for i in range(0, len(sequences), 2)]
    for name, seconds in timings.items():
        predictions = [argmax(scores[name][i : i + 2]) for i in range(0, len(sequences), 2)]
        diff = max(abs(a - b) for a, b in zip(scores[name], scores["ours"]))
        print(f"{name:>14}: {seconds:7.2f} s  ours is {seconds / timings['ours']:5.1f}x faster  "
              f"max |d ll| {diff:.2e}  identical predictions: {predictions == reference}")


def callback_share(args: argparse.Namespace, checkpoint_dir: Path) -> None:
    """Wall-time share of ICLEvaluation in a short LoRA fine-tuning run (FineTuning + Instructions on the built-in
    sentiment training split, in the ICL task's own prompt format), for two settings timed in the same run: the
    compare demo's evaluation during training (k=0, one seed) and the issue's example (k=0 and 4, three seeds).
    Each share is of the run's wall time without the other setting's evaluations."""
    import lightning as L
    from jsonargparse import ArgumentParser

    from lightning_adapt import FineTuning, Instructions, LoRA, Optimization
    from lightning_adapt.icl import evaluate_checkpoint

    class Timed(ICLEvaluation):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            self.seconds = 0.0

        def _evaluate(self, trainer, pl_module):
            start = time.perf_counter()
            super()._evaluate(trainer, pl_module)
            self.seconds += time.perf_counter() - start

    parser = ArgumentParser()
    parser.add_function_arguments(evaluate_checkpoint)
    tasks = parser.instantiate_classes(parser.parse_path(ROOT / "configs/icl/sentiment.yaml")).tasks
    settings = {"k=0, 1 seed": Timed(tasks, shots=[0], seeds=[0], log_predictions=False),
                "k=0,4, 3 seeds": Timed(tasks, shots=[0, 4], seeds=[0, 1, 2], log_predictions=False)}
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
          f"{total - icl:.1f} s without ICL; {1 + args.finetune_steps // args.val_check_interval} ICL evaluations "
          f"of {len(tasks[0].load().queries)} queries")
    for name, callback in settings.items():
        alone = total - icl + callback.seconds
        print(f"  ICLEvaluation {name}: {callback.seconds:.1f} s = {100 * callback.seconds / alone:.1f}% of that run's "
              f"wall time ({alone:.1f} s)")


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
