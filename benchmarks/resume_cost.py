"""What resuming costs: seconds from a restored loader state to the first batch after it, at an early and a late
resume point, for `Instructions` (map-style: trained batches are passed over as indices; baseline: the same data in
a loader that reads and drops them), `TextCorpus` in memory (the start is found by arithmetic) and streaming (each
stream starts from the cursor saved with the state and re-reads at most one shuffle window; baseline: the same
state without its cursors, so the stream up to the resume point is produced again and dropped).

    python benchmarks/resume_cost.py [--early 10] [--late 410]

Each state is the one an uninterrupted loader reports after that many batches. Prints, per data module, both times
(best of 5) and their ratio late / early (1.0: the cost does not grow with the step). The streaming corpus shuffles
in windows of 100 blocks (4 per batch): the default points lie at the same place in their windows (block 40 of
window 0 and of window 16), so the ratio shows growth with the step alone.
Runs on a tiny tokenizer made offline; the data are synthetic.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from litgpt import Tokenizer

from lightning_adapt import Instructions, TextCorpus
from lightning_adapt.data.resumable import ResumableDataLoader
from lightning_adapt.testing import make_tiny_checkpoint


def saved_state(make_loader, batches: int) -> dict:
    """The state an uninterrupted loader reports once a Trainer has trained its first `batches` batches."""
    loader = make_loader()
    trained = 0
    loader.trained_batches = lambda: trained
    for trained, _ in enumerate(loader, start=1):
        if trained == batches:
            return loader.state_dict()
    raise ValueError(f"the loader has fewer than {batches} batches")


def first_batch_seconds(make_loader, state: dict, repeats: int = 5) -> float:
    """Best of `repeats`: a fresh loader each time, `state` restored, timed to its first batch."""
    times = []
    for _ in range(repeats):
        loader = make_loader()
        loader.load_state_dict(state)
        start = time.perf_counter()
        next(iter(loader))
        times.append(time.perf_counter() - start)
    return min(times)


def instructions_loader(path: Path, tokenizer: Tokenizer):
    def make():
        data = Instructions(str(path), batch_size=4, val_fraction=0.01)
        data.connect(tokenizer=tokenizer, max_seq_length=64)
        data.setup()
        return data.train_dataloader()

    return make


def instructions_reading_loader(path: Path, tokenizer: Tokenizer):
    """The baseline: the same data in a loader whose sampler cannot skip, so trained batches are read and dropped."""

    def make():
        data = Instructions(str(path), batch_size=4, val_fraction=0.01)
        data.connect(tokenizer=tokenizer, max_seq_length=64)
        data.setup()
        return ResumableDataLoader(data.train_dataset, batch_size=4, shuffle=True,
                                   generator=torch.Generator().manual_seed(0), collate_fn=data.collate,
                                   trained_batches=lambda: 0)

    return make


def corpus_loader(folder: Path, tokenizer: Tokenizer, streaming: bool):
    def make():
        data = TextCorpus(str(folder), batch_size=4, val_fraction=0.01, streaming=streaming, shuffle_buffer=100)
        data.connect(tokenizer=tokenizer, max_seq_length=64)
        data.setup()
        return data.train_dataloader()

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--early", type=int, default=10, help="Early resume point (trained batches).")
    parser.add_argument("--late", type=int, default=410, help="Late resume point (trained batches).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer = Tokenizer(make_tiny_checkpoint(root / "tiny"))
        n = 8 * args.late
        rows = [{"instruction": f"Name the colour of item {i} in the catalogue of the shop.", "output": f"colour {i % 7}"}
                for i in range(n)]
        (root / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
        (root / "corpus").mkdir()
        for i in range(n // 8):
            (root / "corpus" / f"doc{i}.txt").write_text(f"Record {i}: the river Vell runs past Wrenmouth. " * 40)
        streaming = corpus_loader(root / "corpus", tokenizer, streaming=True)
        cases = {
            "Instructions, read and drop": (instructions_reading_loader(root / "train.jsonl", tokenizer), False),
            "Instructions": (instructions_loader(root / "train.jsonl", tokenizer), False),
            "TextCorpus (in memory)": (corpus_loader(root / "corpus", tokenizer, streaming=False), False),
            "TextCorpus (streaming), no cursors": (streaming, True),
            "TextCorpus (streaming)": (streaming, False),
        }
        print(f"seconds to the first batch after resuming at batch {args.early} / {args.late}:")
        for name, (make, drop_cursors) in cases.items():
            early, late = (saved_state(make, batches) for batches in (args.early, args.late))
            if drop_cursors:
                early, late = {**early, "streams": {}}, {**late, "streams": {}}
            early, late = first_batch_seconds(make, early), first_batch_seconds(make, late)
            print(f"  {name:36s} {early:8.4f} s  {late:8.4f} s  late/early {late / early:6.2f}")


if __name__ == "__main__":
    main()
