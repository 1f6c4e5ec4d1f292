"""AdaptationModule: what every training method shares — loading, optimisation, held-out losses, checkpoints, export."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from litgpt import GPT
from litgpt.data import DataModule as LitGPTDataModule
from litgpt.prompts import PromptStyle
from torchmetrics.aggregation import MeanMetric

from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.core.atomic import check_output_dir, claim_folder, release_folder
from lightning_adapt.data.corpus import heldout_blocks
from lightning_adapt.data.instructions import refuse_dropped_inputs
from lightning_adapt.formats.base import Format, ModelInfo, write_format
from lightning_adapt.formats.litgpt import GPTWeights, export_checkpoint
from lightning_adapt.formats.export import ExportSettings, export_settings
from lightning_adapt.formats.registry import format_class
from lightning_adapt.techniques import Technique, chosen_technique, technique_arguments
from lightning_adapt.techniques.lora import LoRA
from lightning_adapt.methods.optimization import Optimization
from lightning_adapt.model.loading import (
    checkpoint_prompt_style,
    load_config,
    load_model,
    load_tokenizer,
    resolve_checkpoint_dir,
)
from lightning_adapt.methods.checkpoints import (
    BASE_KEY,
    COUNTERS_KEY,
    MODULE_CLASS_KEY,
    MODULE_CLASSES,
    PROMPT_STYLE_KEY,
    RNG_KEY,
    base_fingerprint,
    check_base,
    check_same_method,
    class_path,
    rng_state,
    set_rng_state,
)
from lightning_adapt.model.labelled_logits import labelled_logits
from lightning_adapt.model.packed_attention import packed_attention
from lightning_adapt.model.compiled import compile_blocks
from lightning_adapt.model.quantize import check_quantize, quantized_parameters
from lightning_adapt.record.runs import input_tokens
from lightning_adapt.distributed.strategies import check_training_strategy
from lightning_adapt.distributed.sharding import (
    check_world_size,
    checkpoint_activations,
    clean_name,
    full_trainable_state,
    gathered_root,
    is_fsdp1,
    is_fsdp2,
    is_sharded,
    shard_model,
)



GENERAL_VAL_LENGTH = 256
"""Tokens the model reads per block of general text by default (or its context, if shorter): one length whatever a
run's `max_seq_length`, so that every run of one base model measures the same general-text loss, and a bound, so that
a model with a long context does not spend minutes per validation on it."""


class NoTargetTokensError(ValueError):
    """A training batch in which every label is masked: there is nothing to learn from."""


class AdaptationModule(L.LightningModule):
    """A LitGPT checkpoint trained with next-token cross-entropy on the labels its data module provides.

    The model is built in `configure_model` (so sharding strategies can wrap it) from `checkpoint_dir`; with a
    technique (`lora`, or `technique`) only its parameters train. Protocol for callbacks such as `ICLEvaluation`:
    `self.model` is the LitGPT `GPT`, `self.tokenizer` its `litgpt.Tokenizer`, `self.train_tokens` the training tokens
    seen (`lightning_adapt.record.runs.input_tokens`).

    Held-out loss is logged before the first training step (step 0) and at every validation: val/domain_loss on
    the validation data, and val/general_loss on `general_val` text when given, so forgetting sits on the timeline.
    """

    saves_trainable_weights_only = True
    """Its checkpoints hold the trainable weights only (`on_save_checkpoint`); the sharding strategies gather and
    load those alone."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        MODULE_CLASSES[class_path(cls)] = cls

    def __init__(
        self,
        checkpoint_dir: str | Path,
        lora: LoRA | dict | None = None,
        technique: Technique | dict | None = None,
        quantize: str | None = None,
        optimization: Optimization = Optimization(),
        max_seq_length: int | None = None,
        general_val: str | None = None,
        general_val_blocks: int = 8,
        general_val_length: int | None = None,
        out_dir: str | Path | None = None,
        export: bool | ExportSettings | dict = True,
        activation_checkpointing: bool = False,
        compile: bool = False,
        compile_fallback: bool = False,
    ) -> None:
        """
        Args:
            checkpoint_dir: LitGPT checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files).
            lora: LoRA settings (short for `technique` LoRA); None, with no `technique`, trains every weight.
            technique: the adaptation technique, e.g. `AdapterV2()` (YAML: `technique: {class_path:
                lightning_adapt.AdapterV2, init_args: {...}}`; a `.ckpt` holds `{adapter_v2: {...}}`); at most one of
                `lora` and `technique`. It decides which weights train and the export formats (Adapter V2: litgpt).
            quantize: QLoRA: hold the frozen base linear layers as bitsandbytes nf4, nf4-dq, fp4, fp4-dq or int8
                layers (needs `lora` or a `technique`); runs on CPU and CUDA.
            optimization: the optimizer, its learning-rate schedule and gradient clipping (or their fields as a dict).
            max_seq_length: the most tokens the model reads per training sequence (default: the model's context):
                CPT packs its text into blocks of this many inputs; a longer fine-tuning example is refused, not cut.
            general_val: general text (a file, folder, glob, `builtin:NAME` or `datasets` name; rows read from their
                "text" field) whose loss is logged as val/general_loss before training and at every validation, next
                to val/domain_loss on the validation data: forgetting as it happens. None: no general evaluation.
            general_val_blocks: evaluate on the first this many packed blocks of its paragraphs.
            general_val_length: the tokens the model reads per general-text block (each block holds one more, the
                last target); None: `GENERAL_VAL_LENGTH` (256) or the model's context if shorter, whatever
                `max_seq_length` is, so runs that train at different lengths report comparable general losses.
            out_dir: where `final/` is exported at the end of fit (default: the Trainer's `default_root_dir`).
            export: what to write into `out_dir` when fit ends: True (default) `final/`, the LitGPT checkpoint
                (LoRA merged, Adapter V2 whole; with the adapter alone); `{formats: [litgpt, hf, peft, gguf]}` also
                `final-hf/`, `final-peft/`, `final-gguf/` (see `ExportSettings`); False nothing.
            activation_checkpointing: recompute each transformer block's activations in the backward pass instead of
                keeping them (less memory, about one more forward pass of compute); with or without sharding.
            compile: compile each transformer block with `torch.compile` for the training steps (evaluation runs
                eagerly: its shapes change with every prompt); single device, DDP and FSDP2 (not FSDP1 or DeepSpeed).
                The first steps pay the compilation (and one more when the sequence length first changes); see
                `lightning_adapt.model.compiled` and the README's measured effect on the CPU.
            compile_fallback: where torch.compile is unavailable or fails, warn and train uncompiled instead of
                stopping with the reason.
        """
        super().__init__()
        self.technique = chosen_technique(lora, technique)
        if isinstance(optimization, dict):
            optimization = Optimization(**optimization)
        if isinstance(export, dict):
            export = ExportSettings(**export)
        hyperparameters = {name: plain(value) for name, value in locals().items() if name not in ("self", "__class__")}
        hyperparameters.update(technique_arguments(self.technique))
        self.checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
        hyperparameters["checkpoint_dir"] = str(self.checkpoint_dir)
        check_quantize(quantize, self.technique)
        self.config = load_config(self.checkpoint_dir, self.technique)
        self.tokenizer = load_tokenizer(self.checkpoint_dir)
        self.checked_length("max_seq_length", max_seq_length)
        self.max_seq_length = max_seq_length or self.config.block_size
        self.general_val_length = self.checked_length("general_val_length", general_val_length) or min(
            GENERAL_VAL_LENGTH, self.config.block_size)
        hyperparameters["general_val_length"] = self.general_val_length  # the record says which length was measured
        self.optimization = optimization
        self.export_settings = export_settings(export)
        for format in self.export_settings.formats if self.export_settings else ():
            format_class(format).check_technique(self.technique)  # refused before anything is built
        if general_val_blocks < 1:
            raise ValueError(f"general_val_blocks={general_val_blocks} must be at least 1.")
        self.save_hyperparameters(hyperparameters)
        self.model: GPT | None = None
        self.strict_loading = False
        self.train_tokens = 0
        self.train_examples = 0
        self.val_loss = MeanMetric()
        self.general_batch: dict[str, torch.Tensor] | None = None
        self.general_exclude: frozenset[bytes] = frozenset()
        self.resumed_rng: dict[str, Any] | None = None
        self.rng_after_step: dict[str, Any] | None = None

    def checked_length(self, name: str, length: int | None) -> int | None:
        """`length` (tokens the model reads per sequence), refused outside [2, the model's context]."""
        if length is not None and not 1 < length <= self.config.block_size:
            raise ValueError(
                f"{name}={length} must lie in [2, {self.config.block_size}] "
                f"(the context length of {self.config.name} in {self.checkpoint_dir})."
            )
        return length

    # --- model -----------------------------------------------------------------------------------------

    def configure_model(self) -> None:
        """Build the model from `checkpoint_dir`; under `FSDP2Strategy` and `FSDP1Strategy` it is loaded on the CPU
        (memory-mapped) and each process keeps only its shards, except of a quantized base (QLoRA), which is quantized
        on the device and held whole by every process. FSDP2 shards it here, FSDP1 when the strategy wraps the
        module."""
        if self.model is not None:
            return
        strategy = self.trainer.strategy if self._trainer is not None else None
        sharded = strategy is not None and is_fsdp2(strategy)
        quantize = self.hparams.quantize
        on_cpu = quantize is None and (sharded or (strategy is not None and is_fsdp1(strategy)))
        device = None if on_cpu else self.device
        self.model = load_model(self.checkpoint_dir, self.config, quantize, device)
        if self.technique is not None:
            self.technique.mark_trainable(self.model)
        if self.hparams.compile:
            compile_blocks(self.model, self.hparams.compile_fallback)
        if self.hparams.activation_checkpointing:
            checkpoint_activations(self.model)
        if sharded:
            whole = quantized_parameters(self.model) if quantize else None
            shard_model(self.model, self.device_mesh["data_parallel"], whole)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def default_prompt_style(self) -> PromptStyle:
        return checkpoint_prompt_style(self.checkpoint_dir)

    # --- data ------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        check_world_size(self.trainer.world_size, self.trainer.num_nodes, self.trainer.num_devices)
        check_training_strategy(self.trainer.strategy, self.hparams.quantize, self.hparams.compile)
        if stage == "fit" and self.export_settings is not None and self.trainer.is_global_zero:
            self.check_export_dir()
        if stage == "fit" and self.hparams.general_val and self.general_batch is None:
            self.general_batch, self.general_exclude = heldout_blocks(
                self.hparams.general_val, self.tokenizer, self.general_val_length + 1, self.hparams.general_val_blocks
            )
        datamodule = self.trainer.datamodule if self.trainer is not None else None
        if isinstance(datamodule, LitGPTDataModule):
            self.connect_datamodule(datamodule)

    def connect_datamodule(self, datamodule: LitGPTDataModule) -> None:
        """Give a LitGPT-style data module the tokenizer and length it needs, then let it build its datasets."""
        datamodule.connect(
            tokenizer=self.tokenizer,
            batch_size=getattr(datamodule, "batch_size", 1),
            max_seq_length=self.max_seq_length,
        )
        datamodule.setup()
        refuse_dropped_inputs(datamodule)

    # --- steps -----------------------------------------------------------------------------------------

    def loss_and_count(self, batch: dict[str, Any], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over target tokens, and the number of target tokens. The LM head runs on the target
        positions only (`labelled_logits`); in a packed batch (`Instructions(batching="packed")`: `positions` and
        `segments` keys) each example attends to itself only (`packed_attention`)."""
        input_ids, labels = batch["input_ids"], batch["labels"]
        targets = labels[:, 1:]
        count = (targets != IGNORE_INDEX).sum()
        if int(count) == 0:
            raise NoTargetTokensError(self.no_target_message(batch, batch_idx))
        packed = "segments" in batch
        with packed_attention(self.model, batch["positions"][:, :-1], batch["segments"][:, :-1]) if packed \
                else contextlib.nullcontext():
            logits, targets = labelled_logits(self.model, input_ids[:, :-1], targets, IGNORE_INDEX)
        return torch.nn.functional.cross_entropy(logits, targets), count

    def no_target_message(self, batch: dict[str, Any], batch_idx: int) -> str:
        where = f"batch {batch_idx}"
        if "index" in batch:
            where += f" (examples {batch['index'].tolist()})"
        return (
            f"Training {where} has no target token: every label is masked (-100), so its loss would be a silent 0. "
            f"Usually the prompt fills max_seq_length={self.max_seq_length} and the response was truncated away. "
            "Raise max_seq_length, shorten these prompts, or set mask_prompt=False in the data module."
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss_and_count(batch, batch_idx)
        tokens, examples = self.count_batch(batch)
        self.train_tokens += tokens
        self.train_examples += examples
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self.log("step", float(self.global_step + 1), on_step=True, on_epoch=False)  # the step this batch completes
        return loss

    def count_batch(self, batch: dict[str, Any]) -> tuple[int, int]:
        """Training tokens (`input_tokens`) and examples in this step, summed over all processes."""
        examples = len(batch["index"]) if "index" in batch else len(batch["input_ids"])  # a packed row holds several
        counts = self.sum_over_processes(torch.tensor([input_tokens(batch), examples]))
        return int(counts[0]), int(counts[1])

    def sum_over_processes(self, values: torch.Tensor) -> torch.Tensor:
        values = values.to(self.device)
        return self.all_gather(values).sum(dim=0) if self.trainer.world_size > 1 else values

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        targets = batch["labels"][:, 1:]
        if int((targets != IGNORE_INDEX).sum()) == 0:
            if is_sharded(self.model):  # every process must run as many forward passes as the others
                self.model(batch["input_ids"][:, :-1])
            return
        loss, count = self.loss_and_count(batch, batch_idx)
        self.val_loss.update(loss, weight=count)

    def on_validation_epoch_end(self) -> None:
        if self.val_loss.update_count > 0:
            loss = self.val_loss.compute()
            self.val_loss.reset()
            self.log("val/loss", loss, prog_bar=True)
            self.log("val/ppl", perplexity(loss))
            self.log_dict(loss_metrics("val/domain", loss))
        if self.general_batch is not None and not self.trainer.sanity_checking:
            self.log_dict(loss_metrics("val/general", self.general_loss()))
        self.log("step", float(self.global_step))  # the steps completed when the weights were evaluated

    # --- held-out evaluation: the domain (validation data) and general text, before training and at validation --

    def general_loss(self) -> torch.Tensor:
        """Mean next-token loss on the general held-out blocks (every process evaluates all of them)."""
        batch_size = getattr(self.trainer.datamodule, "batch_size", 1)
        ids, labels = self.general_batch["input_ids"].to(self.device), self.general_batch["labels"].to(self.device)
        total, count = torch.zeros((), device=self.device), 0
        with self.trainer.precision_plugin.forward_context(), gathered_root(self.trainer.strategy.model):
            for start in range(0, len(ids), batch_size):
                batch = {"input_ids": ids[start : start + batch_size], "labels": labels[start : start + batch_size]}
                loss, tokens = self.loss_and_count(batch, start)
                total, count = total + loss.float() * tokens, count + int(tokens)
        return total / count

    def on_train_start(self) -> None:
        """Log the held-out losses of the weights before any training step at step 0 (a resumed run has them)."""
        heldout = self.heldout_at_start() if self.trainer.global_step == 0 else {}
        if heldout:
            self.trainer.callback_metrics.update(heldout)
            for logger in self.loggers:
                logger.log_metrics({name: float(value) for name, value in heldout.items()}, step=0)

    def heldout_at_start(self) -> dict[str, torch.Tensor]:
        """val/domain_* and val/general_* of the weights before any training step (eval mode, RNG untouched)."""
        metrics: dict[str, torch.Tensor] = {}
        was_training = self.training
        self.eval()
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            with self.trainer.precision_plugin.forward_context(), gathered_root(self.trainer.strategy.model):
                for batch_idx, batch in enumerate(self.val_batches()):
                    self.validation_step(batch, batch_idx)
            if self.val_loss.update_count > 0:
                metrics.update(loss_metrics("val/domain", self.val_loss.compute()))
                self.val_loss.reset()
            if self.general_batch is not None:
                metrics.update(loss_metrics("val/general", self.general_loss()))
        self.train(was_training)
        return metrics

    def val_batches(self) -> Iterator[Any]:
        """The batches a validation run would see, on this device."""
        loader, limits = self.trainer.val_dataloaders, self.trainer.num_val_batches
        if loader is None or not limits or not limits[0]:
            return iter(())
        loader = loader[0] if isinstance(loader, (list, tuple)) else loader
        batches = itertools.islice(loader, int(limits[0]) if math.isfinite(limits[0]) else None)
        return (self.trainer.strategy.batch_to_device(batch) for batch in batches)

    # --- optimisation ----------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                f"The Trainer would train {total} optimizer steps (max_steps={self.trainer.max_steps}, "
                f"max_epochs={self.trainer.max_epochs}), so the learning-rate schedule has no length: give max_steps a "
                "positive number of steps, or max_epochs with max_steps=-1."
            )
        return self.optimization.configure((p for p in self.parameters() if p.requires_grad), int(total))

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None, gradient_clip_algorithm: str | None = None
    ) -> None:
        clip = gradient_clip_val if gradient_clip_val is not None else self.optimization.gradient_clip_val
        algorithm = gradient_clip_algorithm or "norm"
        if clip and algorithm == "norm" and is_fsdp1(self.trainer.strategy):
            self.trainer.strategy.model.clip_grad_norm_(clip)  # the norm over every process's shards (FSDP1's own)
        elif clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=algorithm)

    # --- checkpoints and export ------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable weights in the `.ckpt` (the frozen base is reloaded from `checkpoint_dir`, whose
        fingerprint is recorded), with the RNG states of every process."""
        trainable = {clean_name(name) for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint[MODULE_CLASS_KEY] = class_path(type(self))
        checkpoint[COUNTERS_KEY] = {"train_tokens": self.train_tokens, "train_examples": self.train_examples}
        checkpoint[BASE_KEY] = base_fingerprint(self.checkpoint_dir)
        checkpoint[RNG_KEY] = self.rng_states_of_all_processes()
        style = self.export_prompt_style()
        if style is not None:
            checkpoint[PROMPT_STYLE_KEY] = class_path(type(style))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if MODULE_CLASS_KEY in checkpoint:  # the CLI checked it before building the model; Python's fit did not
            check_same_method(checkpoint, self, "The checkpoint being resumed")
        check_base(checkpoint, self.checkpoint_dir, "The checkpoint being resumed")
        counters = checkpoint.get(COUNTERS_KEY, {})
        self.train_tokens = counters.get("train_tokens", 0)
        self.train_examples = counters.get("train_examples", 0)
        states = checkpoint.get(RNG_KEY)
        rank = self._trainer.global_rank if self._trainer is not None else 0
        if states is not None and rank < len(states):
            self.resumed_rng = states[rank]

    def rng_states_of_all_processes(self) -> list[dict[str, Any]]:
        """Every process's RNG states, by global rank (Lightning calls this hook on every rank; rank 0 saves)."""
        state = rng_state()
        if self._trainer is None or self.trainer.world_size == 1:
            return [state]
        states: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(states, state)
        return states

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """On resume, put the RNGs where the interrupted run had them, right before its next training step."""
        if self.resumed_rng is not None:
            set_rng_state(self.resumed_rng)
            self.resumed_rng = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.rng_after_step = rng_state()

    def on_validation_end(self) -> None:
        """Leave the RNGs as the last training step left them (starting the validation DataLoader draws from them), so
        the next steps are those of a run resumed from a checkpoint written at that step."""
        if self.rng_after_step is not None and not self.trainer.sanity_checking:
            set_rng_state(self.rng_after_step)
            self.rng_after_step = None

    def export_dir(self) -> Path:
        """Where the LitGPT checkpoint folder is written when fit ends: `out_dir/final`."""
        root = self.hparams.out_dir or (self.trainer.default_root_dir if self.trainer is not None else "out")
        return Path(root) / "final"

    def export_targets(self) -> list[tuple[Format, Path]]:
        """Each format the fit-end export writes, with its folder (`final/`, `final-hf/`, ...); none without export."""
        settings = self.export_settings
        if settings is None:
            return []
        return [(format, self.export_dir().with_name(format.folder_name())) for format in settings.selected().values()]

    def export_dirs(self) -> dict[str, Path]:
        """The folder of each format the fit-end export writes, by format name."""
        return {format.name: folder for format, folder in self.export_targets()}

    def export(self, out_dir: str | Path) -> Path | None:
        """Write a LitGPT checkpoint folder (merged weights, and the adapter alone for LoRA) to `out_dir`, replacing
        an earlier export there (never anything else). A sharded model's trainable weights are gathered first (every
        process must call this) and global rank 0 writes; it returns None on the other processes."""
        model = self.gathered_model()
        if model is None:
            return None
        return export_checkpoint(model, out_dir, self.checkpoint_dir, self.export_prompt_style(), overwrite=True)

    def export_formats(self) -> dict[str, Path] | None:
        """Write every folder of `export_dirs`, each replacing only an earlier export of its own format. Like `export`,
        every process calls it when the model is sharded; global rank 0 writes and returns the folders."""
        model = self.gathered_model()
        if model is None:
            return None
        info, weights = self.export_model_info(), GPTWeights(model)
        for format, folder in self.export_targets():
            write_format(format, info, weights, folder, [self.checkpoint_dir], overwrite=True)
        return self.export_dirs()

    def gathered_model(self) -> GPT | None:
        """The whole model on global rank 0 (a sharded model's trainable weights gathered: every process must call
        this), None on the other processes of a sharded run."""
        if not is_sharded(self.model):
            return self.model
        trainable = full_trainable_state(self.trainer.strategy.model)
        if not self.trainer.is_global_zero:
            return None
        return self.unsharded_model(trainable)

    def unsharded_model(self, trainable: dict[str, torch.Tensor]) -> GPT:
        """The model on this process's CPU as it trained: the base from `checkpoint_dir` loaded (and quantized) in the
        `trainable` weights' dtype, the training dtype (the precision plugin's default dtype while the model was built:
        bfloat16 under bf16-true), with those weights (full shapes, named as in this module's state dict: `model.…`).
        So a sharded run's `final/` and the export of any checkpoint hold what an unsharded run's `final/` holds."""
        model = load_model(self.checkpoint_dir, self.config, self.hparams.quantize, torch.device("cpu"),
                           trained_dtype(trainable))
        weights = {name.removeprefix("model."): tensor for name, tensor in trainable.items()}
        unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
        if unexpected:
            raise KeyError(f"trained weights the model does not have: {unexpected[:5]}")
        return model

    def export_prompt_style(self) -> PromptStyle | None:
        return self.default_prompt_style()

    def export_model_info(self) -> ModelInfo:
        """The trained model as the export formats see it: its config (with the LoRA fields), base checkpoint and
        prompt style."""
        return ModelInfo(self.config, self.checkpoint_dir, self.checkpoint_dir, self.export_prompt_style())

    def check_export_dir(self) -> None:
        """Refuse, before training, a fit-end export that could not be written: a folder holding something else, a
        format the model cannot be written in (architecture, tokenizer, no adapter for peft, plugin missing), an
        out_dir another run is training into. Then claim the out_dir until fit ends (`teardown`)."""
        info = self.export_model_info()
        for format, folder in self.export_targets():
            format.check(info)
            check_output_dir(folder, format.kind, [self.checkpoint_dir], overwrite=True)
        claim_folder(self.export_dir().parent)

    def on_fit_end(self) -> None:
        if self.export_settings is not None and (self.trainer.is_global_zero or is_sharded(self.model)):
            self.export_formats()
        self.trainer.strategy.barrier("lightning_adapt_export")

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.export_settings is not None:
            release_folder(self.export_dir().parent)


def perplexity(loss: torch.Tensor) -> torch.Tensor:
    return torch.exp(loss.clamp(max=50.0))


def loss_metrics(prefix: str, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"{prefix}_loss": loss, f"{prefix}_ppl": perplexity(loss)}


def plain(value: Any) -> Any:
    """A setting as data a `.ckpt` holds under `weights_only=True`: settings dataclasses as dicts, paths as strings."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value) if isinstance(value, Path) else value


def trained_dtype(trainable: dict[str, torch.Tensor]) -> torch.dtype:
    """The dtype the trained weights have, or the default dtype where they have several."""
    dtypes = {tensor.dtype for tensor in trainable.values() if tensor.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else torch.get_default_dtype()
