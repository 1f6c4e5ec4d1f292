"""Training throughput and memory: lightning-adapt's FineTuning + Lightning Trainer vs LitGPT's own `finetune_lora`
and `finetune_full`, in one run.

Both sides train the same checkpoint on the same instruction file with the same micro-batch, sequence length, LoRA
settings, prompt style, prompt masking, optimizer, schedule and precision. The default data is the demo's
sentiment fine-tuning (builtin:sentiment/train.jsonl as "Review: ...\nSentiment:" + " Positive", LitGPT's `default`
prompt style, micro-batch 8, sequence length 128, LoRA r=8 on query and value). Each run is its own process, so its
peak memory is its own: the process's peak resident memory on the CPU, CUDA's peak allocated memory on a GPU. Time per
step covers loading the batch, forward, backward and the optimizer step; the first `--skip` steps are left out. Tokens
are the non-padding tokens of the batches (prompt, response, end-of-sequence). The final loss is the mean training
loss of the last `--loss_window` steps.

    python benchmarks/train_throughput.py [--checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct]
    python benchmarks/train_throughput.py --methods lora --variants         # our batching, compile, QLoRA nf4, ...
    python benchmarks/train_throughput.py --model_name Llama-3.2-1B --accelerator cuda --fill --variants   # a GPU

Without a checkpoint folder it builds a random model offline: `--model_name` takes the shape from LitGPT's config of
that name (tiny tokenizer, the config's vocabulary), else a 6-layer llama-style model. `--fill` makes every answer
longer than `--max_seq_length` (cut there, no prompt masking, so every position has a label and every sequence that
many tokens): then model FLOPs utilisation (training FLOPs of `lightning_adapt.record.flops` per second over the
device's dense peak) is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty

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
LEARNING_RATE, WARMUP_STEPS = 0.001, 2  # cosine decay to 0, no gradient clipping (LitGPT's fine-tuning has none)
LORA = dict(r=8, alpha=16, dropout=0.05)  # on query and value, both sides


def instruction_file(folder: Path, fill: bool) -> Path:
    """The built-in sentiment reviews as the demo prompts them (the instruction holds the whole prompt, no input: the
    `default` prompt style reads no input); with `fill`, each answer 40 reviews (thousands of tokens), cut at
    max_seq_length."""
    reviews = [r.data for r in read_records("builtin:sentiment/train.jsonl")]
    if fill:
        rows = [{"instruction": "Write reviews.", "input": "",
                 "output": " ".join(r["text"] for r in reviews[i : i + 40])} for i in range(len(reviews) - 40)]
    else:
        rows = [{"instruction": f"Review: {r['text']}\nSentiment:", "input": "", "output": f" {r['label']}"}
                for r in reviews]
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


@dataclass
class Measured:
    tokens_per_s: float = 0.0
    peak_mib: float = 0.0
    """The run's peak memory: resident memory of its process on the CPU, CUDA's peak allocated memory on a GPU."""
    final_loss: float = float("nan")
    padding_share: float | None = None
    """Of the positions the model computed, the share that were padding (ours; LitGPT does not say)."""
    first_steps_s: float | None = None
    """Seconds of the warm-up steps left out (ours; compilation shows here)."""


@dataclass(frozen=True)
class Ours:
    """One configuration of our FineTuning."""

    lora: bool = True
    batching: str = "grouped"
    compile: bool = False
    quantize: str | None = None
    activation_checkpointing: bool = False


class StepClock(L.Callback):
    """Wall time, non-padding tokens, positions computed and loss of every optimizer step, from one step's end to the
    next."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.tokens: list[int] = []
        self.positions: list[int] = []
        self.losses: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._synchronize(pl_module)
        self.ends.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._synchronize(pl_module)
        self.ends.append(time.perf_counter())
        self.tokens.append(int(batch["token_counts"]["raw_plus_prompt_template"].sum()))
        self.positions.append(batch["input_ids"].numel())
        self.losses.append(float(outputs["loss"]))

    @staticmethod
    def _synchronize(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()


def peak_mib(cuda: bool) -> float:
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def ours(checkpoint: Path, data: Path, args: argparse.Namespace, out: Path, setup: Ours) -> Measured:
    """Train our FineTuning in this process (see `in_process`)."""
    L.seed_everything(1337)
    module = FineTuning(checkpoint, lora=LoRA(**LORA, targets=["query", "value"]) if setup.lora else None,
                        quantize=setup.quantize, max_seq_length=args.max_seq_length,
                        optimization=Optimization(learning_rate=LEARNING_RATE, warmup_steps=WARMUP_STEPS,
                                                  min_lr=0.0, gradient_clip_val=None),
                        activation_checkpointing=setup.activation_checkpointing, compile=setup.compile,
                        general_val=None, export=False)
    datamodule = Instructions(str(data), prompt_style="default", batch_size=args.micro_batch_size, val_fraction=0.05,
                              mask_prompt=not args.fill, batching=setup.batching)
    clock = StepClock()
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[clock], default_root_dir=out)
    cuda = trainer.strategy.root_device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    seconds = clock.ends[-1] - clock.ends[args.skip]
    tokens, positions = sum(clock.tokens[args.skip :]), sum(clock.positions[args.skip :])
    window = clock.losses[-args.loss_window :]
    return Measured(tokens / seconds, peak_mib(cuda), sum(window) / len(window), 1 - tokens / positions,
                    clock.ends[args.skip] - clock.ends[0])


def _child(queue, *arguments) -> None:
    queue.put(ours(*arguments))


def in_process(*arguments) -> Measured:
    """`ours(*arguments)` in a fresh process, so that its peak memory is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, *arguments))
    process.start()
    while True:
        try:
            measured = queue.get(timeout=5)
            break
        except Empty:
            if not process.is_alive():
                sys.exit(f"our run failed (exit code {process.exitcode}); its traceback is above")
    process.join()
    return measured


PEAK_MEMORY_WRAPPER = """
import resource, runpy, sys
peak_file, sys.argv = sys.argv[1], ["litgpt", *sys.argv[2:]]
try:
    runpy.run_module("litgpt", run_name="__main__")
finally:
    import torch
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    open(peak_file, "w").write(str(peak))
"""


def litgpt(method: str, checkpoint: Path, data: Path, args: argparse.Namespace, out: Path) -> Measured:
    """Run `litgpt finetune_lora` or `finetune_full` as users do, then read its per-iteration times, token counts and
    losses, and its process's peak memory."""
    lora = ["--lora_r", str(LORA["r"]), "--lora_alpha", str(LORA["alpha"]), "--lora_dropout", str(LORA["dropout"]),
            "--lora_query", "true", "--lora_value", "true"] if method == "lora" else []
    command = [
        f"finetune_{method}", str(checkpoint), "--out_dir", str(out),
        "--precision", args.precision, "--devices", "1", "--logger_name", "csv", *lora,
        "--data", "JSON", "--data.json_path", str(data), "--data.val_split_fraction", "0.05",
        "--data.mask_prompt", str(not args.fill).lower(), "--data.prompt_style", '{"class_path": "litgpt.prompts.Default"}', "--data.num_workers", "0",
        "--optimizer", json.dumps({"class_path": "torch.optim.AdamW",
                                   "init_args": {"lr": LEARNING_RATE, "weight_decay": 0.0}}),
        "--train.save_interval", "1000000", "--train.log_interval", "1", "--train.lr_warmup_steps", str(WARMUP_STEPS),
        "--train.global_batch_size", str(args.micro_batch_size), "--train.micro_batch_size", str(args.micro_batch_size),
        "--train.max_steps", str(args.steps), "--train.epochs", "100", "--train.max_seq_length", str(args.max_seq_length),
        "--eval.interval", "1000000", "--eval.max_new_tokens", "1", "--eval.max_iters", "1",
        "--eval.initial_validation", "false", "--eval.final_validation", "false",
    ]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if args.accelerator == "cpu" else None
    peak_file = out.parent / f"{out.name}.peak"
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY_WRAPPER, str(peak_file), *command], capture_output=True,
                          text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"litgpt finetune_{method} failed (exit code {done.returncode}):\n{done.stderr[-3000:]}")
    with open(next(out.rglob("metrics.csv"))) as fp:
        rows = [r for r in csv.DictReader(fp) if r.get("iter_time")]
    measured = rows[args.skip :]
    tokens = float(measured[-1]["tokens"]) - float(rows[args.skip - 1]["tokens"])
    losses = [float(r["loss"]) for r in rows[-args.loss_window :]]
    return Measured(tokens / sum(float(r["iter_time"]) for r in measured), float(peak_file.read_text()),
                    sum(losses) / len(losses))


# Dense bf16 peaks (NVIDIA's datasheets; Lightning's table lists the sparse ones, twice these).
DENSE_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def peak_flops(args: argparse.Namespace) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.accelerator == "cuda" and args.precision.startswith("bf16"):
        name = torch.cuda.get_device_name()
        return next((tflops * 1e12 for key, tflops in DENSE_BF16_TFLOPS.items() if key in name), None)
    return None


def best(runs: list[Measured]) -> Measured:
    return max(runs, key=lambda measured: measured.tokens_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--model_name", help="random weights in the shape of this LitGPT config (e.g. Llama-3.2-1B)")
    parser.add_argument("--accelerator", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", help="both sides' precision (default: bf16-true on CUDA, 32-true on the CPU)")
    parser.add_argument("--methods", nargs="+", choices=("lora", "full"), default=["lora", "full"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the measurement")
    parser.add_argument("--loss_window", type=int, default=10, help="the final loss: the mean of this many last steps")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each side; the fastest counts")
    parser.add_argument("--micro_batch_size", type=int, default=8)
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="the demo's 128 fits SmolLM2's tokenization; the random model's tiny tokenizer needs 256")
    parser.add_argument("--fill", action="store_true", help="every sequence max_seq_length tokens long (and MFU)")
    parser.add_argument("--variants", action="store_true",
                        help="also our LoRA with random batches (before length grouping), packed batches, compile, "
                             "QLoRA nf4 and activation checkpointing, each against our LoRA")
    parser.add_argument("--peak_tflops", type=float, help="the device's dense peak for MFU (default: known GPUs)")
    args = parser.parse_args()
    args.precision = args.precision or ("bf16-true" if args.accelerator == "cuda" else "32-true")
    results: dict[str, tuple[Measured, Measured]] = {}
    variants: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        named = args.model_name or not args.checkpoint_dir.is_dir()
        checkpoint = random_checkpoint(tmp, args.model_name, args.accelerator) if named else args.checkpoint_dir
        data = instruction_file(tmp, args.fill)
        for method in args.methods:
            theirs, mine = [], []
            for round_ in range(args.rounds):
                theirs.append(litgpt(method, checkpoint, data, args, tmp / f"litgpt-{method}{round_}"))
                mine.append(in_process(checkpoint, data, args, tmp / f"ours-{method}{round_}", Ours(lora=method == "lora")))
            results[method] = best(theirs), best(mine)
        if args.variants:
            for name, setup in {
                "LoRA, random batches": Ours(batching="random"),
                "LoRA, packed batches": Ours(batching="packed"),
                "LoRA, compile": Ours(compile=True),
                "QLoRA nf4": Ours(quantize="nf4"),
                "LoRA + activation checkpointing": Ours(activation_checkpointing=True),
            }.items():
                variants[name] = in_process(checkpoint, data, args, tmp / name.replace(" ", "-"), setup)
        configs = {  # what training_flops counts for MFU: every weight trains, or LoRA's adapters
            "full": Config.from_file(checkpoint / "model_config.yaml"),
            "lora": LoRAConfig.from_file(checkpoint / "model_config.yaml", lora_r=LORA["r"], lora_alpha=LORA["alpha"],
                                         lora_query=True, lora_value=True),
        }
    report(args, checkpoint, configs, results, variants)


def report(args: argparse.Namespace, checkpoint: Path, configs: dict[str, Config],
           results: dict[str, tuple[Measured, Measured]], variants: dict[str, Measured]) -> None:
    peak = peak_flops(args) if args.fill else None
    cpu = f"CPU, torch threads {torch.get_num_threads()}"
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else cpu
    memory = "CUDA peak allocated" if args.accelerator == "cuda" else "peak resident memory of the process"
    print(f"model: {checkpoint.name} ({sum_params(configs['full']) / 1e9:.2f}B parameters), {device}, {args.precision}, "
          f"micro-batch {args.micro_batch_size}, max_seq_length {args.max_seq_length}"
          f"{' (every sequence full)' if args.fill else ''}, steps {args.steps} (first {args.skip} left out), "
          f"final loss: mean of the last {args.loss_window} steps, fastest of {args.rounds} alternating rounds, "
          f"memory: {memory}")

    def line(name: str, measured: Measured, config: Config) -> str:
        text = f"{name:44s}: {measured.tokens_per_s:9.1f} tokens/s, peak {measured.peak_mib:8.0f} MiB, " \
               f"final loss {measured.final_loss:.4f}"
        if measured.padding_share is not None:
            text += f", padding {measured.padding_share:.1%}"
        if peak:
            flops_per_token = training_flops(config, args.max_seq_length) / args.max_seq_length
            text += f", MFU {measured.tokens_per_s * flops_per_token / peak:.3f}"
        return text

    for method, (theirs, mine) in results.items():
        print(line(f"litgpt finetune_{method}", theirs, configs[method]))
        print(line(f"lightning-adapt {method}", mine, configs[method]))
        print(f"ratio ours / litgpt ({method}): speed {mine.tokens_per_s / theirs.tokens_per_s:.3f}x, peak memory "
              f"{mine.peak_mib / theirs.peak_mib:.3f}x, final loss {mine.final_loss / theirs.final_loss:.3f}x")
    lora = results.get("lora", (None, None))[1]
    for name, measured in variants.items():
        text = line(f"lightning-adapt {name}", measured, configs["lora"])
        if lora is not None:
            adjusted = (measured.tokens_per_s / measured.peak_mib) / (lora.tokens_per_s / lora.peak_mib)
            text += (f" (speed {measured.tokens_per_s / lora.tokens_per_s:.3f}x, peak memory "
                     f"{measured.peak_mib / lora.peak_mib:.3f}x, tokens/s per MiB {adjusted:.3f}x of our LoRA)")
        text += f"; first {args.skip} steps {measured.first_steps_s:.1f} s"
        print(text)


def sum_params(config: Config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in GPT(config).parameters())


if __name__ == "__main__":
    main()
