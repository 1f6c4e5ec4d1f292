"""An estimate before any run: the parameters, peak memory, training FLOPs and time of a planned fine-tuning or
continual-pretraining run, and the prompt tokens and FLOPs per query of its ICL tasks.

`estimate_training` runs a short probe: `WARMUP_STEPS` (2) steps not timed and `probe_steps` timed optimizer steps of the
real training, on the configured device and precision, in a temporary folder with no logger, no checkpoints and no
export. It trains copies of the module and data module (they are left as given) and writes nothing that outlives it.
Every number is one process's: several devices or nodes are refused.

- Parameters: counted as `Accounting` logs `params/trainable` and `params/total` (a 4-bit weight by its unpacked shape).
- FLOPs: `flops.micro_batch_flops` over the shapes and labelled positions of the micro-batches the run trains on,
  drawn from the data module's training DataLoader in training order and grouped into optimizer steps as Lightning groups them (an epoch's last
  step takes the micro-batches left), as `Accounting` counts `flops/train`: padded batches count all their rows and
  positions; the shapes are drawn by a Trainer of their own (a module that computes nothing), so epochs, accumulation
  and `limit_train_batches` are Lightning's. Steps past the first `counted_batches` micro-batches are counted at the
  mean of those. `tokens_per_step` is the mean training tokens per step of those micro-batches, as `train/tokens`
  counts them (`lightning_adapt.record.runs.input_tokens`: the tokens the model reads as inputs, padding excluded).
- Time: the timed steps' seconds per position the model computes (measured as `Accounting` measures `time/train_s`:
  from the start to the end of each training batch; micro-batches are padded to their longest example, so step times
  follow their rows x positions, padding included) times the run's positions; validation: the seconds of one
  held-out evaluation after the probe's steps (the configured validation batches and `general_val` blocks) times the
  evaluations the run makes (at step 0 and as the Trainer schedules them). ICL evaluations are not included.
- Memory, comparable to `Accounting`'s `memory/peak_bytes` (CUDA max allocated, or the process RSS on CPU): the
  process before the model loads (measured when the probe Trainer sets up: the process's RSS, or CUDA memory already
  allocated; a fresh training process holds about as much once its imports are loaded), the model's weights and
  buffers as held (`memory/model_bytes`), a gradient per trainable weight, the optimizer's state (its tensors after
  the probe's steps), the activations autograd keeps for the backward pass of the run's longest micro-batch (measured
  on the first micro-batch, scaled by tokens; with activation checkpointing: each block's input, one block's
  activations and those outside the blocks), and the overhead the probe's own peak holds beyond these parts
  (temporaries of backward and the optimizer step; on CPU also kernels loaded on first use and allocator slack).

The probe runs real steps, so it first checks that they fit: once the model is built and before any training
micro-batch is drawn, it predicts the memory of the first micro-batch (the process before the model loads, the
weights, a gradient per trainable weight, the state the run's optimizer keeps once it has stepped them, built as the
run builds it and stepped on a small stand-in weight, and the activations, measured on forward passes of one and two
short rows of random tokens and scaled to the micro-batch's rows x positions; a stream's micro-batch is `batch_size`
items as long as its first, a map-style one is measured by collating its examples a few at a time) and raises
`InsufficientMemoryError` when that exceeds what the process can hold (what it holds now and what is free: psutil's
available memory on CPU, `torch.cuda.mem_get_info` on CUDA). Each probe micro-batch is checked again before it runs
(the first without activation checkpointing, as the probe runs it). `force=True` skips the check.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import psutil
import torch
from litgpt import GPT
from torch.utils.data import DataLoader, IterableDataset

from lightning_adapt.core.quiet import quiet_probe
from lightning_adapt.core.units import format_bytes
from lightning_adapt.record.accounting import batch_shape, labelled_positions, memory_bytes, reset_peak_memory
from lightning_adapt.record.flops import inference_flops, micro_batch_flops
from lightning_adapt.record.runs import input_tokens
from lightning_adapt.icl.runner import ICLRunner, with_overrides
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.icl.task import ICLTask
from lightning_adapt.methods.optimization import Optimization, WarmupWarning
from lightning_adapt.model.loading import load_config, load_tokenizer, resolve_checkpoint_dir
from lightning_adapt.model.quantize import logical_numel
from lightning_adapt.verdict.rules import ANSWER_TOKENS
from lightning_adapt.distributed.sharding import checkpoint_activations, local_bytes

PROBE_OWNS = (
    "callbacks", "logger", "enable_checkpointing", "default_root_dir", "max_steps", "max_epochs", "min_steps",
    "min_epochs", "max_time", "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps",
    "enable_progress_bar", "enable_model_summary", "profiler", "fast_dev_run",
)
"""Trainer flags the probe sets itself (the others, e.g. accelerator, precision, accumulation, apply as given)."""
WARMUP_STEPS = 2
"""Probe steps not timed: the first steps of a process pay for kernels loaded and memory first touched."""
PROBE_STEPS = 3
"""Timed probe steps, by default."""
SHORT_ROW = 64
"""Positions of the one row whose forward pass gives the activations per token that the memory check scales."""
STAND_IN = 4096
"""Elements of the stand-in weight on which the optimizer's state per weight is measured (bitsandbytes' 8-bit
optimizers keep 32-bit state for smaller weights)."""
COLLATED_ROWS = 256
"""Examples of a map-style micro-batch collated at a time when the memory check measures its positions."""


class InsufficientMemoryError(ValueError):
    """The estimate's probe would need more memory than the process can hold: refused before the probe's steps."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted bytes of one process's peak, by part; `peak_bytes` is their sum."""

    baseline_bytes: int
    """The process before the model loads (CPU: its RSS; CUDA: memory already allocated)."""
    model_bytes: int
    """Weights and buffers as held in training: in their dtype, a quantized base packed (as `Accounting`'s
    memory/model_bytes counts them before the first step)."""
    trainable_bytes: int
    """Of `model_bytes`, the weights that train (the LoRA adapters, or every weight): `params/changed_bytes`."""
    gradient_bytes: int
    """A gradient per trainable weight, in its dtype."""
    optimizer_bytes: int
    """The optimizer's state tensors after the probe's steps (AdamW: 2 per trainable weight, and a step count)."""
    activation_bytes: int
    """Tensors autograd keeps for the backward pass of the longest micro-batch, without activation checkpointing."""
    activation_bytes_checkpointed: int
    """The same with activation checkpointing: each block's input, one block's activations, those outside blocks."""
    overhead_bytes: int
    """What the probe's measured peak held beyond the parts above."""

    def peak_bytes(self, checkpointing: bool = False) -> int:
        activations = self.activation_bytes_checkpointed if checkpointing else self.activation_bytes
        return (self.baseline_bytes + self.model_bytes + self.gradient_bytes + self.optimizer_bytes + activations
                + self.overhead_bytes)


@dataclass(frozen=True)
class TrainingEstimate:
    """What a planned training run will cost (see the module docstring for how each number is made)."""

    device: str
    params_trainable: int
    params_total: int
    memory: MemoryEstimate
    activation_checkpointing: bool
    """Whether the planned run checkpoints activations (`predicted_peak_bytes` follows it)."""
    max_steps: int
    tokens_per_step: float
    """Training tokens per optimizer step, as `train/tokens` counts them (`input_tokens`: padding excluded)."""
    training_flops: float
    probe_steps: int
    probe_seconds_per_step: float
    predicted_train_s: float
    """Seconds in training steps, comparable to `Accounting`'s time/train_s."""
    validations: int | None
    """Held-out evaluations: the step-0 one and those the Trainer schedules (None: a time-based interval)."""
    validation_s: float
    """Seconds of one held-out evaluation (validation batches and general_val blocks), measured in the probe."""
    probe_s: float
    """Seconds the estimate itself took (the probe and the count of the micro-batches), spent before the run."""

    @property
    def peak_bytes(self) -> int:
        return self.memory.peak_bytes(checkpointing=False)

    @property
    def peak_bytes_checkpointed(self) -> int:
        return self.memory.peak_bytes(checkpointing=True)

    @property
    def predicted_peak_bytes(self) -> int:
        """The peak of the run as configured, comparable to `Accounting`'s memory/peak_bytes."""
        return self.memory.peak_bytes(self.activation_checkpointing)

    @property
    def predicted_val_s(self) -> float | None:
        return None if self.validations is None else self.validations * self.validation_s

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: every field, the memory parts under "memory", and the derived peaks and validation seconds."""
        fields = {name: value for name, value in asdict(self).items() if name != "memory"}
        return fields | {
            "memory": asdict(self.memory),
            "peak_bytes": self.peak_bytes,
            "peak_bytes_checkpointed": self.peak_bytes_checkpointed,
            "predicted_peak_bytes": self.predicted_peak_bytes,
            "predicted_val_s": self.predicted_val_s,
        }


@dataclass(frozen=True)
class ICLEstimate:
    """One ICL task at k demonstrations and `docs` retrieved documents: mean prompt tokens per query and the FLOPs to
    answer one (None for an lm-eval task, whose prompts exist only once lm-eval builds its requests)."""

    task: str
    k: int
    prompt_tokens: float | None
    query_flops: float | None
    docs: int = 0
    """Retrieved documents in the prompt (a task's `context`; 0: none)."""
    answer_tokens: float | None = None
    """The answer tokens `query_flops` counts: the given `answer_tokens`, or for a task that generates its replies its
    `max_new_tokens` (an upper bound: a reply may stop sooner); None for an lm-eval task."""
    generates: bool = False
    """Whether the task generates its replies (then `answer_tokens` is its `max_new_tokens`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the probe -----------------------------------------------------------------------------------------------------


class _Activations:
    """While entered: bytes of the tensors autograd saves for backward, by transformer block (each storage once, the
    model's weights and buffers not), and of the blocks' inputs (what checkpointing keeps of a block)."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.seen = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        self.blocks = [0] * len(model.transformer.h)
        self.inputs = 0
        self.other = 0
        self._block: int | None = None
        self._saving = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def __enter__(self) -> _Activations:
        self._handles = [hook for index, block in enumerate(self.model.transformer.h) for hook in (
            block.register_forward_pre_hook(partial(self._enter_block, index)),
            block.register_forward_hook(self._leave_block),
        )]
        self._saving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._saving.__exit__(*exc)
        for handle in self._handles:
            handle.remove()

    def _enter_block(self, index: int, block: torch.nn.Module, args: tuple[Any, ...]) -> None:
        self._block = index
        self.inputs += args[0].numel() * args[0].element_size()

    def _leave_block(self, *_: Any) -> None:
        self._block = None

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.seen:
            self.seen.add(storage.data_ptr())
            if self._block is None:
                self.other += storage.nbytes()
            else:
                self.blocks[self._block] += storage.nbytes()
        return tensor.detach()  # the tensor itself would make a saved output hold its own graph: a cycle never freed

    def kept(self, checkpointing: bool) -> int:
        """Bytes kept for the backward pass, with or without activation checkpointing."""
        return self.other + (self.inputs + max(self.blocks) if checkpointing else sum(self.blocks))

    def per_position(self, positions: int, checkpointing: bool) -> float:
        """Bytes per position the model computed, with or without activation checkpointing."""
        return self.kept(checkpointing) / positions


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _positions(batch: Any) -> int:
    """Positions the model computes in a micro-batch, padding included (`batch_shape`'s rows × positions)."""
    rows, positions = batch_shape(batch)
    return rows * positions


class _Probe(L.Callback):
    """Measures the probe as `Accounting` measures a run: seconds per training batch and the memory peak; the
    activations of the first micro-batch (run without checkpointing, which is put on afterwards when the run uses
    it); and, at the end, the seconds of one held-out evaluation (`AdaptationModule.heldout_at_start`). Unless
    `force`, it refuses micro-batches that would not fit in memory (`_Need`): the first before any is drawn (of a
    loader of its own: the Trainer prefetches its first micro-batch before training starts), each one again before
    it runs."""

    def __init__(self, checkpointing: bool, force: bool) -> None:
        self.checkpointing = checkpointing
        self.force = force
        self.need: _Need | None = None
        """What each micro-batch needs, once the model is built (None with `force`)."""
        self.baseline = self.peak = 0
        self.heldout_s = 0.0
        self.step_seconds: dict[int, float] = {}
        self.step_positions: dict[int, int] = {}
        self.activations: _Activations | None = None
        self.first_positions = 0
        self.largest = 0.0
        """The largest activation bytes of a probe micro-batch, in the mode it ran."""
        self._clock = 0.0
        self._step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        reset_peak_memory(trainer.strategy.root_device)
        self.baseline = self.peak = memory_bytes(trainer.strategy.root_device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Once the model and optimizer are built, before the Trainer draws (and prefetches) the first micro-batch."""
        if not self.force:
            self.need = _need(trainer, pl_module, self.baseline)
            self.need.check(*_first_shape(trainer.datamodule.train_dataloader()), checkpointed=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sample(pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.need is not None:  # the first micro-batch runs without checkpointing (see on_train_batch_end)
            self.need.check(*batch_shape(batch), checkpointed=self.checkpointing and self.first_positions > 0)
        if self.activations is None:
            self.activations = _Activations(pl_module.model).__enter__()
        self._step = trainer.global_step
        _synchronize(pl_module.device)
        self._clock = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        _synchronize(pl_module.device)
        self.step_seconds[self._step] = self.step_seconds.get(self._step, 0.0) + time.perf_counter() - self._clock
        self.step_positions[self._step] = self.step_positions.get(self._step, 0) + _positions(batch)
        first = self.first_positions == 0
        if first:
            self.activations.__exit__(None, None, None)
            self.first_positions = _positions(batch)
            if self.checkpointing:
                checkpoint_activations(pl_module.model)
        per_position = self.activations.per_position(self.first_positions, self.checkpointing and not first)
        self.largest = max(self.largest, per_position * _positions(batch))
        self._sample(pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self.activations is not None and self.first_positions == 0:  # the first micro-batch failed: stop measuring
            self.activations.__exit__(None, None, None)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Time one held-out evaluation once the first forward passes have paid for kernels loaded on first use."""
        start = time.perf_counter()
        pl_module.heldout_at_start()
        self.heldout_s = time.perf_counter() - start

    def _sample(self, pl_module: L.LightningModule) -> None:
        self.peak = max(self.peak, memory_bytes(pl_module.device))


@dataclass(frozen=True)
class _Need:
    """The memory a probe micro-batch needs, known before it runs: `fixed` bytes (the process before the model loads,
    the weights, a gradient per trainable weight, the optimizer's state once it has stepped them) and its activations,
    `constant` bytes plus `per_position` bytes per position the model computes, each indexed by activation
    checkpointing (False, True); against what the process holds now and what is free."""

    device: torch.device
    fixed: int
    constant: tuple[float, float]
    per_position: tuple[float, float]
    held: int
    free: int

    def check(self, rows: int, positions: int, checkpointed: bool) -> None:
        """Raise `InsufficientMemoryError` when a micro-batch of `rows` x `positions` would not fit."""
        activations = self.constant[checkpointed] + self.per_position[checkpointed] * rows * positions
        needed, available = self.fixed + activations, self.held + self.free
        if needed <= available:
            return
        raise InsufficientMemoryError(
            f"The estimate's probe would need {format_bytes(needed)} of memory on {self.device}, but "
            f"{format_bytes(available)} is available ({format_bytes(self.held)} held by this process, "
            f"{format_bytes(self.free)} free): a micro-batch of {rows:,} rows x {positions:,} tokens keeps "
            f"{format_bytes(activations)} of activations, beside {format_bytes(self.fixed)} for the process, weights, "
            f"gradients and optimizer state. Lower data.batch_size or model.max_seq_length. To probe anyway: "
            "`lightning-adapt estimate --force` (in Python: estimate_training(..., force=True)); in a compare config, "
            "`estimate: false` skips the estimate, but the run itself would need that memory."
        )


def _need(trainer: L.Trainer, pl_module: L.LightningModule, baseline: int) -> _Need:
    """What a micro-batch of the probe needs, predicted once the model is built, before any micro-batch is drawn."""
    constant, per_position = _activation_rates(trainer, pl_module)  # first: LoRA makes index buffers on first use
    model, device = pl_module.model, pl_module.device
    trainable = [p for p in model.parameters() if p.requires_grad]
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    fixed = baseline + local_bytes(model) + gradients + _optimizer_bytes(pl_module.optimization, trainable)
    return _Need(device, fixed, constant, per_position, *_memory_left(device))


def _activation_rates(
    trainer: L.Trainer, pl_module: L.LightningModule
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Activation bytes kept whatever the positions (e.g. the low-precision copies of the weights autocast makes) and
    per position the model computes, without and with checkpointing: from the forward passes of one and of two rows
    of `SHORT_ROW` random tokens (at most max_seq_length), run as a training step runs them (`_kept`)."""
    positions = min(SHORT_ROW, pl_module.max_seq_length)
    one, two = _kept(trainer, pl_module, 1, positions), _kept(trainer, pl_module, 2, positions)
    per_row = [b - a for a, b in zip(one, two)]
    return (one[0] - per_row[0], one[1] - per_row[1]), (per_row[0] / positions, per_row[1] / positions)


def _kept(trainer: L.Trainer, pl_module: L.LightningModule, rows: int, positions: int) -> tuple[int, int]:
    """`_Activations.kept` without and with checkpointing of a forward pass of `rows` x `positions` random tokens;
    no gradient is computed and the RNGs are left as they were."""
    cuda = [pl_module.device] if pl_module.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), trainer.precision_plugin.train_step_context():
        ids = torch.randint(pl_module.model.config.vocab_size, (rows, positions + 1), device=pl_module.device)
        with _Activations(pl_module.model) as activations:
            pl_module.loss_and_count({"input_ids": ids, "labels": ids}, 0)
    return activations.kept(False), activations.kept(True)


def _optimizer_bytes(optimization: Optimization, trainable: list[torch.nn.Parameter]) -> int:
    """The state the run's optimizer keeps once it has stepped every trainable weight: state shaped like a weight
    grows with its elements, the rest (a step count) comes once per weight (`_state_rates`)."""
    rates = {key: _state_rates(optimization, *key) for key in {(p.dtype, p.device) for p in trainable}}
    return round(sum(rates[p.dtype, p.device][0] * p.numel() + rates[p.dtype, p.device][1] for p in trainable))


def _state_rates(optimization: Optimization, dtype: torch.dtype, device: torch.device) -> tuple[float, int]:
    """(state bytes per element, state bytes per weight) of the run's optimizer, built as the run builds it, after one
    step of a `STAND_IN`-element weight of `dtype` on `device`."""
    stand_in = torch.zeros(STAND_IN, dtype=dtype, device=device, requires_grad=True)
    stand_in.grad = torch.zeros_like(stand_in)
    optimizer = optimization.configure([stand_in], total_steps=1)["optimizer"]
    optimizer.step()
    state = [value for value in optimizer.state[stand_in].values() if isinstance(value, torch.Tensor)]
    shaped = sum(value.numel() * value.element_size() for value in state if value.numel() == STAND_IN)
    return shaped / STAND_IN, sum(value.numel() * value.element_size() for value in state if value.numel() != STAND_IN)


def _memory_left(device: torch.device) -> tuple[int, int]:
    """(bytes this process holds, bytes free): CUDA memory reserved by PyTorch's allocator and
    `torch.cuda.mem_get_info`'s free memory; on CPU the process's RSS and psutil's available memory."""
    if device.type == "cuda":
        return torch.cuda.memory_reserved(device), torch.cuda.mem_get_info(device)[0]
    return psutil.Process().memory_info().rss, psutil.virtual_memory().available


def _first_shape(loader: DataLoader) -> tuple[int, int]:
    """`batch_shape` of the loader's first micro-batch, found without building a large one: a stream's micro-batch
    holds `batch_size` items as long as its first; a map-style one is collated `COLLATED_ROWS` examples at a time (a
    micro-batch pads its rows to its longest, so its positions are the most of any part's)."""
    if isinstance(loader.dataset, IterableDataset):
        return loader.batch_size, batch_shape(loader.collate_fn([next(iter(loader.dataset))]))[1]
    indices = next(iter(loader.batch_sampler))
    parts = (indices[start : start + COLLATED_ROWS] for start in range(0, len(indices), COLLATED_ROWS))
    return len(indices), max(batch_shape(loader.collate_fn([loader.dataset[i] for i in part]))[1] for part in parts)


# --- the estimate --------------------------------------------------------------------------------------------------


def estimate_training(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    trainer_flags: dict[str, Any],
    max_steps: int,
    probe_steps: int = PROBE_STEPS,
    counted_batches: int = 1000,
    force: bool = False,
) -> TrainingEstimate:
    """Predict what training `module` on `datamodule` for `max_steps` optimizer steps costs, from a probe of
    1 + `probe_steps` real steps (see the module docstring).

    Args:
        module: An unconfigured `FineTuning` / `ContinualPretraining` (its model not built yet); left as given.
        datamodule: The data module the run trains on (`Instructions`, `TextCorpus`, a LitGPT one); left as given.
        trainer_flags: The run's `lightning.Trainer` arguments (accelerator, devices, precision, accumulation, ...).
        max_steps: The run's budget in optimizer steps.
        probe_steps: Timed steps after the warm-up steps.
        counted_batches: FLOPs are counted over the micro-batch shapes of the run's first optimizer steps, as many
            as hold this many micro-batches (at least one step), and their mean carried over to the other steps.
        force: Probe even when its micro-batches are predicted not to fit in memory (by default that raises
            `InsufficientMemoryError` before the probe's steps, see the module docstring).
    """
    _check_arguments(module, max_steps, probe_steps, counted_batches)
    start = time.perf_counter()
    probe_module, probe_data = copy.deepcopy(module), copy.deepcopy(datamodule)
    checkpointing = bool(probe_module.hparams.activation_checkpointing)
    probe_module.export_settings = None
    probe_module.hparams.activation_checkpointing = False  # the probe puts it on after measuring the first micro-batch
    accumulate = int(trainer_flags.get("accumulate_grad_batches") or 1)
    probe = _Probe(checkpointing, force)
    with quiet_probe((WarmupWarning,)), tempfile.TemporaryDirectory(prefix="lightning-adapt-estimate-") as root, \
            torch.random.fork_rng(devices=[]):
        trainer = L.Trainer(**_probe_flags(trainer_flags, root, probe, WARMUP_STEPS + probe_steps, accumulate))
        if trainer.world_size > 1:
            raise ValueError(
                f"estimate predicts one process, but these Trainer flags start {trainer.world_size} (devices="
                f"{trainer_flags.get('devices')}, num_nodes={trainer_flags.get('num_nodes', 1)}): estimate with "
                "devices=1 and num_nodes=1 (each DDP process holds as much; FLOPs and tokens add up over processes)."
            )
        trainer.fit(probe_module, datamodule=probe_data)
        steps, epoch = _run_steps(probe_data, trainer_flags, max_steps, accumulate, counted_batches)
    model = probe_module.model
    config = model.config
    batches = [batch for step in steps for batch in step]
    scale = max_steps / len(steps)
    flops = scale * sum(micro_batch_flops(config, batch.rows, batch.positions, batch.labelled) for batch in batches)
    longest = max(batch.rows * batch.positions for batch in batches)
    memory = _memory(probe, model, trainer.optimizers, longest)
    timed = [step for step in sorted(probe.step_seconds) if step >= WARMUP_STEPS]
    per_step = statistics.fmean(probe.step_seconds[step] for step in timed)
    per_position = sum(probe.step_seconds[step] for step in timed) / sum(probe.step_positions[step] for step in timed)
    positions = scale * sum(batch.rows * batch.positions for batch in batches)
    tokens = scale * sum(batch.tokens for batch in batches)
    validations = _validations(trainer_flags, _micro_batches(max_steps, accumulate, epoch), epoch)
    params = list(model.parameters())
    return TrainingEstimate(
        device=str(trainer.strategy.root_device),
        params_trainable=sum(p.numel() for p in params if p.requires_grad),
        params_total=sum(logical_numel(p) for p in params),
        memory=memory,
        activation_checkpointing=checkpointing,
        max_steps=max_steps,
        tokens_per_step=tokens / max_steps,
        training_flops=flops,
        probe_steps=len(timed),
        probe_seconds_per_step=per_step,
        predicted_train_s=per_position * positions,
        validations=None if validations is None else 1 + validations,
        validation_s=probe.heldout_s,
        probe_s=time.perf_counter() - start,
    )


def _check_arguments(module: L.LightningModule, max_steps: int, probe_steps: int, counted_batches: int) -> None:
    """Refuse a budget of no steps, no probe or counted steps, and a module whose model is built already."""
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps}: the estimate needs the run's budget in optimizer steps; set "
                         "trainer.max_steps to a positive number.")
    if probe_steps < 1 or counted_batches < 1:
        raise ValueError(f"estimate_training: probe_steps={probe_steps} and counted_batches={counted_batches} must "
                         "be positive.")
    if getattr(module, "model", None) is not None:
        raise ValueError("estimate_training needs a module whose model is not built yet (configure_model not run): "
                         "pass a freshly constructed module.")


def _probe_flags(flags: dict[str, Any], root: str, probe: _Probe, steps: int, accumulate: int) -> dict[str, Any]:
    """The run's Trainer flags for the probe: `steps` optimizer steps, no validation run, nothing written."""
    kept = {name: value for name, value in flags.items() if name not in PROBE_OWNS}
    return kept | dict(
        callbacks=[probe], logger=False, enable_checkpointing=False, default_root_dir=root, max_steps=steps,
        val_check_interval=steps * accumulate + 1, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False,
    )


def _memory(probe: _Probe, model: GPT, optimizers: list[torch.optim.Optimizer], longest: int) -> MemoryEstimate:
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = sum(value.numel() * value.element_size() for optimizer in optimizers for entry in optimizer.state.values()
                for value in entry.values() if isinstance(value, torch.Tensor))
    fixed = local_bytes(model) + trainable + state
    activations = probe.activations
    return MemoryEstimate(
        baseline_bytes=probe.baseline,
        model_bytes=local_bytes(model),
        trainable_bytes=trainable,
        gradient_bytes=trainable,
        optimizer_bytes=state,
        activation_bytes=round(activations.per_position(probe.first_positions, False) * longest),
        activation_bytes_checkpointed=round(activations.per_position(probe.first_positions, True) * longest),
        overhead_bytes=max(0, round(probe.peak - probe.baseline - fixed - probe.largest)),
    )


class _Batch(NamedTuple):
    """A training micro-batch as the estimate counts it: the rows and positions the model computes (padding included),
    its training tokens (`input_tokens`) and the positions with a label (where the LM head is computed)."""

    rows: int
    positions: int
    tokens: int
    labelled: int


class _Shapes(L.LightningModule):
    """Draws a run's micro-batches through a Trainer of its own, as the run's Trainer will (epochs, accumulation,
    `limit_train_batches`), and records each optimizer step's micro-batches (`_Batch`); computes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.steps: list[list[_Batch]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.trainer.global_step >= len(self.steps):
            self.steps.append([])
        self.steps[-1].append(_Batch(*batch_shape(batch), input_tokens(batch), labelled_positions(batch)))
        return self.anchor * 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.anchor], lr=0.0)


def _run_steps(
    datamodule: L.LightningDataModule, flags: dict[str, Any], max_steps: int, accumulate: int, counted: int
) -> tuple[list[list[_Batch]], float]:
    """The micro-batches (`_Batch`) of the run's first optimizer steps (up to `max_steps`, as many as hold `counted`
    micro-batches, at least one), drawn by a Trainer exactly as the run's Trainer draws them; and the batches per
    epoch (inf: a stream)."""
    epoch = _epoch_length(datamodule.train_dataloader(), flags.get("limit_train_batches"))
    shapes = _Shapes()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=min(max_steps, max(1, counted // accumulate)),
        accumulate_grad_batches=accumulate, limit_train_batches=flags.get("limit_train_batches"), limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(shapes, datamodule=copy.deepcopy(datamodule))
    if not shapes.steps:
        raise ValueError(f"The training data of {type(datamodule).__name__} yields no batches.")
    return shapes.steps, epoch


def _epoch_length(loader: Any, limit: int | float | None) -> float:
    """Training batches per epoch, as the Trainer limits them (`limit_train_batches`); inf for an endless stream."""
    try:
        length: float = len(loader)
    except TypeError:
        return float("inf")
    if limit is None:
        return length
    return min(length, limit) if isinstance(limit, int) else int(length * limit)


def _micro_batches(max_steps: int, accumulate: int, epoch: float) -> int:
    """Training micro-batches of `max_steps` optimizer steps (each epoch's last step takes those left)."""
    if epoch == float("inf"):
        return max_steps * accumulate
    per_epoch = -(-int(epoch) // accumulate)
    epochs, steps = divmod(max_steps, per_epoch)
    return epochs * int(epoch) + min(steps * accumulate, int(epoch))


def _validations(flags: dict[str, Any], batches: int, epoch_batches: float) -> int | None:
    """Validations Lightning runs in `batches` training micro-batches (None for a time-based interval)."""
    if flags.get("limit_val_batches") == 0:
        return 0
    interval = flags.get("val_check_interval") or 1.0
    every = flags.get("check_val_every_n_epoch", 1)
    if not isinstance(interval, (int, float)):
        return None
    if every is None:
        return batches // int(interval)
    check = int(interval) if isinstance(interval, int) else max(1, int(epoch_batches * interval))
    if epoch_batches == float("inf"):
        return batches // check
    epochs, rest = divmod(batches, int(epoch_batches))
    done = sum(int(epoch_batches) // check for epoch in range(1, epochs + 1) if epoch % every == 0)
    return done + (rest // check if (epochs + 1) % every == 0 else 0)


def estimate_icl(
    tasks: TaskSpec | Sequence[TaskSpec], checkpoint_dir: str | Path, answer_tokens: float = ANSWER_TOKENS
) -> list[ICLEstimate]:
    """Per task, number of retrieved documents and k: the mean prompt tokens per query (over queries, then seeds, as
    ICL evaluations log `prompt_tokens`), tokenized by the ICL runner's own code, and `flops.inference_flops` of one
    query on the base model of `checkpoint_dir` with `answer_tokens` answer tokens, or for a task that generates its
    replies with its `max_new_tokens` (an upper bound: the report counts the tokens each method generated). lm-eval
    tasks are listed with None."""
    tasks = with_overrides(tasks, None, None)
    checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
    config = load_config(checkpoint_dir)
    ours = [task for task in tasks if isinstance(task, ICLTask)]
    plans = {}
    if ours:
        runner = ICLRunner(ours)
        runner.prepare(load_tokenizer(checkpoint_dir), config.block_size)
        plans = {data.task.name: plan for data, plan in zip(runner.data, runner.plans)}
    estimates = []
    for task in tasks:
        plan = plans.get(task.name)
        if plan is None:
            estimates += [ICLEstimate(task.name, k, None, None) for k in task.shots]
            continue
        generates = task.generate is not None and task.generate.generates
        answer = task.generate.max_new_tokens if generates else answer_tokens
        for k, docs in dict.fromkeys((k, docs) for k, docs, _ in plan.prompts):
            tokens = statistics.fmean(
                statistics.fmean(len(item.context) for item in plan.prompts[(k, docs, seed)]) for seed in task.seeds
            )
            estimates.append(ICLEstimate(task.name, k, tokens, inference_flops(config, tokens, answer), docs, answer,
                                         generates))
    return estimates


# --- the table -----------------------------------------------------------------------------------------------------


def format_estimate(training: TrainingEstimate | None, icl: Sequence[ICLEstimate] = ()) -> str:
    """The printed estimate: one block for the training run (if any), one line per ICL task and k (and number of
    retrieved documents, where a task has them)."""
    lines = [] if training is None else _training_lines(training)
    if icl:
        documents = any(row.docs for row in icl)
        lines.append(f"ICL, per query: task | k{' | documents' if documents else ''} | prompt tokens | FLOPs")
        for row in icl:
            tokens = "n/a (lm-eval builds its prompts when it runs)" if row.prompt_tokens is None else (
                f"{row.prompt_tokens:,.1f} | {row.query_flops:.3e}")
            if row.generates:
                tokens += f" (with {row.answer_tokens:g} generated tokens, max_new_tokens: an upper bound)"
            lines.append(f"  {row.task} | {row.k}{f' | {row.docs}' if documents else ''} | {tokens}")
    return "\n".join(lines)


def _training_lines(training: TrainingEstimate) -> list[str]:
    m, checkpointing = training.memory, training.activation_checkpointing
    val = "not predicted (time-based interval)" if training.validations is None else (
        f"{training.predicted_val_s:,.1f} s in {training.validations} held-out evaluations of "
        f"{training.validation_s:.2f} s")
    lines = [
        f"Training estimate, one process on {training.device} (probe: {WARMUP_STEPS} warm-up + {training.probe_steps} "
        f"timed steps, {training.probe_s:.1f} s)",
        f"  parameters        {training.params_trainable:,} trainable of {training.params_total:,}",
        f"  training FLOPs    {training.training_flops:.3e} ({training.max_steps:,} steps x "
        f"{training.tokens_per_step:,.0f} tokens per step)",
        f"  training time     {training.predicted_train_s:,.1f} s ({training.probe_seconds_per_step:.3f} s per step); "
        f"validation {val}; ICL evaluations not included",
        f"  peak memory       {format_bytes(training.predicted_peak_bytes)} (activation checkpointing "
        f"{'on' if checkpointing else 'off'}; {'off' if checkpointing else 'on'}: "
        f"{format_bytes(m.peak_bytes(not checkpointing))})",
        f"    baseline        {format_bytes(m.baseline_bytes)} (the process before the model loads)",
        f"    model           {format_bytes(m.model_bytes)} (weights and buffers; trainable {format_bytes(m.trainable_bytes)})",
        f"    gradients       {format_bytes(m.gradient_bytes)}",
        f"    optimizer       {format_bytes(m.optimizer_bytes)}",
        f"    activations     {format_bytes(m.activation_bytes)} (checkpointed: {format_bytes(m.activation_bytes_checkpointed)})",
        f"    overhead        {format_bytes(m.overhead_bytes)} (measured in the probe beyond these parts)",
    ]
    return lines
