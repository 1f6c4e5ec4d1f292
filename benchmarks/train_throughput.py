"""LoRA training throughput: lightning-adapt's FineTuning + Lightning Trainer vs LitGPT's own `finetune_lora`.

Both train the same checkpoint on the same instruction file with the same micro-batch, sequence length, LoRA
settings, prompt style, prompt masking and precision, in this one run. Each side's time per step covers loading the
batch, forward, backward and the optimizer step; the first `--skip` steps (warm-up) are left out. `--variants` adds
our QLoRA nf4 and our LoRA with activation checkpointing, each against our LoRA, with peak memory on CUDA.

    python benchmarks/train_throughput.py [--checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct]
    python benchmarks/train_throughput.py --model_name Llama-3.2-1B --accelerator cuda --fill --variants   # a GPU

Without a checkpoint folder it builds a random model offline: `--model_name` takes the shape from LitGPT's config of
that name (tiny tokenizer, the config's vocabulary), else a 6-layer llama-style model. `--fill` makes every answer
longer than `--max_seq_length`, so that every sequence has exactly that many tokens: then model FLOPs utilisation
(MFU: training FLOPs of `lightning_adapt.record.flops` per second over the device's dense peak) is printed for each side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path

import lightning as L
import torch
from litgpt import GPT, Config
from litgpt.lora import Config as LoRAConfig
from litgpt.utils import save_config

from lightning_adapt import FineTuning, Instructions, LoRA, Optimization
from lightning_adapt.data.records import read_records
from lightning_adapt.record.flops import training_flops
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config

DEFAULT_CHECKPOINT = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")


def instruction_file(folder: Path, fill: bool) -> Path:
    """The built-in sentiment reviews as instructions; with `fill`, no input and each answer 40 reviews (thousands of
    tokens), so every sequence is cut at max_seq_length."""
    reviews = [r.data for r in read_records("builtin:sentiment/train.jsonl")]
    question = "Is the sentiment of this review Positive or Negative?"
    if fill:
        rows = [{"instruction": "Write reviews.", "input": "",
                 "output": " ".join(r["text"] for r in reviews[i : i + 40])} for i in range(len(reviews) - 40)]
    else:
        rows = [{"instruction": question, "input": r["text"], "output": r["label"]} for r in reviews]
    path = folder / "sentiment.json"
    path.write_text(json.dumps(rows))
    return path


def random_checkpoint(folder: Path, model_name: str | None, device: str) -> Path:
    """A checkpoint with random weights (saved in bfloat16 for a named config, whose models are large)."""
    checkpoint = make_tiny_checkpoint(folder / (model_name or "bench-llama"))
    if model_name:
        config = Config.from_name(model_name)
    else:
        config = replace(tiny_config(), name="bench-llama", block_size=512, n_layer=6, n_embd=384, n_head=6,
                         n_query_groups=2, intermediate_size=1024)
    torch.manual_seed(0)
    with torch.device(device):
        model = GPT(config)
        model.apply(model._init_weights)
    state = {k: v.to("cpu", torch.bfloat16 if model_name else v.dtype) for k, v in model.state_dict().items()}
    torch.save(state, checkpoint / "lit_model.pth")
    save_config(config, checkpoint)
    return checkpoint


class StepClock(L.Callback):
    """Wall time and non-padding tokens of every optimizer step, measured from one step's end to the next."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.tokens: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._synchronize(pl_module)
        self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._synchronize(pl_module)
        self.ends.append(time.perf_counter())
        self.tokens.append(int(batch["token_counts"]["raw_plus_prompt_template"].sum()))

    @staticmethod
    def _synchronize(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()


@dataclass
class Measured:
    tokens_per_s: float
    peak_mib: float | None = None  # CUDA's peak allocated memory of the run


tokens_per_s = attrgetter("tokens_per_s")


def ours(checkpoint: Path, data: Path, args: argparse.Namespace, out: Path, quantize: str | None = None,
         activation_checkpointing: bool = False) -> Measured:
    L.seed_everything(1337)
    module = FineTuning(checkpoint, lora=LoRA(r=8, alpha=16, dropout=0.05, targets=["query", "value"]),
                        quantize=quantize, max_seq_length=args.max_seq_length,
                        optimization=Optimization(warmup_steps=2), activation_checkpointing=activation_checkpointing,
                        general_val=None, export=False)
    datamodule = Instructions(str(data), prompt_style="alpaca", batch_size=args.micro_batch_size, val_fraction=0.05)
    clock = StepClock()
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[clock], default_root_dir=out)
    cuda = trainer.strategy.root_device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    full = args.micro_batch_size * args.max_seq_length
    if args.fill and set(clock.tokens) != {full}:  # MFU counts full sequences
        sys.exit(f"--fill: steps of {sorted(set(clock.tokens))} tokens, expected {full}; raise the answers' length")
    seconds = clock.ends[-1] - clock.ends[args.skip]
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return Measured(sum(clock.tokens[args.skip :]) / seconds, peak)


def litgpt_lora(checkpoint: Path, data: Path, args: argparse.Namespace, out: Path) -> Measured:
    """Run `litgpt finetune_lora` as users do, then read its per-iteration times and token counts."""
    command = [
        sys.executable, "-m", "litgpt", "finetune_lora", str(checkpoint), "--out_dir", str(out),
        "--precision", args.precision, "--devices", "1", "--logger_name", "csv",
        "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.05", "--lora_query", "true", "--lora_value", "true",
        "--data", "JSON", "--data.json_path", str(data), "--data.val_split_fraction", "0.05",
        "--data.mask_prompt", "true", "--data.prompt_style", "alpaca", "--data.num_workers", "0",
        "--train.save_interval", "1000000", "--train.log_interval", "1", "--train.lr_warmup_steps", "2",
        "--train.global_batch_size", str(args.micro_batch_size), "--train.micro_batch_size", str(args.micro_batch_size),
        "--train.max_steps", str(args.steps), "--train.epochs", "100", "--train.max_seq_length", str(args.max_seq_length),
        "--eval.interval", "1000000", "--eval.max_new_tokens", "1", "--eval.max_iters", "1",
        "--eval.initial_validation", "false", "--eval.final_validation", "false",
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if args.accelerator == "cpu" else None
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"litgpt finetune_lora failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    with open(next(out.rglob("metrics.csv"))) as fp:
        rows = [r for r in csv.DictReader(fp) if r.get("iter_time")]
    measured = rows[args.skip :]
    tokens = float(measured[-1]["tokens"]) - float(rows[args.skip - 1]["tokens"])
    return Measured(tokens / sum(float(r["iter_time"]) for r in measured))


# Dense bf16 peaks (NVIDIA's datasheets; Lightning's table lists the sparse ones, twice these).
DENSE_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_flops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.accelerator == "cuda" and args.precision.startswith("bf16"):
        name = torch.cuda.get_device_name()
        return next((tflops * 1e12 for key, tflops in DENSE_BF16_TFLOPS.items() if key in name), None)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--model_name", help="random weights in the shape of this LitGPT config (e.g. Llama-3.2-1B)")
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", help="both sides' precision (default: bf16-true on CUDA, 32-true on the CPU)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side; the best counts")
    parser.add_argument("--micro_batch_size", type=int, default=4)
    parser.add_argument("--max_seq_length", type=int, default=384)
    parser.add_argument("--fill", action="store_true", help="every sequence max_seq_length tokens long (and MFU)")
    parser.add_argument("--variants", action="store_true",
                        help="also our QLoRA nf4 and our LoRA with activation checkpointing, against our LoRA")
    parser.add_argument("--peak_tflops", type=float, help="the device's dense peak for MFU (default: known GPUs)")
    args = parser.parse_args()
    args.precision = args.precision or ("bf16-true" if args.accelerator == "cuda" else "32-true")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        named = args.model_name or not args.checkpoint_dir.is_dir()
        checkpoint = random_checkpoint(tmp, args.model_name, args.accelerator) if named else args.checkpoint_dir
        data = instruction_file(tmp, args.fill)
        theirs, mine = Measured(0.0), Measured(0.0)
        for round_ in range(args.rounds):
            theirs = max(theirs, litgpt_lora(checkpoint, data, args, tmp / f"litgpt{round_}"), key=tokens_per_s)
            mine = max(mine, ours(checkpoint, data, args, tmp / f"ours{round_}"), key=tokens_per_s)
        variants = {}
        if args.variants:
            variants["QLoRA nf4"] = ours(checkpoint, data, args, tmp / "nf4", quantize="nf4")
            variants["LoRA + activation checkpointing"] = ours(checkpoint, data, args, tmp / "ac",
                                                              activation_checkpointing=True)
        config = LoRAConfig.from_file(checkpoint / "model_config.yaml", lora_r=8, lora_alpha=16, lora_query=True,
                                      lora_value=True)  # both sides' LoRA: what training_flops counts
    flops_per_token = training_flops(config, args.max_seq_length) / args.max_seq_length
    peak = peak_flops(args) if args.fill else None
    cpu = f"CPU, torch threads {torch.get_num_threads()}"
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else cpu
    full = " (every sequence full)" if args.fill else ""
    print(f"model: {checkpoint.name} ({sum_params(config) / 1e9:.2f}B parameters), {device}, {args.precision}, "
          f"micro-batch {args.micro_batch_size}, max_seq_length {args.max_seq_length}{full}, "
          f"steps {args.steps} (first {args.skip} left out), best of {args.rounds} alternating rounds")

    def line(name: str, measured: Measured, against: Measured | None = None) -> str:
        text = f"{name:34s}: {measured.tokens_per_s:10.1f} tokens/s"
        if peak:
            text += f", MFU {measured.tokens_per_s * flops_per_token / peak:.3f}"
        if measured.peak_mib is not None:
            text += f", peak memory {measured.peak_mib:9.1f} MiB"
        if against is not None:
            text += f" (speed {measured.tokens_per_s / against.tokens_per_s:.3f}x"
            if measured.peak_mib is not None:
                text += f", peak memory {measured.peak_mib / against.peak_mib:.3f}x"
            text += " of our LoRA)"
        return text

    print(line("litgpt finetune_lora", theirs))
    print(line("lightning-adapt LoRA", mine))
    print(f"ratio ours / litgpt  : {mine.tokens_per_s / theirs.tokens_per_s:8.3f}")
    for name, measured in variants.items():
        print(line(f"lightning-adapt {name}", measured, mine))
    if peak:
        print(f"MFU: {flops_per_token:.4g} training FLOPs per token (lightning_adapt.record.flops, LoRA r=8 on query/value) "
              f"over a dense peak of {peak / 1e12:.1f} TFLOP/s")


def sum_params(config: Config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(config).parameters())


if __name__ == "__main__":
    main()
