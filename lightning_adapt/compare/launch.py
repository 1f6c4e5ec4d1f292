"""One run of a comparison, measured the same way as every other: the ICL-only evaluation of the base model, a training
run (`FineTuning` or `ContinualPretraining` with `ICLEvaluation` and `Accounting`), and a training run's estimate.
Each returns the run as the report reads it, from what it measured in memory (its files are written all the same)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_adapt.compare.config import Compare
from lightning_adapt.compare.console import estimate_announcement, estimate_line, say
from lightning_adapt.compare.measured import MetricsInMemory, PredictionsInMemory
from lightning_adapt.compare.plan import PlannedRun
from lightning_adapt.core.quiet import progress_bar
from lightning_adapt.compare.settings import SET_PER_RUN, SHARED, module_options
from lightning_adapt.estimate import TrainingEstimate, estimate_training
from lightning_adapt.formats.export import ExportSettings, export_settings
from lightning_adapt.icl.callback import ICLEvaluation
from lightning_adapt.icl.evaluate import evaluate_checkpoint
from lightning_adapt.methods.base import AdaptationModule
from lightning_adapt.model.loading import check_checkpoint_dir, load_config
from lightning_adapt.record.accounting import Accounting, record_evaluation
from lightning_adapt.record.runs import run_info
from lightning_adapt.verdict.run import Run, measured_run

PRECISION_DTYPES = {"bf16-true": "bfloat16", "16-true": "float16"}
"""The weights' dtype of the ICL-only run under the Trainer's `precision` flag (float32 otherwise)."""


def run_icl(compare: Compare, run_dir: Path) -> Run:
    """The ICL-only run: every task's shots and seeds scored on the base model (the horizontal lines of the timeline),
    no training, recorded by `record_evaluation` (metrics and per-query predictions) as `Accounting` and
    `ICLEvaluation` record the training runs."""
    checkpoint_dir = check_checkpoint_dir(compare.checkpoint_dir)
    accelerator = str(compare.trainer.get("accelerator", "auto"))
    device = torch.device("cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    dtype = PRECISION_DTYPES.get(str(compare.trainer.get("precision", "32-true")), "float32")
    info = run_info("icl", None, load_config(checkpoint_dir), checkpoint_dir, compare.tasks, device=str(device),
                    dtype=dtype)

    def evaluate() -> tuple[dict[str, float], list[dict[str, Any]]]:
        results = evaluate_checkpoint(checkpoint_dir, compare.tasks, batch_size=compare.icl_batch_size,
                                      device=str(device), dtype=dtype)
        return results.metrics(), results.predictions

    recorded = record_evaluation(run_dir, evaluate, info, device)
    metrics = {key: {0: value} for key, value in recorded.metrics.items()}
    return measured_run(recorded.log_dir, info, metrics, {0: recorded.predictions})


def build_run(compare: Compare, run: PlannedRun, checkpoint_dir: Path, run_dir: Path) -> tuple[AdaptationModule, Any]:
    """The LightningModule and data module of a planned run: the module built from every option of its settings, the
    options every run shares, its base and its folder."""
    settings = run.settings
    module_class = settings.module_class
    continued = {planned.base for planned in compare.planned_runs()}
    own = {name: getattr(settings, name) for name in module_options(module_class) if name not in SET_PER_RUN + SHARED}
    module = module_class(
        checkpoint_dir, out_dir=run_dir, general_val=compare.general_val, general_val_blocks=compare.general_val_blocks,
        general_val_length=compare.general_val_length, export=run_export(compare.export, run.name in continued), **own,
    )
    return module, replace(settings.data)


def run_export(export: bool | ExportSettings, continued: bool) -> bool | ExportSettings:
    """A run's fit-end export: compare's `export`, with final/ added when a later run continues from it."""
    settings = export_settings(export)
    if not continued or (settings is not None and "litgpt" in settings.formats):
        return export
    return True if settings is None else replace(settings, formats=["litgpt", *settings.formats])


def trainer_flags(compare: Compare, run: PlannedRun) -> dict[str, Any]:
    """The Trainer arguments of a planned run, callbacks and logger aside."""
    return {"log_every_n_steps": 1, "enable_checkpointing": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0} | compare.trainer | {
        "max_steps": run.settings.max_steps, "val_check_interval": run.settings.val_check_interval,
        "check_val_every_n_epoch": None}


def one_process(compare: Compare) -> bool:
    """Whether the runs train in a single process (the estimate's probe predicts one)."""
    devices, nodes = str(compare.trainer.get("devices", "auto")), compare.trainer.get("num_nodes", 1)
    if devices in ("auto", "-1"):  # Lightning's auto: every GPU, else one CPU process
        cpu = str(compare.trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available()
        devices = "1" if cpu or torch.cuda.device_count() == 1 else devices
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return devices in ("1", "[0]") and int(nodes) == 1 and not launched


def estimate_planned(compare: Compare, run: PlannedRun, checkpoint_dir: Path, run_dir: Path) -> TrainingEstimate:
    """The `TrainingEstimate` of a planned run: a probe of a few real steps (`lightning_adapt.estimate`)."""
    module, data = build_run(compare, run, checkpoint_dir, run_dir)
    return estimate_training(module, data, trainer_flags(compare, run), run.settings.max_steps)


def run_details(run: PlannedRun) -> dict[str, Any]:
    """What a planned run's accounting.json says beyond what `Accounting` measures: the sweep size or the search
    configuration it trains, if any."""
    return {key: value for key, value in (("sweep", run.sweep), ("search", run.search)) if value is not None}


def evaluations(compare: Compare) -> list[ICLEvaluation]:
    """The ICL evaluations of every training run: the compared tasks at `train_shots`, `train_seeds` and `train_top_k`
    with the `icl_subsample` budget (first), and the general tasks, if any, at their own."""
    icl = [ICLEvaluation(compare.tasks, shots=compare.train_shots, seeds=compare.train_seeds,
                         top_k=compare.train_top_k, batch_size=compare.icl_batch_size,
                         subsample=compare.icl_subsample)]
    if compare.general_tasks:
        icl.append(ICLEvaluation(compare.general_tasks, batch_size=compare.icl_batch_size, general=True))
    return icl


def run_training(compare: Compare, run: PlannedRun, run_dir: Path, checkpoint_dir: Path,
                 estimate: dict[str, Any] | None = None) -> Run:
    """One training run (fine-tuning or CPT) with the same ICLEvaluation and Accounting callbacks as every other;
    with `compare.estimate` (one process), its estimate first, announced and reported on the console (or `estimate`,
    that of an earlier run of its search: the same model, data and budget), kept in its accounting.json. Returns what it measured (on global rank 0; what
    the other processes return is not read)."""
    details = run_details(run)
    if compare.estimate and one_process(compare):
        if estimate is None:
            say(estimate_announcement(run.name))
            made = estimate_planned(compare, run, checkpoint_dir, run_dir)
            say(estimate_line(run.name, made))
            estimate = made.to_dict()
        details["estimate"] = estimate
    L.seed_everything(run.seed, verbose=False)
    module, data = build_run(compare, run, checkpoint_dir, run_dir)
    icl = evaluations(compare)
    predictions, accounting = PredictionsInMemory(icl[:1]), Accounting(run.name, details=details)
    logger, metrics = CSVLogger(run_dir, name="logs"), MetricsInMemory()
    flags = trainer_flags(compare, run)
    bar = [progress_bar()] if flags.get("enable_progress_bar", True) else []
    trainer = L.Trainer(**flags, callbacks=[*icl, predictions, accounting, *bar], logger=[logger, metrics],
                        default_root_dir=run_dir)
    trainer.fit(module, datamodule=data)
    return measured_run(Path(logger.log_dir), accounting.info or {}, metrics.metrics, predictions.predictions)
