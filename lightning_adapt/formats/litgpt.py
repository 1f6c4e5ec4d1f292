"""The LitGPT checkpoint folder as an export format: merged weights, and the LoRA adapter alone, as `litgpt
generate/chat/serve` and `litgpt merge_lora` read them (an Adapter V2 model whole, with its adapter alone, as
`litgpt generate_adapter_v2` reads it); read back as the source of the other formats."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from litgpt import GPT, Config
from litgpt.prompts import PromptStyle, has_prompt_style, load_prompt_style, save_prompt_style
from litgpt.utils import copy_config_files, save_config

from lightning_adapt.core.atomic import atomic_torch_save
from lightning_adapt.formats.base import Format, ModelInfo, Weights, write_format
from lightning_adapt.model.loading import CONFIG_FILE, WEIGHTS_FILE, check_checkpoint_dir, load_config, read_weights
from lightning_adapt.model.quantize import dequantized_weight
from lightning_adapt.techniques import TECHNIQUES, technique_of
from lightning_adapt.techniques.base import base_config

HYPERPARAMETERS_FILE = "hyperparameters.yaml"
EXPORT_KIND = "export"
"""The marker kind of a LitGPT export folder (`final/`)."""


def adapter_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The technique's adapter alone, in LitGPT's key naming (as `litgpt finetune_lora` or `finetune_adapter_v2`
    saves it)."""
    technique = technique_of(model.config)
    return {key: value.detach().cpu() for key, value in model.state_dict().items() if technique.in_adapter(key, value)}


def merged_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The `lit_model.pth` of `model` (`Technique.litgpt_weights`): base weights with LoRA updates added in, keyed as
    a plain LitGPT `GPT` (a plain model's weights as they are); an Adapter V2 model whole. Quantized base layers are
    dequantized first, so QLoRA exports a normal full-precision checkpoint."""
    technique = technique_of(model.config)
    if technique is None:
        return {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return technique.litgpt_weights(model, dequantized_weight)


class GPTWeights:
    """The weights of a LitGPT model in memory; the merge is computed once however many formats write it."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.merged_weights: dict[str, torch.Tensor] | None = None

    def merged(self) -> dict[str, torch.Tensor]:
        if self.merged_weights is None:
            self.merged_weights = merged_state_dict(self.model)
        return self.merged_weights

    def adapter(self) -> dict[str, torch.Tensor]:
        return adapter_state_dict(self.model)


class FolderWeights:
    """The weights of a LitGPT checkpoint folder: `lit_model.pth` and its technique's adapter file."""

    def __init__(self, folder: Path, config: Config) -> None:
        self.folder, self.config = folder, config

    def merged(self) -> dict[str, torch.Tensor]:
        return read_weights(self.folder / WEIGHTS_FILE)

    def adapter(self) -> dict[str, torch.Tensor]:
        return read_weights(self.folder / technique_of(self.config).adapter_file)


def folder_config(folder: Path) -> tuple[Config, Path]:
    """A LitGPT folder's model config, as its technique's config with the settings of `hyperparameters.yaml` where
    the folder holds the technique's adapter file, and the base checkpoint folder that adapter applies to (the folder
    itself without one)."""
    for technique in TECHNIQUES.values():
        if (folder / technique.adapter_file).is_file() and (folder / HYPERPARAMETERS_FILE).is_file():
            hyperparameters = yaml.safe_load((folder / HYPERPARAMETERS_FILE).read_text(encoding="utf-8")) or {}
            base_dir = Path(hyperparameters.pop("checkpoint_dir", folder))
            return technique.config_class.from_file(folder / CONFIG_FILE, **hyperparameters), base_dir
    return load_config(folder), folder


class LitGPTFormat(Format):
    """A LitGPT checkpoint folder that `litgpt generate/chat/serve` load unchanged: the merged `lit_model.pth`,
    `model_config.yaml`, the tokenizer and generation files, `prompt_style.yaml`, and for a LoRA model the adapter
    alone (`lit_model.pth.lora`) with `hyperparameters.yaml` naming its base checkpoint and settings, as `litgpt
    merge_lora` reads it. An Adapter V2 model has no plain form: its config keeps the `adapter_*` fields, its
    `lit_model.pth` the whole model, its adapter alone is `lit_model.pth.adapter_v2` (`litgpt generate_adapter_v2
    --checkpoint_dir FOLDER --adapter_path FOLDER/lit_model.pth.adapter_v2` loads it). Any LitGPT model can be
    written; the folder reads back with its adapter."""

    name = "litgpt"
    kind = EXPORT_KIND
    description = "LitGPT checkpoint"

    def folder_name(self) -> str:
        return "final"

    def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
        copy_config_files(model.tokenizer_dir, folder)
        technique = model.technique
        save_config(base_config(model.config) if technique is None else technique.litgpt_config(model.config), folder)
        atomic_torch_save(weights.merged(), folder / WEIGHTS_FILE)
        if model.prompt_style is not None:
            save_prompt_style(model.prompt_style, folder)
        if technique is not None:
            atomic_torch_save({"model": weights.adapter()}, folder / technique.adapter_file)
            hyperparameters = {**technique.config_kwargs(), "checkpoint_dir": str(model.base_dir.resolve())}
            (folder / HYPERPARAMETERS_FILE).write_text(yaml.safe_dump(hyperparameters))

    def holds(self, path: Path) -> bool:
        return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()

    def read(self, path: Path) -> tuple[ModelInfo, Weights]:
        check_checkpoint_dir(path)
        config, base_dir = folder_config(path)
        style = load_prompt_style(path) if has_prompt_style(path) else None
        return ModelInfo(config, path, base_dir, style), FolderWeights(path, config)


def export_checkpoint(
    model: GPT,
    out_dir: str | Path,
    source_checkpoint_dir: str | Path,
    prompt_style: PromptStyle | None = None,
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Write `out_dir` as a LitGPT checkpoint folder of `model` (see `LitGPTFormat`), with the tokenizer and
    generation files of `source_checkpoint_dir`, its base checkpoint.

    The folder appears whole or not at all. It is refused when it is, contains or lies inside the base checkpoint
    or one of `inputs`, and an existing folder is replaced only when it is an earlier export and `overwrite`.
    """
    source_checkpoint_dir = Path(source_checkpoint_dir)
    info = ModelInfo(model.config, source_checkpoint_dir, source_checkpoint_dir, prompt_style)
    return write_format(LitGPTFormat(), info, GPTWeights(model), out_dir, (source_checkpoint_dir, *inputs), overwrite,
                        overwrite_hint)

