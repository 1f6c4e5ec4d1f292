"""Export a trained model from where it lies into any format: a lightning-adapt `.ckpt` (a file, or a folder under
DeepSpeed; its module rebuilt) or a folder in a format that reads back (a LitGPT checkpoint folder such as a run's
`final/`, a Hugging Face model). What `lightning-adapt export` runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from lightning_adapt.core.atomic import check_output_dir
from lightning_adapt.formats.base import ExportError, ModelInfo, Weights, write_format
from lightning_adapt.formats.litgpt import GPTWeights, LitGPTFormat
from lightning_adapt.formats.registry import folder_format, format_names, make_format
from lightning_adapt.methods.checkpoints import load_module
from lightning_adapt.methods.checkpoints import PROMPT_STYLE_KEY, prompt_style_named, read_checkpoint
from lightning_adapt.model.loading import checkpoint_prompt_style, load_config
from lightning_adapt.model.training_checkpoints import is_training_checkpoint
from lightning_adapt.techniques import chosen_technique


@dataclass(frozen=True)
class Source:
    """What an export reads, known before any weight is read."""

    model: ModelInfo
    weights: Weights
    inputs: tuple[Path, ...]
    """The paths it reads: the export may not be, contain or lie inside any of them."""
    format: str | None = None
    """The format of a folder; None for a `.ckpt`."""


class CheckpointWeights:
    """The weights of a `.ckpt`'s model: its module is rebuilt (base checked, trained weights loaded) on first use."""

    def __init__(self, path: Path, checkpoint: dict[str, Any]) -> None:
        self.path, self.checkpoint = path, checkpoint

    @cached_property
    def trained(self) -> GPTWeights:
        return GPTWeights(load_module(self.path, self.checkpoint).model)

    def merged(self) -> dict[str, torch.Tensor]:
        return self.trained.merged()

    def adapter(self) -> dict[str, torch.Tensor]:
        return self.trained.adapter()


def checkpoint_source(path: Path) -> Source:
    """A lightning-adapt `.ckpt` (file or DeepSpeed folder) as an export source: its base checkpoint's config with
    the run's technique, and the prompt style it recorded."""
    checkpoint = read_checkpoint(path)
    hyperparameters = checkpoint.get("hyper_parameters", {})
    if "checkpoint_dir" not in hyperparameters:
        raise ExportError(f"'{path}' was not written by a lightning-adapt module (no checkpoint_dir in its hyper_parameters).")
    checkpoint_dir = Path(hyperparameters["checkpoint_dir"])
    technique = chosen_technique(hyperparameters.get("lora"), hyperparameters.get("technique"))
    config = load_config(checkpoint_dir, technique)
    style = checkpoint.get(PROMPT_STYLE_KEY)
    prompt_style = prompt_style_named(style, path) if style else checkpoint_prompt_style(checkpoint_dir)
    model = ModelInfo(config, checkpoint_dir, checkpoint_dir, prompt_style)
    return Source(model, CheckpointWeights(path, checkpoint), (path, checkpoint_dir))


def read_source(path: Path) -> Source:
    """`path` as an export source, checked without reading any weight: a `.ckpt` file or DeepSpeed folder, or a
    folder of a format that reads back (any other folder is refused as a LitGPT checkpoint folder would be)."""
    if not is_training_checkpoint(path):
        format = folder_format(path) or LitGPTFormat()
        model, weights = format.read(path)
        return Source(model, weights, (path,), format.name)
    return checkpoint_source(path)


def export_model(path: str | Path, out_dir: str | Path, format: str = "hf", overwrite: bool = False,
                 overwrite_hint: str = "overwrite=True", **options: Any) -> Path:
    """Write `out_dir` in `format` (one of `format_names()`, with its `options`, e.g. `outtype="q8_0"` for gguf) from
    `path`: a lightning-adapt `.ckpt` or a folder of another format that reads back (a run's `final/`).

    The format and its options, the source, the model (architecture, tokenizer, adapter) and `out_dir` are checked
    before any weight is read; `out_dir` follows the rules of `atomic_directory` (an earlier export of the same format
    is replaced only with `overwrite`), so it appears whole or not at all.
    """
    target = make_format(format, options)
    source = read_source(Path(path))
    if source.format == target.name:
        others = [name for name in format_names() if name != target.name]
        raise ExportError(f"'{path}' is a folder of the {target.name} format already: --format {target.name} exports a "
                          f".ckpt to that format. Pass --format {', '.join(others)} to convert the folder.")
    target.check(source.model)
    check_output_dir(out_dir, target.kind, source.inputs, overwrite, overwrite_hint)
    return write_format(target, source.model, source.weights, out_dir, source.inputs, overwrite, overwrite_hint)
