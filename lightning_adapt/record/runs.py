"""The run record: what a report needs to know about a run besides its metrics (`accounting.json`), and the CSV
logger whose `metrics.csv` sits next to it."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from litgpt import Config

from lightning_adapt.core.atomic import atomic_write_text
from lightning_adapt.techniques.base import base_config

# --- the metric keys of the run record (written by `Accounting`, read by the report) ------------------------------

TRAIN_TOKENS = "train/tokens"
"""Training tokens seen so far, over all processes: `input_tokens` of every training batch."""
TRAIN_EXAMPLES = "train/examples"
"""Training examples seen so far (fine-tuning), over all processes."""
PADDING_SHARE = "train/padding_share"
"""Of the positions the training steps so far computed (`batch_shape`, over all processes), the share that were not
training tokens (`input_tokens`): padding, and in packed rows each example's last token, which only ends it."""
TRAIN_FLOPS = "flops/train"
"""Training FLOPs so far (`lightning_adapt.record.flops` over the real micro-batch shapes), over all processes."""
WALL_S = "time/wall_s"
"""Seconds since the Trainer set the run up (plus those of the run it resumes)."""
TRAIN_S = "time/train_s"
"""Seconds spent in training steps (evaluations left out)."""
EVAL_S = "time/eval_s"
"""Seconds spent evaluating: from fit start to the first training step (the sanity check, the step-0 evaluations) and
from the start of every validation to the next training step (validation losses, ICL and general-text scoring, and
what else runs there, e.g. checkpoints); a run that trains nothing: its whole evaluation. What `WALL_S` holds beyond
setup, `TRAIN_S` and `EVAL_S` is the Trainer's own work between steps (data loading, logging)."""
FIRST_RESULT_S = "time/first_result_s"
"""`WALL_S` when the first evaluation during training had its result."""
TOKENS_PER_S = "throughput/tokens_per_s"
"""`tokens_per_second` of the optimizer step: its `TRAIN_TOKENS` over its seconds of training steps."""
PEAK_MEMORY = "memory/peak_bytes"
"""Peak memory, the most of any process: CUDA memory allocated, or resident memory on CPU."""
MODEL_MEMORY = "memory/model_bytes"
"""Bytes the model's weights hold in this process (quantized where they are)."""
PARAMS_PREFIX = "params/"
PARAMS_TRAINABLE = PARAMS_PREFIX + "trainable"
PARAMS_TOTAL = PARAMS_PREFIX + "total"
PARAMS_CHANGED_BYTES = PARAMS_PREFIX + "changed_bytes"
"""Parameters trained, parameters of the model, and the bytes of the parameters training changes."""



def batch_tokens(batch: Any) -> torch.Tensor:
    """A training batch's token ids: its ``input_ids``, the batch itself, or its first tensor (a TensorDataset's)."""
    if isinstance(batch, dict):
        return batch["input_ids"]
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def input_tokens(batch: Any) -> int:
    """The training tokens of a batch, the one definition every count of tokens uses (`TRAIN_TOKENS`, tokens/s, the
    estimate's tokens per step): the tokens the model reads as inputs, padding excluded. A row of n real tokens (its
    ``token_counts["raw_plus_prompt_template"]`` where the batch has LitGPT's counts: a fine-tuning example's prompt,
    response and end-of-sequence token, a CPT block's text; else the whole row) is read as n - 1 inputs, its last
    token being only a target. FLOPs, by contrast, count every position the model computes, padding included."""
    ids = batch_tokens(batch)
    counts = batch.get("token_counts", {}).get("raw_plus_prompt_template") if isinstance(batch, dict) else None
    lengths = torch.full((len(ids),), ids.shape[1]) if counts is None else torch.as_tensor(counts).reshape(-1)
    return int((lengths - 1).clamp(min=0).sum())


def tokens_per_second(tokens: float, seconds: float) -> float | None:
    """Training tokens per second of training steps (evaluations left out); None without any such second. Accounting
    logs it per optimizer step (`TOKENS_PER_S`), the report over the whole run (`TRAIN_TOKENS` / `TRAIN_S`)."""
    return tokens / seconds if seconds > 0 else None


RUN_INFO_FILE = "accounting.json"
"""Written by `Accounting` (and the ICL-only run) into the run's log directory, next to the metrics."""
RECORD_DIR = "record"
"""The folder of the CSV logger `metrics_logger` adds, inside the run's log folder."""


def base_config_dict(config: Config) -> dict[str, Any]:
    """The model's own config fields (without a technique's), as `litgpt.Config(**d)` accepts them."""
    return asdict(base_config(config))


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's numbers depend on."""
    versions = {"python": platform.python_version()}
    for package in ("lightning-adapt", "torch", "lightning", "litgpt"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def task_spec(task: Any) -> dict[str, Any]:
    """An ICL or lm-eval task (a dataclass: `lightning_adapt.icl.specs.TaskSpec`, which this layer does not import) as
    plain data, its local files and folders as absolute paths (so runs launched elsewhere compare equal)."""
    spec = asdict(task)
    for owner, key in (("queries", "path"), ("demos", "path"), ("selection", "path"), ("context", "documents")):
        local = spec.get(owner) and spec[owner].get(key)
        if local and Path(local).exists():
            spec[owner][key] = str(Path(local).resolve())
    if "task" in spec and Path(spec["task"]).is_file():
        spec["task"] = str(Path(spec["task"]).resolve())
    if "include_path" in spec:
        spec["include_path"] = [str(Path(folder).resolve()) for folder in spec["include_path"]]
    return spec


def run_info(
    method: str,
    module: str | None,
    config: Config,
    checkpoint_dir: str | Path | None,
    tasks: Sequence[Any],
    general_tasks: Sequence[Any] = (),
    **details: Any,
) -> dict[str, Any]:
    """What a report needs to know about a run besides its metrics: method, base model, ICL tasks, the general-ability
    tasks scored for forgetting, versions."""
    return {
        "method": method,
        "module": module,
        "checkpoint_dir": None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()),
        "model": config.name,
        "model_config": base_config_dict(config),
        "tasks": [task_spec(task) for task in tasks],
        "general_tasks": [task_spec(task) for task in general_tasks],
        **details,
        "versions": library_versions(),
    }


def write_run_info(log_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write `info` as `log_dir/accounting.json` (atomically)."""
    path = Path(log_dir) / RUN_INFO_FILE
    atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
    return path


def metrics_logger(trainer: L.Trainer) -> CSVLogger:
    """The CSV logger whose `metrics.csv` sits next to `accounting.json` for reports. When the user's loggers include
    none (TensorBoard or W&B only, or no logger at all), one is added, writing to `record/` in the run's log folder,
    so a report works whatever else logs the run."""
    found = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
    if found is None:
        found = CSVLogger(trainer.log_dir or trainer.default_root_dir, name=RECORD_DIR, version="")
        trainer.loggers = [*trainer.loggers, found]
    return found
