"""What `activation_checkpointing=True` saves in memory and costs in speed: full fine-tuning and LoRA of a random
8-layer llama-style model (no download), each trained with and without checkpointing for the same steps on the same
blocks, with a real Lightning Trainer.

    python benchmarks/activation_checkpointing.py [--steps 6] [--batch_size 8] [--seq_length 512] [--threads N]

Every configuration runs in a fresh subprocess, so each peak is its own. On the CPU the memory is the process's RSS:
`before` is read when training starts (after the model is built and its weights read once, so the memory-mapped
weights are already resident), `peak` is `ru_maxrss` after the last step, and `peak - before` is what training
added: activations, plus gradients and AdamW state of the trainable weights (the same with and without
checkpointing; printed as `state`, and taken off in the `activations only` ratio). On CUDA (the default when it is
available, or `--accelerator cuda`) the same is measured with `torch.cuda.memory_allocated` /
`max_memory_allocated`. Tokens/s count the tokens of the steps after the first (its time includes one-off work:
allocation, the optimizer state), each step timed from `on_train_batch_start` to `on_train_batch_end` (forward,
backward, optimizer step; data loading left out); the fastest of those steps is printed too ("best step"), which
other load on a shared machine disturbs less. The ratios compare checkpointing against the run without it,
measured in this same invocation; the per-step losses of the two must agree within `--tolerance`.

The data is a synthetic text folder read by `TextCorpus`, so every sequence is a full block of `--seq_length` tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("full", "lora")


def write_corpus(folder: Path, documents: int = 200, seed: int = 0) -> None:
    """Documents of a few hundred words made of random syllables (the tiny tokenizer splits them into many tokens)."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tor", "sa", "vel", "qu", "an", "est", "ol", "dri", "ne", "pha", "us", "ix"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(2000)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(documents):
        text = " ".join(rng.choices(words, k=rng.randint(300, 600))).capitalize() + ".\n"
        (folder / f"doc{i:04d}.txt").write_text(text)


def bench_checkpoint(folder: Path, args: argparse.Namespace) -> Path:
    from lightning_adapt.testing import make_tiny_checkpoint, tiny_config

    config = tiny_config(name="bench-llama", block_size=max(512, args.seq_length), n_layer=args.n_layer,
                         n_embd=args.n_embd, n_head=args.n_head, n_query_groups=args.n_head,
                         intermediate_size=4 * args.n_embd)
    return make_tiny_checkpoint(folder / "bench-llama", config=config)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def train(method: str, checkpointing: bool, checkpoint: Path, corpus: Path, args: argparse.Namespace) -> dict:
    """Run in a fresh process: `args.steps` steps of `method`; memory before / at peak, step times, losses."""
    import lightning as L
    import torch

    from lightning_adapt import FineTuning, LoRA, Optimization, TextCorpus
    from lightning_adapt.record.runs import input_tokens

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.accelerator == "cuda"
    record: dict = {"starts": [], "ends": [], "tokens": [], "losses": []}

    class Meter(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            with torch.no_grad():  # read every weight once: memory-mapped pages become resident before `before`
                for parameter in pl_module.parameters():
                    parameter.sum()
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                record["before_mb"] = torch.cuda.memory_allocated() / 2**20
            else:
                record["before_mb"] = rss_mb()
                record["peak_before_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            trainable = sum(p.numel() * p.element_size() for p in pl_module.parameters() if p.requires_grad)
            record["state_mb"] = 3 * trainable / 2**20  # gradient + AdamW's two moments

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if cuda:
                torch.cuda.synchronize()
            record["starts"].append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if cuda:
                torch.cuda.synchronize()
            record["ends"].append(time.perf_counter())
            record["tokens"].append(input_tokens(batch))
            record["losses"].append(float(outputs["loss"]))

    L.seed_everything(args.seed)
    lora = LoRA(r=8, alpha=16, dropout=0.05, targets=["query", "value"]) if method == "lora" else None
    module = FineTuning(checkpoint, lora=lora, optimization=Optimization(learning_rate=1e-4, warmup_steps=2),
                        max_seq_length=args.seq_length, general_val=None, export=False,
                        activation_checkpointing=checkpointing)
    data = TextCorpus(str(corpus), block_size=args.seq_length, batch_size=args.batch_size, val_fraction=0.02)
    with tempfile.TemporaryDirectory() as out:
        trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.steps,
                            limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[Meter()], default_root_dir=out)
        trainer.fit(module, datamodule=data)
    if cuda:
        record["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        record["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["threads"] = torch.get_num_threads()
    return record


def measure(method: str, checkpointing: bool, checkpoint: Path, corpus: Path, argv: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *argv, "--_run", method, str(int(checkpointing)), str(checkpoint), str(corpus)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        sys.exit(f"{method} (activation_checkpointing={checkpointing}) failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_seconds(r: dict) -> list[float]:
    return [end - start for start, end in zip(r["starts"], r["ends"])]


def tokens_per_second(r: dict) -> float:
    """Tokens over time of the steps after the first."""
    return sum(r["tokens"][1:]) / sum(step_seconds(r)[1:])


def best_step_tokens_per_second(r: dict) -> float:
    """Tokens/s of the fastest step after the first: less sensitive to other load on the machine."""
    return max(tokens / seconds for tokens, seconds in zip(r["tokens"][1:], step_seconds(r)[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per configuration (at least 2)")
    parser.add_argument("--batch_size", type=int, default=8, help="micro-batch (sequences per step)")
    parser.add_argument("--seq_length", type=int, default=512, help="tokens the model reads per sequence")
    parser.add_argument("--n_layer", type=int, default=8)
    parser.add_argument("--n_embd", type=int, default=256, help="width (the MLP is 4x as wide)")
    parser.add_argument("--n_head", type=int, default=8, help="attention heads (as many key/value groups)")
    parser.add_argument("--accelerator", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when available, else cpu")
    parser.add_argument("--precision", default="32-true", help="Trainer precision")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed loss difference")
    parser.add_argument("--_run", nargs=4, metavar=("METHOD", "CKPT", "CHECKPOINT", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is left out of the timing)")
    if args.accelerator == "auto":
        import torch

        args.accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if args._run:
        method, checkpointing, checkpoint, corpus = args._run
        print(json.dumps(train(method, checkpointing == "1", Path(checkpoint), Path(corpus), args)))
        return

    argv = sys.argv[1:] + ["--accelerator", args.accelerator]
    unit = "CUDA allocated" if args.accelerator == "cuda" else "RSS"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = bench_checkpoint(tmp, args)
        write_corpus(tmp / "corpus")
        rows = []
        began = time.perf_counter()
        for method in args.methods:
            plain, recomputed = (measure(method, flag, checkpoint, tmp / "corpus", argv) for flag in (False, True))
            rows.append((method, plain, recomputed))
        seconds = time.perf_counter() - began

    print(f"bench-llama: {args.n_layer} layers, {args.n_embd} wide, {args.n_head} heads, MLP {4 * args.n_embd}; "
          f"micro-batch {args.batch_size} x {args.seq_length} tokens, {args.steps} steps (first left out of the "
          f"timing), {args.accelerator}, {args.precision}, {rows[0][1]['threads']} torch threads; "
          f"memory: {unit} in MB ({seconds:.0f} s in all)")
    failed = False
    table = []
    for method, plain, recomputed in rows:
        name = {"full": "full FT", "lora": "LoRA"}[method]
        diff = max(abs(a - b) for a, b in zip(plain["losses"], recomputed["losses"]))
        same = diff <= args.tolerance and len(plain["losses"]) == len(recomputed["losses"])
        failed |= not same
        print(f"{name}:")
        for label, r in (("no checkpointing", plain), ("checkpointing", recomputed)):
            extra = f" (peak before training {r['peak_before_mb']:.0f})" if "peak_before_mb" in r else ""
            print(f"  {label:17s} before {r['before_mb']:7.1f}  peak {r['peak_mb']:7.1f}  peak-before "
                  f"{r['peak_mb'] - r['before_mb']:7.1f}  state {r['state_mb']:6.1f}  "
                  f"{tokens_per_second(r):8.1f} tokens/s{extra}")
            print(f"  {'':17s} losses {' '.join(f'{loss:.6f}' for loss in r['losses'])}")
            print(f"  {'':17s} step s {' '.join(f'{t:.3f}' for t in step_seconds(r))}  (best step "
                  f"{best_step_tokens_per_second(r):.1f} tokens/s)")
        added = [r["peak_mb"] - r["before_mb"] for r in (plain, recomputed)]
        activations = [a - r["state_mb"] for a, r in zip(added, (plain, recomputed))]
        memory_ratio, activation_ratio = added[1] / added[0], activations[1] / activations[0]
        speed_ratio = tokens_per_second(recomputed) / tokens_per_second(plain)
        best_ratio = best_step_tokens_per_second(recomputed) / best_step_tokens_per_second(plain)
        print(f"  => {name}: memory added by training {added[0]:.0f} -> {added[1]:.0f} MB (ratio {memory_ratio:.3f}, "
              f"{1 / memory_ratio:.1f}x less), activations only {activations[0]:.0f} -> {activations[1]:.0f} MB "
              f"(ratio {activation_ratio:.3f}), tokens/s ratio {speed_ratio:.3f} "
              f"(best step {best_ratio:.3f}), "
              f"losses {'equal' if same else 'DIFFER'} (max |diff| {diff:.2e}, tolerance {args.tolerance:g})")
        table.append(f"| {name} | {added[0]:.0f} MB | {added[1]:.0f} MB | {memory_ratio:.2f} | "
                     f"{tokens_per_second(plain):.0f} | {tokens_per_second(recomputed):.0f} | {speed_ratio:.2f} | "
                     f"{best_ratio:.2f} |")
    print(f"\n| method | {unit} added, no checkpointing | with checkpointing | ratio | tokens/s | "
          f"tokens/s, checkpointing | ratio | ratio, best step |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    if failed:
        sys.exit("activation checkpointing changed the losses")


if __name__ == "__main__":
    main()
