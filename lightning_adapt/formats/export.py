"""Every format a trained model is exported to, behind one flow: `lightning-adapt export --format` and the fit-end
`export: {formats: [...]}` of the training modules.

A format is a `FormatWriter`: it checks a model before any weights are read and fills a staging folder that
`atomic_directory` swaps in whole. `litgpt` (a LitGPT checkpoint folder, `lightning_adapt.formats.litgpt`) is written by the
training modules and `export_from_checkpoint`; `hf` and `peft` are built in (`lightning_adapt.formats.hf`); `gguf`
comes from the GGUF plugin (plugins/gguf, entry point `gguf-export`), which needs gguf-py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import litgpt.lora
import torch
import yaml
from litgpt import GPT, Config

from lightning_adapt.core.atomic import atomic_directory, check_output_dir
from lightning_adapt.formats.litgpt import (
    ADAPTER_FILE, HYPERPARAMETERS_FILE, ExportError, adapter_state_dict, base_config, merged_state_dict,
)
from lightning_adapt.formats.hf import base_model_name, hf_architecture, write_hf_model, write_peft_adapter
from lightning_adapt.model.loading import CONFIG_FILE, WEIGHTS_FILE, check_checkpoint_dir, load_config, read_weights

EXPORT_FORMATS = ("litgpt", "hf", "peft", "gguf")
"""A LitGPT checkpoint folder, a transformers model, a PEFT adapter, a llama.cpp GGUF file."""
DEFAULT_GGUF_OUTTYPE = "f16"
"""The tensor type `--format gguf` writes the 2-D weights in unless told (the GGUF plugin's `OUTTYPES` lists them)."""


class FormatWriter(Protocol):
    """One export format: what it is called in an output folder's marker, whether it holds the LoRA adapter alone, a
    check that runs before any weights are read, and the writer of a staging folder."""

    kind: str
    adapter_only: bool

    def check(self, config: Config, checkpoint_dir: Path) -> None: ...

    def write(self, config: Config, weights: dict[str, torch.Tensor], checkpoint_dir: Path, base_dir: Path,
              folder: Path) -> None: ...


class HFWriter:
    """A transformers model folder (LoRA merged)."""

    kind = "hf-export"
    adapter_only = False

    def check(self, config: Config, checkpoint_dir: Path) -> None:
        hf_architecture(config)

    def write(self, config: Config, weights: dict[str, torch.Tensor], checkpoint_dir: Path, base_dir: Path,
              folder: Path) -> None:
        write_hf_model(config, weights, checkpoint_dir, folder)


class PEFTWriter(HFWriter):
    """A LoRA run's adapter alone, in PEFT's format."""

    kind = "peft-export"
    adapter_only = True

    def write(self, config: Config, weights: dict[str, torch.Tensor], checkpoint_dir: Path, base_dir: Path,
              folder: Path) -> None:
        write_peft_adapter(config, weights, base_model_name(config, base_dir), folder)


def check_format(format: str) -> str:
    """`format` if it is one of `EXPORT_FORMATS`, else an error listing them."""
    if format not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format '{format}'. Choose one of: {', '.join(EXPORT_FORMATS)}.")
    return format


def check_outtype(format: str, outtype: str | None) -> str | None:
    """The GGUF tensor type for `--format gguf` (default f16; the plugin checks it), an error for one given to another
    format."""
    if format != "gguf":
        if outtype is not None:
            raise ExportError(f"--outtype is a setting of --format gguf, not of --format {format}; remove it.")
        return None
    return outtype or DEFAULT_GGUF_OUTTYPE


def format_writer(format: str, outtype: str | None = None) -> FormatWriter:
    """The writer of `format` (not `litgpt`, which `export_checkpoint` writes); `gguf` loads the GGUF plugin, with
    an error saying how to install it."""
    from lightning_adapt.core.plugins import plugin

    outtype = check_outtype(check_format(format), outtype)
    if format == "hf":
        return HFWriter()
    if format == "peft":
        return PEFTWriter()
    if format == "gguf":
        return plugin("gguf-export")(outtype)
    raise ExportError(f"--format {format} is written by export_checkpoint, not by a FormatWriter.")


def model_weights(model: GPT, adapter_only: bool) -> tuple[Config, dict[str, torch.Tensor]]:
    """What a format writes from a trained model: its LoRA config and matrices (`adapter_only`), or the plain
    model config and the merged weights."""
    if adapter_only:
        return model.config, adapter_state_dict(model)
    return base_config(model.config), merged_state_dict(model)


def folder_adapter(folder: Path) -> tuple[litgpt.lora.Config, Path]:
    """The LoRA config of a LitGPT folder a run exported (`final/`: its model config with the `lora_*` fields of
    `hyperparameters.yaml`) and its base checkpoint folder; an error when the folder holds no adapter."""
    missing = [name for name in (ADAPTER_FILE, HYPERPARAMETERS_FILE) if not (folder / name).is_file()]
    if missing:
        raise ExportError(
            f"'{folder}' has no LoRA adapter (missing {', '.join(missing)}): --format peft needs a LoRA run's .ckpt or "
            "its final/ folder. Export a full model with --format hf."
        )
    hyperparameters = yaml.safe_load((folder / HYPERPARAMETERS_FILE).read_text(encoding="utf-8")) or {}
    lora = {key: value for key, value in hyperparameters.items() if key.startswith("lora_")}
    config = litgpt.lora.Config.from_file(folder / CONFIG_FILE, **lora)
    return config, Path(hyperparameters.get("checkpoint_dir", folder))


@dataclass(frozen=True)
class Source:
    """What an export reads, known before any weights are: `path` itself, its model config, the folder of its
    tokenizer files, its base checkpoint, and (for a `.ckpt`) the file's content."""

    path: Path
    config: Config
    checkpoint_dir: Path
    base_dir: Path
    checkpoint: dict | None = field(default=None, repr=False)

    @property
    def inputs(self) -> tuple[Path, ...]:
        return (self.path,) if self.checkpoint is None else (self.path, self.checkpoint_dir)


def read_source(path: Path, adapter_only: bool) -> Source:
    """`path` (a `.ckpt`, file or DeepSpeed folder, or a LitGPT checkpoint folder) checked for an export without
    reading model weights."""
    from lightning_adapt.distributed.deepspeed_zero import is_deepspeed_checkpoint
    from lightning_adapt.methods.checkpoints import read_checkpoint

    if path.is_dir() and not is_deepspeed_checkpoint(path):
        check_checkpoint_dir(path)
        if not adapter_only:
            return Source(path, load_config(path), path, path)
        config, base_dir = folder_adapter(path)
        return Source(path, config, path, base_dir)
    checkpoint = read_checkpoint(path)
    hyperparameters = checkpoint.get("hyper_parameters", {})
    if "checkpoint_dir" not in hyperparameters:
        raise ExportError(f"'{path}' was not written by a lightning-adapt module (no checkpoint_dir in its hyper_parameters).")
    if adapter_only and not hyperparameters.get("lora"):
        raise ExportError(
            f"'{path}' is not a LoRA run (its module has lora: None), so there is no adapter for --format peft. "
            "Export the model with --format hf."
        )
    checkpoint_dir = Path(hyperparameters["checkpoint_dir"])
    return Source(path, load_config(checkpoint_dir), checkpoint_dir, checkpoint_dir, checkpoint)


def read_model(source: Source, adapter_only: bool) -> tuple[Config, dict[str, torch.Tensor]]:
    """The model config and the weights an export writes (see `model_weights`)."""
    from lightning_adapt.methods.base import load_module

    if source.checkpoint is None:
        return source.config, read_weights(source.path / (ADAPTER_FILE if adapter_only else WEIGHTS_FILE))
    return model_weights(load_module(source.path, source.checkpoint).model, adapter_only)


def export_model(path: str | Path, out_dir: str | Path, format: str = "hf", overwrite: bool = False,
                 overwrite_hint: str = "overwrite=True", outtype: str | None = None) -> Path:
    """Write `out_dir` in `format` (`hf`, `peft` or `gguf`, see `EXPORT_FORMATS`) from `path`, a lightning-adapt
    `.ckpt` or a LitGPT checkpoint folder (e.g. a run's `final/`); `outtype` is the GGUF tensor type.

    The format, the model's architecture and tokenizer, the adapter's presence and `out_dir` are checked before any
    weights are read; `out_dir` follows the rules of `atomic_directory` (an earlier export of the same format is
    replaced only with `overwrite`), so it appears whole or not at all.
    """
    writer = format_writer(format, outtype)
    source = read_source(Path(path), writer.adapter_only)
    writer.check(source.config, source.checkpoint_dir)
    check_output_dir(out_dir, writer.kind, source.inputs, overwrite, overwrite_hint)
    config, weights = read_model(source, writer.adapter_only)
    with atomic_directory(out_dir, writer.kind, source.inputs, overwrite, overwrite_hint) as staging:
        writer.write(config, weights, source.checkpoint_dir, source.base_dir, staging)
    return Path(out_dir)


@dataclass(frozen=True)
class ExportSettings:
    """What a training run writes into its out_dir when fit ends: `final/` for `litgpt` (a LitGPT checkpoint folder
    with the merged weights and, for LoRA, the adapter) and `final-<format>/` for each other format in `formats`;
    `gguf_outtype` is the tensor type of `gguf`. Every folder is checked before the first training step."""

    formats: list[str] = field(default_factory=lambda: ["litgpt"])
    gguf_outtype: str = DEFAULT_GGUF_OUTTYPE

    def __post_init__(self) -> None:
        if not self.formats:
            raise ExportError("export: formats is empty; write export: false to export nothing.")
        for format in self.formats:
            check_format(format)
        if len(set(self.formats)) < len(self.formats):
            raise ExportError(f"export: formats {self.formats} names a format twice.")
        if "gguf" in self.formats:
            self.writer("gguf")

    def folder_name(self, format: str) -> str:
        return "final" if format == "litgpt" else f"final-{format}"

    def writer(self, format: str) -> FormatWriter:
        """The writer of `format` (not `litgpt`), with `gguf_outtype` for gguf."""
        return format_writer(format, self.gguf_outtype if format == "gguf" else None)


def export_settings(export: bool | ExportSettings | dict) -> ExportSettings | None:
    """A module's `export` argument as settings: True is a LitGPT `final/` alone, False nothing."""
    if isinstance(export, dict):
        return ExportSettings(**export)
    if isinstance(export, bool):
        return ExportSettings() if export else None
    return export
