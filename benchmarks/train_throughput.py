"""LoRA training throughput: lightning-adapt's FineTuning + Lightning Trainer vs LitGPT's own `finetune_lora`.

Both train the same checkpoint on the same instruction file with the same micro-batch, sequence length, LoRA
settings, prompt style and prompt masking, in this one process. Each side's time per step covers loading the
batch, forward, backward and the optimizer step; the first `--skip` steps (warm-up) are left out.

    python benchmarks/train_throughput.py [--checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct]

Without a checkpoint folder it builds a random 6-layer llama-style model offline.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch

from lightning_adapt import FineTuning, Instructions, LoRA, Optimization
from lightning_adapt.data.records import read_records
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config

DEFAULT_CHECKPOINT = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")


def instruction_file(folder: Path) -> Path:
    rows = [
        {"instruction": "Is the sentiment of this review Positive or Negative?", "input": r.data["text"], "output": r.data["label"]}
        for r in read_records("builtin:sentiment/train.jsonl")
    ]
    path = folder / "sentiment.json"
    path.write_text(json.dumps(rows))
    return path


def random_checkpoint(folder: Path) -> Path:
    checkpoint = make_tiny_checkpoint(folder / "bench-llama")
    config = replace(tiny_config(), name="bench-llama", block_size=512, n_layer=6, n_embd=384, n_head=6, n_query_groups=2, intermediate_size=1024)
    torch.save(__import__("litgpt").GPT(config).state_dict(), checkpoint / "lit_model.pth")
    from litgpt.utils import save_config

    save_config(config, checkpoint)
    return checkpoint


class StepClock(L.Callback):
    """Wall time and non-padding tokens of every optimizer step, measured from one step's end to the next."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.tokens: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())
        self.tokens.append(int(batch["token_counts"]["raw_plus_prompt_template"].sum()))


def ours(checkpoint: Path, data: Path, args: argparse.Namespace, out: Path) -> float:
    L.seed_everything(1337)
    module = FineTuning(checkpoint, lora=LoRA(r=8, alpha=16, dropout=0.05, targets=["query", "value"]),
                        max_seq_length=args.max_seq_length, optimization=Optimization(warmup_steps=2), export=False)
    datamodule = Instructions(str(data), prompt_style="alpaca", batch_size=args.micro_batch_size, val_fraction=0.05)
    clock = StepClock()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=args.steps, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[clock], default_root_dir=out)
    trainer.fit(module, datamodule=datamodule)
    seconds = clock.ends[-1] - clock.ends[args.skip]
    return sum(clock.tokens[args.skip :]) / seconds


def litgpt_lora(checkpoint: Path, data: Path, args: argparse.Namespace, out: Path) -> float:
    """Run `litgpt finetune_lora` as users do, then read its per-iteration times and token counts."""
    command = [
        sys.executable, "-m", "litgpt", "finetune_lora", str(checkpoint), "--out_dir", str(out),
        "--precision", "32-true", "--devices", "1", "--logger_name", "csv",
        "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.05", "--lora_query", "true", "--lora_value", "true",
        "--data", "JSON", "--data.json_path", str(data), "--data.val_split_fraction", "0.05",
        "--data.mask_prompt", "true", "--data.prompt_style", "alpaca", "--data.num_workers", "0",
        "--train.save_interval", "1000000", "--train.log_interval", "1", "--train.lr_warmup_steps", "2",
        "--train.global_batch_size", str(args.micro_batch_size), "--train.micro_batch_size", str(args.micro_batch_size),
        "--train.max_steps", str(args.steps), "--train.epochs", "100", "--train.max_seq_length", str(args.max_seq_length),
        "--eval.interval", "1000000", "--eval.max_new_tokens", "1", "--eval.max_iters", "1",
        "--eval.initial_validation", "false", "--eval.final_validation", "false",
    ]
    subprocess.run(command, check=True, capture_output=True)
    with open(next(out.rglob("metrics.csv"))) as fp:
        rows = [r for r in csv.DictReader(fp) if r.get("iter_time")]
    measured = rows[args.skip :]
    tokens = float(measured[-1]["tokens"]) - float(rows[args.skip - 1]["tokens"])
    return tokens / sum(float(r["iter_time"]) for r in measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side; the best counts")
    parser.add_argument("--micro_batch_size", type=int, default=4)
    parser.add_argument("--max_seq_length", type=int, default=384)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint_dir if args.checkpoint_dir.is_dir() else random_checkpoint(tmp)
        data = instruction_file(tmp)
        theirs, mine = 0.0, 0.0
        for round_ in range(args.rounds):
            theirs = max(theirs, litgpt_lora(checkpoint, data, args, tmp / f"litgpt{round_}"))
            mine = max(mine, ours(checkpoint, data, args, tmp / f"ours{round_}"))
    print(f"model: {checkpoint.name}, micro-batch {args.micro_batch_size}, max_seq_length {args.max_seq_length}, "
          f"steps {args.steps} (first {args.skip} left out), best of {args.rounds} alternating rounds, "
          f"torch threads {torch.get_num_threads()}")
    print(f"litgpt finetune_lora : {theirs:8.1f} tokens/s")
    print(f"lightning-adapt      : {mine:8.1f} tokens/s")
    print(f"ratio ours / litgpt  : {mine / theirs:8.3f}")


if __name__ == "__main__":
    main()
