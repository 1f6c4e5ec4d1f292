"""ICL evaluation without training: a LitGPT checkpoint folder in, a results table out."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_adapt.icl.keys import COSTS_LOGGED
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.runner import ICLRunner, with_overrides
from lightning_adapt.icl.scoring import BATCH_SIZE
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.model.loading import load_config, load_model, load_tokenizer, resolve_checkpoint_dir


def evaluate_checkpoint(
    checkpoint_dir: Path,
    tasks: list[TaskSpec],
    shots: list[int] | None = None,
    seeds: list[int] | None = None,
    batch_size: int = BATCH_SIZE,
    device: str = "cpu",
    dtype: str = "float32",
    progress: bool = True,
    add_bos: bool | None = None,
    top_k: list[int] | None = None,
) -> ICLResults:
    """Score ``tasks`` on the checkpoint's weights with the same code path as ``ICLEvaluation``.

    Args:
        checkpoint_dir: A LitGPT checkpoint folder (``lit_model.pth``, ``model_config.yaml``, tokenizer files).
        tasks: The tasks to evaluate: ``ICLTask``s and lm-eval tasks (``LMEvalTask``, an item with ``task:``).
        shots: Overrides every task's ``shots``.
        seeds: Overrides every task's ``seeds``.
        batch_size: Sequences per forward pass.
        device: Where the model runs (``cpu``, ``cuda``, ``cuda:1``...).
        dtype: The model's weight dtype (``float32``, ``bfloat16``, ``float16``).
        progress: Show a progress bar per task (requests scored).
        add_bos: Overrides every task's ``add_bos`` (None: each task's own; by default the model's Hugging Face
            tokenizer rule, as lm-evaluation-harness).
        top_k: Overrides the ``context.top_k`` (numbers of retrieved documents in the prompt) of every task with a
            ``context``.
    """
    checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
    runner = ICLRunner(with_overrides(tasks, shots, seeds, add_bos, top_k))  # data errors before the model loads
    tokenizer = load_tokenizer(checkpoint_dir)
    config = load_config(checkpoint_dir)
    runner.prepare(tokenizer, config.block_size)
    model = load_model(checkpoint_dir, config, device=device, dtype=getattr(torch, dtype))
    return runner.run(model, tokenizer, batch_size, progress=progress)


def format_table(results: ICLResults) -> str:
    """A plain-text table per task: one row per k (and number of retrieved documents, for a task with a context),
    ``mean ± std`` over seeds for each metric."""
    blocks = []
    for task in dict.fromkeys(row["task"] for row in results.summary()):
        rows = [row for row in results.summary() if row["task"] == task]
        names = sorted(dict.fromkeys(name for row in rows for name in row["metrics"]), key=lambda n: n in COSTS_LOGGED)
        documents = any(row["docs"] for row in rows)
        header = ["k", *(["docs"] if documents else []), *names]
        lines = [
            [str(row["k"]), *([str(row["docs"])] if documents else []),
             *(_cell(name, *row["metrics"][name]) if name in row["metrics"] else "-" for name in names)]
            for row in rows
        ]
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
        seconds = f", {results.seconds[task]:.1f} s" if task in results.seconds else ""
        text = [f"{task} ({rows[0]['seeds']} seed(s){seconds})"]
        text += [" | ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in [header, *lines]]
        text.insert(2, "-+-".join("-" * w for w in widths))
        blocks.append("\n".join(text))
    return "\n\n".join(blocks)


def _cell(name: str, mean: float, std: float) -> str:
    if name in COSTS_LOGGED:
        return f"{mean:.1f}"
    return f"{mean:.3f} ± {std:.3f}"
