"""Write LitGPT checkpoint folders from a trained model: merged weights, and the LoRA adapter alone."""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import torch
import yaml
import litgpt.lora
from litgpt import GPT, Config
from litgpt.lora import LoRALinear, lora_filter
from litgpt.prompts import PromptStyle, save_prompt_style
from litgpt.utils import copy_config_files, save_config

from lightning_adapt.core.atomic import atomic_directory, atomic_torch_save
from lightning_adapt.model.loading import WEIGHTS_FILE

ADAPTER_FILE = "lit_model.pth.lora"
HYPERPARAMETERS_FILE = "hyperparameters.yaml"


class ExportError(ValueError):
    """A model, run or setting that cannot be exported as asked; the message names the field and the way out."""


def base_config(config: Config) -> Config:
    """`config` without its LoRA fields: what LitGPT tools expect in `model_config.yaml`."""
    names = {f.name for f in fields(Config)}
    return Config(**{key: value for key, value in asdict(config).items() if key in names})


def is_lora(model: GPT) -> bool:
    return isinstance(model.config, litgpt.lora.Config) and model.config.lora_r > 0


def adapter_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The LoRA parameters alone, in LitGPT's key naming (as `litgpt finetune_lora` saves them)."""
    return {key: value.detach().cpu() for key, value in model.state_dict().items() if lora_filter(key, value)}


def merged_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Base weights with the LoRA updates added in (W + B·A·alpha/r), keyed as a plain LitGPT `GPT`.

    Quantized base layers are dequantized first, so QLoRA exports a normal full-precision checkpoint.
    """
    from lightning_adapt.model.quantize import dequantized_weight

    linears = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    inside = tuple(f"{name}.linear." for name in linears)
    state = {
        key: value.detach().cpu()
        for key, value in model.state_dict().items()
        if not key.startswith(inside) and not lora_filter(key, value)
    }
    dtype = model.transformer.wte.weight.dtype
    for name, module in linears.items():
        weight = dequantized_weight(module.linear).float()
        if module.r > 0:
            weight = weight + module.get_lora_AB().detach().float()
        state[f"{name}.weight"] = weight.to(dtype).cpu()
        if module.linear.bias is not None:
            state[f"{name}.bias"] = module.linear.bias.detach().cpu()
    return state


EXPORT_KIND = "export"


def export_checkpoint(
    model: GPT,
    out_dir: str | Path,
    source_checkpoint_dir: str | Path,
    prompt_style: PromptStyle | None = None,
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Write `out_dir` as a LitGPT checkpoint folder that `litgpt generate/chat/serve` load unchanged.

    It holds the merged `lit_model.pth`, `model_config.yaml`, the tokenizer and generation files of
    `source_checkpoint_dir`, `prompt_style.yaml`, and for LoRA models the adapter alone (`lit_model.pth.lora`)
    with `hyperparameters.yaml` naming its base checkpoint, as `litgpt merge_lora` reads it.
    The folder appears whole or not at all. It is refused when it is, contains or lies inside the base checkpoint
    or one of `inputs`, and an existing folder is replaced only when it is an earlier export and `overwrite`.
    """
    out_dir = Path(out_dir)
    source_checkpoint_dir = Path(source_checkpoint_dir)
    sources = (source_checkpoint_dir, *inputs)
    with atomic_directory(out_dir, EXPORT_KIND, sources, overwrite, overwrite_hint) as staging:
        copy_config_files(source_checkpoint_dir, staging)
        save_config(base_config(model.config), staging)
        atomic_torch_save(merged_state_dict(model), staging / WEIGHTS_FILE)
        if prompt_style is not None:
            save_prompt_style(prompt_style, staging)
        if is_lora(model):
            atomic_torch_save({"model": adapter_state_dict(model)}, staging / ADAPTER_FILE)
            config = asdict(model.config)
            hyperparameters = {key: value for key, value in config.items() if key.startswith("lora_")}
            hyperparameters["checkpoint_dir"] = str(source_checkpoint_dir.resolve())
            (staging / HYPERPARAMETERS_FILE).write_text(yaml.safe_dump(hyperparameters))
    return out_dir
