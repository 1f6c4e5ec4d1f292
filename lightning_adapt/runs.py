"""The run record: what a report needs to know about a run besides its metrics (`accounting.json`), and the CSV
logger whose `metrics.csv` sits next to it."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from litgpt import Config

from lightning_adapt.atomic import atomic_write_text

if TYPE_CHECKING:
    from lightning_adapt.icl.specs import TaskSpec

RUN_INFO_FILE = "accounting.json"
"""Written by `Accounting` (and the ICL-only run) into the run's log directory, next to the metrics."""
RECORD_DIR = "record"
"""The folder of the CSV logger `metrics_logger` adds, inside the run's log folder."""


def base_config_dict(config: Config) -> dict[str, Any]:
    """The model's own config fields (without LoRA's), as `litgpt.Config(**d)` accepts them."""
    return {key: value for key, value in asdict(config).items() if not key.startswith("lora_")}


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's numbers depend on."""
    versions = {"python": platform.python_version()}
    for package in ("lightning-adapt", "torch", "lightning", "litgpt"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def task_spec(task: TaskSpec) -> dict[str, Any]:
    """An ICL or lm-eval task as plain data, its local files and folders as absolute paths (so runs launched elsewhere
    compare equal)."""
    spec = asdict(task)
    for key in ("queries", "demos"):
        if spec.get(key) is not None and Path(spec[key]["path"]).is_file():
            spec[key]["path"] = str(Path(spec[key]["path"]).resolve())
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
    tasks: list[TaskSpec],
    general_tasks: Sequence[TaskSpec] = (),
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
