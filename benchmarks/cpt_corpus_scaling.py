"""Continual-pretraining data pipeline: peak memory on a 10 MB vs a 1 GB corpus (streaming), its tokens/s, and the
throughput of a ContinualPretraining step against a FineTuning step of the same shape.

    python benchmarks/cpt_corpus_scaling.py [--sizes_mb 10 1000] [--max_blocks 4000]

Each corpus size is generated into a temporary folder (files of 4 MB of varied paragraphs) and measured in a fresh
subprocess, so each peak RSS is that size's own. In the subprocess: (1) one streaming pass of the document reader
over every file of the corpus (decoding, line and document splitting: the file-level structure, whole), then (2) the
full streaming pipeline of `TextCorpus(streaming=True)` (read, tokenize with the model tokenizer, pack, shuffle
buffer, collate) for the first `--max_blocks` training blocks only: tokenizing a whole gigabyte with a pure CPU
tokenizer would take most of an hour here. Both parts are printed as what they are.

The step comparison trains a random 6-layer llama-style model (no download) on identical TextCorpus batches, once
as ContinualPretraining and once as FineTuning (full-parameter, same optimizer settings), best of alternating rounds.
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
from dataclasses import replace
from pathlib import Path

FILE_BYTES = 4 << 20


def write_corpus(folder: Path, size_bytes: int, seed: int = 0) -> int:
    """Files of FILE_BYTES of paragraphs drawn from a pool of 2,000 random paragraphs; returns the bytes written."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tor", "sa", "vel", "qu", "an", "est", "ol", "dri", "ne", "pha", "us", "ix"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(3000)]
    pool = [
        " ".join(rng.choices(words, k=rng.randint(40, 160))).capitalize() + ".\n\n" for _ in range(2000)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    written, index = 0, 0
    while written < size_bytes:
        target = min(FILE_BYTES, size_bytes - written)
        parts, size = [], 0
        while size < target:
            paragraph = pool[rng.randrange(len(pool))]
            parts.append(paragraph)
            size += len(paragraph)
        (folder / f"part_{index:05d}.txt").write_text("".join(parts))
        written, index = written + size, index + 1
    return written


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def pipeline(corpus: Path, tokenizer_dir: Path, max_blocks: int, block_size: int) -> dict:
    """Run in a fresh process: the reader over everything, then the tokenizing pipeline for max_blocks blocks."""
    from lightning_adapt import TextCorpus
    from lightning_adapt.data.documents import read_documents
    from lightning_adapt.model.loading import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    start_rss = rss_mb()

    began = time.perf_counter()
    chars = documents = 0
    for piece in read_documents(str(corpus)):
        chars += len(piece.text)
        documents += piece.last
    read_seconds = time.perf_counter() - began

    data = TextCorpus(str(corpus), streaming=True, block_size=block_size, val_fraction=0.01, batch_size=8)
    data.connect(tokenizer, max_seq_length=block_size)
    data.setup()
    began = time.perf_counter()
    blocks = tokens = 0
    for batch in data.train_dataloader():
        blocks += len(batch["input_ids"])
        tokens += int(batch["token_counts"]["raw_plus_prompt_template"].sum())
        if blocks >= max_blocks:
            break
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"start_rss_mb": start_rss, "peak_rss_mb": peak, "read_chars": chars, "documents": documents,
            "read_seconds": read_seconds, "blocks": blocks, "tokens": tokens, "seconds": seconds}


def bench_checkpoint(folder: Path) -> Path:
    import torch
    from litgpt import GPT
    from litgpt.utils import save_config

    from lightning_adapt.testing import make_tiny_checkpoint, tiny_config

    checkpoint = make_tiny_checkpoint(folder / "bench-llama")
    config = replace(tiny_config(), name="bench-llama", block_size=512, n_layer=6, n_embd=384, n_head=6,
                     n_query_groups=2, intermediate_size=1024)
    torch.save(GPT(config).state_dict(), checkpoint / "lit_model.pth")
    save_config(config, checkpoint)
    return checkpoint


def step_throughput(method: str, checkpoint: Path, corpus: Path, args: argparse.Namespace) -> float:
    """Training tokens/s of `method` over steps skip..steps, on TextCorpus blocks of seq_length + 1 tokens."""
    import lightning as L

    from lightning_adapt import ContinualPretraining, FineTuning, Optimization, TextCorpus
    from lightning_adapt.record.runs import input_tokens

    ends: list[float] = []
    tokens: list[int] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            ends.append(time.perf_counter())
            tokens.append(input_tokens(batch))

    L.seed_everything(0)
    module_class = {"cpt": ContinualPretraining, "finetune": FineTuning}[method]
    optimization = Optimization(learning_rate=1e-4, min_lr=1e-5, weight_decay=0.1, warmup_steps=2)
    module = module_class(checkpoint, optimization=optimization,
                          max_seq_length=args.seq_length, general_val=None, export=False)
    data = TextCorpus(str(corpus), block_size=args.seq_length, batch_size=args.batch_size, streaming=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_steps=args.steps, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[Clock()])
    trainer.fit(module, datamodule=data)
    return sum(tokens[args.skip + 1 :]) / (ends[-1] - ends[args.skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes_mb", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--max_blocks", type=int, default=12000, help="tokenized blocks per size (see the docstring)")
    parser.add_argument("--block_size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=3, help="warm-up steps left out of the step measurement")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seq_length", type=int, default=256)
    parser.add_argument("--_pipeline", nargs=2, metavar=("CORPUS", "TOKENIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._pipeline:
        print(json.dumps(pipeline(Path(args._pipeline[0]), Path(args._pipeline[1]), args.max_blocks, args.block_size)))
        return

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = bench_checkpoint(tmp)
        results = {}
        for size in args.sizes_mb:
            folder = tmp / f"corpus_{size}mb"
            began = time.perf_counter()
            written = write_corpus(folder, size * 10**6)
            generated = time.perf_counter() - began
            out = subprocess.run(
                [sys.executable, __file__, "--_pipeline", str(folder), str(checkpoint), "--max_blocks",
                 str(args.max_blocks), "--block_size", str(args.block_size)],
                check=True, capture_output=True, text=True,
            )
            results[size] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[size]
            print(f"{size:>5} MB corpus ({written / 1e6:.0f} MB in {len(list(folder.iterdir()))} files, generated in "
                  f"{generated:.1f} s)")
            print(f"      reader, whole corpus : {r['read_chars'] / 1e6:8.1f} M chars, {r['documents']} documents, "
                  f"{r['read_chars'] / 1e6 / r['read_seconds']:.1f} M chars/s")
            print(f"      pipeline (first {r['blocks']} blocks of {args.block_size + 1}): {r['tokens'] / r['seconds']:,.0f}"
                  f" tokens/s ({r['tokens']:,} tokens in {r['seconds']:.1f} s)")
            print(f"      RSS after imports {r['start_rss_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB")
            if size != args.sizes_mb[-1]:
                for path in folder.iterdir():
                    path.unlink()
        small, large = results[args.sizes_mb[0]], results[args.sizes_mb[-1]]
        growth = large["peak_rss_mb"] - small["peak_rss_mb"]
        print(f"peak RSS growth {args.sizes_mb[0]} MB -> {args.sizes_mb[-1]} MB corpus: {growth:+.1f} MB "
              f"({'<' if growth < 100 else '>='} 100 MB)")

        torch.set_num_threads(1)
        corpus = tmp / f"corpus_{args.sizes_mb[-1]}mb"
        best = {"cpt": 0.0, "finetune": 0.0}
        for round_ in range(args.rounds):  # alternate which method goes first: the second run of a pair is slower
            for method in ("cpt", "finetune") if round_ % 2 == 0 else ("finetune", "cpt"):
                best[method] = max(best[method], step_throughput(method, checkpoint, corpus, args))
        print(f"steps: bench-llama (6 layers, 384 wide), batch {args.batch_size} x {args.seq_length + 1} tokens, "
              f"{args.steps} steps (first {args.skip} left out), best of {args.rounds} alternating rounds, 1 torch thread")
        print(f"ContinualPretraining : {best['cpt']:8.1f} tokens/s")
        print(f"FineTuning           : {best['finetune']:8.1f} tokens/s")
        print(f"ratio CPT / FT       : {best['cpt'] / best['finetune']:8.3f}")


if __name__ == "__main__":
    main()
