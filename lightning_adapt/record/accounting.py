"""`Accounting`: the callback that measures what a run costs — parameters changed, tokens, time, memory and FLOPs
(counted by `lightning_adapt.record.flops`) — into the run record (`lightning_adapt.record.runs`)."""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.record.flops import check_architecture, micro_batch_flops
from lightning_adapt.record.predictions import write_predictions
from lightning_adapt.model.quantize import logical_numel, quantized_parameters
from lightning_adapt.techniques import technique_of
from lightning_adapt.record.runs import (
    FIRST_RESULT_S,
    MODEL_MEMORY,
    PARAMS_CHANGED_BYTES,
    PARAMS_PREFIX,
    PARAMS_TOTAL,
    PADDING_SHARE,
    PARAMS_TRAINABLE,
    PEAK_MEMORY,
    TOKENS_PER_S,
    EVAL_S,
    TRAIN_EXAMPLES,
    TRAIN_FLOPS,
    TRAIN_S,
    TRAIN_TOKENS,
    WALL_S,
    batch_tokens,
    input_tokens,
    metrics_logger,
    run_info,
    tokens_per_second,
    write_run_info,
)
from lightning_adapt.distributed.sharding import has_fsdp1_units, local_bytes


def memory_bytes(device: torch.device) -> int:
    """Peak CUDA memory allocated on `device` (since the last reset), or the process's current resident memory (RSS)
    on CPU, which callers sample and take the maximum of."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak_memory(device: torch.device) -> None:
    """Start `memory_bytes`'s peak afresh. CUDA: reset its peak statistics. CPU, where the peak is sampled RSS: free
    unreachable objects and hand the C heap's free pages back to the OS (glibc's `malloc_trim`), so that the RSS a run
    measures is not inflated by what earlier work in the process (another compare run, an estimate's probe) freed."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS keeps what the heap holds
        pass


def batch_shape(batch: Any) -> tuple[int, int]:
    """(rows, positions) of a training micro-batch as the model computes it: every row, every position but the last,
    padding included — the shape the FLOPs are counted from (tokens, padding excluded, are `input_tokens`)."""
    rows, length = batch_tokens(batch).shape[:2]
    return rows, length - 1


def labelled_positions(batch: Any) -> int:
    """Positions of a training micro-batch that have a label (its target is not `IGNORE_INDEX`), the ones the LM head
    and the loss are computed at; every position of a batch without labels."""
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if labels is None:
        rows, positions = batch_shape(batch)
        return rows * positions
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


class Evaluation(NamedTuple):
    """What `record_evaluation` recorded: the log folder it wrote, and the same record in memory."""

    log_dir: Path
    metrics: dict[str, float]
    """Every metric logged, all at step 0: the evaluation's, its seconds and its peak memory."""
    predictions: list[dict[str, Any]]
    """The per-query predictions of the step-0 predictions file."""


def record_evaluation(
    log_dir: str | Path,
    evaluate: Callable[[], tuple[dict[str, float], list[dict[str, Any]]]],
    info: dict[str, Any],
    device: torch.device,
) -> Evaluation:
    """Record a run that trains nothing (compare's ICL-only run) the way `Accounting` and `ICLEvaluation` record a
    training run: the metrics `evaluate()` returns, with the seconds it took (``time/wall_s``, also
    ``time/first_result_s`` and ``time/eval_s``) and ``memory/peak_bytes``, at step 0 in a CSVLogger's ``log_dir/logs/version_N``, `info`
    as its accounting.json, and the per-query predictions `evaluate()` returns as the step-0 predictions file (see
    `lightning_adapt.record.predictions`). It logs no training metrics (params, tokens, FLOPs): reports count their absence
    as zero. Returns the log folder with the metrics and predictions it holds."""
    reset_peak_memory(device)
    start = time.perf_counter()
    metrics, predictions = evaluate()
    seconds = time.perf_counter() - start
    logger = CSVLogger(log_dir, name="logs")
    logged = metrics | {WALL_S: seconds, FIRST_RESULT_S: seconds, EVAL_S: seconds,
                        PEAK_MEMORY: float(memory_bytes(device))}
    logger.log_metrics(logged, step=0)
    logger.save()
    write_predictions(logger.log_dir, 0, predictions)
    write_run_info(logger.log_dir, info)
    return Evaluation(Path(logger.log_dir), logged, predictions)


class Accounting(L.Callback):
    """Logs what training costs, through the Trainer's loggers, so every method sits on the same axes.

    At the start of training (step 0): ``params/trainable``, ``params/total`` (the model's, whatever a process holds
    of them; a 4-bit weight counts its unpacked shape), ``params/changed_bytes`` (bytes of the weights training
    changes: the LoRA adapter, or every weight for full fine-tuning), ``memory/model_bytes`` (bytes of weights and
    buffers one process holds: its shards under FSDP2, the packed 4-bit base; the largest over processes). After every optimizer step
    (whatever ``log_every_n_steps`` says, so every evaluation has its coordinates): ``train/tokens`` and
    ``train/examples`` (the module's cumulative counters), ``flops/train`` (cumulative training FLOPs of all processes, see the module docstring),
    ``train/padding_share`` (the share of the positions computed so far that were padding, `PADDING_SHARE`), ``time/wall_s`` (seconds
    since the Trainer set the run up, model loading and evaluations included), ``time/train_s`` (seconds spent in
    training steps), ``time/eval_s`` (seconds spent evaluating, see `lightning_adapt.record.runs.EVAL_S`; logged again,
    with ``time/wall_s``, at the first training step after an evaluation, so a step's last row includes the
    evaluation made there), ``throughput/tokens_per_s`` (training tokens of all processes per second of the step),
    ``memory/peak_bytes`` (CUDA max allocated, or the largest process RSS seen on CPU; the maximum over processes).
    Once, at the first training step after a validation (or at the end of training): ``time/first_result_s``, the
    seconds from setup to the first evaluation of trained weights. Rank zero also writes ``accounting.json`` (method,
    base checkpoint, model config, ICL tasks, Trainer settings, library versions) next to the metrics.csv of the
    Trainer's CSVLogger (added when it has none, see `metrics_logger`), for reports.

    Accounting is the only writer of these keys; the `lightning-adapt` training commands add it when the config lists
    none.

    Protocol: the LightningModule exposes ``model`` (a LitGPT ``GPT``) and ``train_tokens`` (cumulative training
    tokens of all processes, `lightning_adapt.record.runs.input_tokens`) and optionally ``train_examples``, as ``AdaptationModule`` does; batches hold
    ``input_ids`` (or are token tensors, alone or first in a tuple) of which the model reads all but the last position.
    """

    def __init__(self, method: str | None = None, details: dict[str, Any] | None = None) -> None:
        """
        Args:
            method: The name this run has in reports (default: the module's class, with "-lora" for LoRA, "-NAME"
                for another technique).
            details: More entries for accounting.json (plain JSON data; e.g. compare's sweep: which run's data-size
                sweep this run belongs to).
        """
        self.method = method
        self.details = dict(details or {})
        self._start = 0.0
        self._step_start = 0.0
        self._train_seconds = 0.0
        self._eval_seconds = 0.0
        self._eval_start: float | None = None
        self._flops = 0.0
        self._positions = 0
        self._inputs = 0
        self._peak = 0
        self._tokens_logged = 0
        self._seconds_logged = 0.0
        self._logged_step = -1
        self._validated = False
        self._first_result: float | None = None
        self._resumed = {"flops": 0.0, "wall_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "positions": 0.0, "inputs": 0.0}
        self._reduced_flops = 0.0
        self._reduced_positions = (0.0, 0.0)
        self._record_dir: Path | None = None
        self.info: dict[str, Any] | None = None
        """What rank zero wrote as accounting.json when training started (None before, and on other ranks)."""

    @property
    def state_key(self) -> str:
        return self._generate_state_key(method=self.method)

    def state_dict(self) -> dict[str, float]:
        """Totals so far (all processes), so that a resumed run continues its FLOP and time axes."""
        return {"flops": self._reduced_flops, "wall_s": self._wall(), "train_s": self._train_total(),
                "eval_s": self._eval_total(), "positions": self._reduced_positions[0],
                "inputs": self._reduced_positions[1]}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        # a checkpoint from before eval_s and the padding were measured
        self._resumed = {"eval_s": 0.0, "positions": 0.0, "inputs": 0.0} | dict(state_dict)
        self._reduced_flops = self._resumed["flops"]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._start = time.perf_counter()
        self._train_seconds, self._flops, self._peak, self._logged_step = 0.0, 0.0, 0, -1
        self._positions, self._inputs = 0, 0
        self._eval_seconds, self._eval_start = 0.0, None
        self._tokens_logged, self._seconds_logged = 0, 0.0
        self._validated, self._first_result = False, None
        self._reduced_flops = self._resumed["flops"]
        self._record_dir = Path(metrics_logger(trainer).log_dir)
        reset_peak_memory(trainer.strategy.root_device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from litgpt import GPT

        if not isinstance(getattr(pl_module, "model", None), GPT) or not hasattr(pl_module, "train_tokens"):
            raise TypeError(
                f"Accounting needs {type(pl_module).__name__} to expose `model` (a litgpt GPT) and `train_tokens` "
                "(cumulative training tokens), as lightning_adapt's AdaptationModule does."
            )
        check_architecture(pl_module.model.config)
        self._eval_start = time.perf_counter()  # the sanity check and the step-0 evaluations, until the first step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = list(pl_module.model.parameters())
        trainable = [p for p in params if p.requires_grad]
        held = trainer.strategy.reduce(torch.tensor(float(local_bytes(pl_module.model)), dtype=torch.float64,
                                                    device=pl_module.device), reduce_op="max")
        whole = quantized_parameters(pl_module.model)  # frozen, held whole by every process even when sharded
        counts = torch.tensor([sum(logical_numel(p) for p in trainable),
                               sum(logical_numel(p) for p in params if p not in whole),
                               sum(logical_numel(p) * p.element_size() for p in trainable)], dtype=torch.float64,
                              device=pl_module.device)
        if has_fsdp1_units(pl_module.model):  # each process holds part of every other parameter
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        counts[1] += sum(logical_numel(p) for p in whole)
        metrics = {
            PARAMS_TRAINABLE: float(counts[0]),
            PARAMS_TOTAL: float(counts[1]),
            PARAMS_CHANGED_BYTES: float(counts[2]),
            MODEL_MEMORY: float(held),
        }
        self._tokens_logged = pl_module.train_tokens
        metrics.update(self._progress(trainer, pl_module))
        self._log(trainer, metrics)
        if trainer.is_global_zero:
            self.info = self._info(trainer, pl_module, metrics)
            write_run_info(self._record_dir, self.info)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._record_first_result(trainer)
        self._end_evaluation(trainer)
        self._synchronize(pl_module)
        self._step_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._synchronize(pl_module)
        self._train_seconds += time.perf_counter() - self._step_start
        rows, positions = batch_shape(batch)
        self._flops += micro_batch_flops(pl_module.model.config, rows, positions, labelled_positions(batch))
        self._positions += rows * positions
        self._inputs += input_tokens(batch)
        if trainer.global_step == self._logged_step:  # accumulating gradients: log once per optimizer step
            return
        tokens, seconds = pl_module.train_tokens - self._tokens_logged, self._train_seconds - self._seconds_logged
        self._tokens_logged, self._seconds_logged = pl_module.train_tokens, self._train_seconds
        metrics = self._progress(trainer, pl_module)
        rate = tokens_per_second(tokens, seconds)
        self._log(trainer, metrics if rate is None else metrics | {TOKENS_PER_S: rate})

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and self._eval_start is None:
            self._eval_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.global_step > 0:
            self._validated = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_first_result(trainer)
        self._end_evaluation(trainer)
        self._log(trainer, {WALL_S: self._wall()})

    def _end_evaluation(self, trainer: L.Trainer) -> None:
        """An evaluation (with whatever else ran after validation) ends at the next training step or at the end."""
        if self._eval_start is None:
            return
        self._eval_seconds += time.perf_counter() - self._eval_start
        self._eval_start = None
        self._log(trainer, {EVAL_S: self._eval_total(), WALL_S: self._wall()})

    def _record_first_result(self, trainer: L.Trainer) -> None:
        """Evaluations run at the end of validation, so the first batch after it (or the end) marks their end."""
        if self._validated and self._first_result is None:
            self._first_result = self._wall()
            self._log(trainer, {FIRST_RESULT_S: self._first_result})

    def _progress(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Cumulative FLOPs (summed over processes), times, and peak memory (max over processes)."""
        self._peak = max(self._peak, memory_bytes(pl_module.device))
        device = pl_module.device
        flops = trainer.strategy.reduce(torch.tensor(self._flops, dtype=torch.float64, device=device), reduce_op="sum")
        peak = trainer.strategy.reduce(torch.tensor(float(self._peak), dtype=torch.float64, device=device), reduce_op="max")
        self._reduced_flops = float(flops) + self._resumed["flops"]
        counted = trainer.strategy.reduce(torch.tensor([float(self._positions), float(self._inputs)], dtype=torch.float64,
                                                       device=device), reduce_op="sum")
        self._reduced_positions = (float(counted[0]) + self._resumed["positions"],
                                   float(counted[1]) + self._resumed["inputs"])
        positions, inputs = self._reduced_positions
        return {
            **({PADDING_SHARE: 1.0 - inputs / positions} if positions else {}),
            TRAIN_TOKENS: float(pl_module.train_tokens),
            **({TRAIN_EXAMPLES: float(pl_module.train_examples)} if hasattr(pl_module, "train_examples") else {}),
            TRAIN_FLOPS: self._reduced_flops,
            PEAK_MEMORY: float(peak),
            WALL_S: self._wall(),
            TRAIN_S: self._train_total(),
            EVAL_S: self._eval_total(),
        }

    def _wall(self) -> float:
        """Seconds since the Trainer set the run up, plus those of the run it resumes."""
        return time.perf_counter() - self._start + self._resumed["wall_s"]

    def _train_total(self) -> float:
        """Seconds spent in training steps, plus those of the run it resumes."""
        return self._train_seconds + self._resumed["train_s"]

    def _eval_total(self) -> float:
        """Seconds spent in finished evaluations, plus those of the run it resumes."""
        return self._eval_seconds + self._resumed["eval_s"]

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        self._logged_step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _synchronize(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def _info(self, trainer: L.Trainer, pl_module: L.LightningModule, params: dict[str, float]) -> dict[str, Any]:
        config = pl_module.model.config
        technique = technique_of(config)
        export_dir = pl_module.export_dirs().get("litgpt") if hasattr(pl_module, "export_dirs") else None
        # callbacks that evaluate tasks (ICLEvaluation) name them in the record, general-ability tasks apart
        evaluators = [cb for cb in trainer.callbacks if hasattr(cb, "evaluated_tasks")]
        tasks = [task for cb in evaluators if not getattr(cb, "general", False) for task in cb.evaluated_tasks]
        general = [task for cb in evaluators if getattr(cb, "general", False) for task in cb.evaluated_tasks]
        datamodule = trainer.datamodule
        return run_info(
            self.method or type(pl_module).__name__ + (f"-{technique.name}" if technique else ""),
            f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            config,
            getattr(pl_module, "checkpoint_dir", None),
            tasks,
            general_tasks=general,
            export_dir=None if export_dir is None else str(Path(export_dir).resolve()),
            lora={k: v for k, v in asdict(config).items() if k.startswith("lora_")} or None,
            hparams=dict(pl_module.hparams),
            data=None if datamodule is None else {
                "class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
                **({f.name: getattr(datamodule, f.name) for f in fields(datamodule) if f.init} if is_dataclass(datamodule) else {}),
                "train_size": getattr(datamodule, "train_size", None),
            },
            params={name.split("/")[1]: int(value) for name, value in params.items() if name.startswith(PARAMS_PREFIX)},
            trainer={
                "accelerator": type(trainer.accelerator).__name__,
                "strategy": type(trainer.strategy).__name__,
                "precision": trainer.precision,
                "world_size": trainer.world_size,
                "max_steps": trainer.max_steps,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "val_check_interval": trainer.val_check_interval,
            },
            **self.details,
        )
