"""A LoRA run's adapter alone in PEFT's format (`peft`): `adapter_model.safetensors` and `adapter_config.json`, for
`peft.PeftModel.from_pretrained` on the base model exported as `hf`. Writing needs neither transformers nor peft."""

from __future__ import annotations

from pathlib import Path

import litgpt.lora
import torch
from litgpt import Config
from safetensors.torch import save_file

from lightning_adapt.formats.base import ExportError, Format, ModelInfo, Weights
from lightning_adapt.formats.hf import hf_architecture, write_json


def peft_adapter(config: litgpt.lora.Config, adapter: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """LitGPT's LoRA matrices (`adapter`, keys `<module>.lora_A|lora_B`) as PEFT names them, and the target modules.

    The fused `attn.qkv` adapter holds one r-row block of A per enabled projection (query, key, value, in that
    order) and B's rows for those projections stacked; B is zero-padded to the full qkv width and split into
    q/k/v by LitGPT's converter, so every HF projection gets exactly its own A and B. Scaling is alpha / r in both.
    """
    copy_weights = hf_architecture(config).copy_weights
    modules = sorted({key.rsplit(".", 1)[0] for key in adapter})
    peft: dict[str, torch.Tensor] = {}
    for module in modules:
        lora_a, lora_b = adapter[f"{module}.lora_A"], adapter[f"{module}.lora_B"]
        if module.endswith("attn.qkv"):
            enabled = (config.lora_query, config.lora_key, config.lora_value)
            q_size, kv_size = config.n_head * config.head_size, config.n_query_groups * config.head_size
            sizes = (q_size, kv_size, kv_size)
            blocks = iter(lora_b.split([size for size, on in zip(sizes, enabled) if on]))
            padded = torch.cat([next(blocks) if on else lora_b.new_zeros(size, config.lora_r)
                                for size, on in zip(sizes, enabled)])
            a_blocks = iter(lora_a.split(config.lora_r))
        else:
            enabled, padded, a_blocks = (True,), lora_b, iter([lora_a])
        hf: dict[str, torch.Tensor] = {}
        try:
            copy_weights(config, hf, {f"{module}.weight": padded})
        except (KeyError, NotImplementedError) as error:
            raise ExportError(
                f"The LoRA adapter on '{module}' has no Hugging Face counterpart ({error}); it cannot be written in "
                "PEFT's format. Export the merged model with --format hf instead."
            ) from None
        if len(hf) != len(enabled):
            raise ExportError(f"The LoRA adapter on '{module}' maps to {list(hf)}, not one module per projection.")
        for (name, b), on in zip(hf.items(), enabled):
            if on:
                prefix = "base_model.model." + name.removesuffix(".weight")
                peft[f"{prefix}.lora_A.weight"] = next(a_blocks).contiguous().clone()
                peft[f"{prefix}.lora_B.weight"] = b.contiguous().clone()
    targets = sorted({key.split(".")[-3] for key in peft})
    return peft, targets


def adapter_config(config: litgpt.lora.Config, targets: list[str], base_model: str) -> dict:
    """PEFT's `adapter_config.json` for LitGPT's LoRA settings in `config`."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "inference_mode": True,
    }


def write_peft_adapter(config: litgpt.lora.Config, adapter: dict[str, torch.Tensor], base_model: str,
                       folder: Path) -> None:
    """Fill `folder` with the LoRA adapter in PEFT's format: `adapter_model.safetensors` and `adapter_config.json`."""
    weights, targets = peft_adapter(config, adapter)
    save_file(weights, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    write_json(folder / "adapter_config.json", adapter_config(config, targets, base_model))



def base_model_name(config: Config, base_checkpoint_dir: Path) -> str:
    """What PEFT's `base_model_name_or_path` names: the Hugging Face repository LitGPT knows the model by, else the
    base checkpoint folder (export it with --format hf to get the model the adapter applies to)."""
    hf = config.hf_config or {}
    if hf.get("org") and hf.get("name"):
        return f"{hf['org']}/{hf['name']}"
    return str(base_checkpoint_dir.resolve())


class PEFTFormat(Format):
    """A LoRA model's adapter alone in PEFT's format, naming the base model it applies to (see `base_model_name`).
    Not read back: LitGPT's fused q/k/v adapter is split per projection, and the adapter needs its base model."""

    name = "peft"
    kind = "peft-export"
    description = "PEFT adapter"
    adapter_only = True

    def check(self, model: ModelInfo) -> None:
        super().check(model)
        hf_architecture(model.config)

    def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
        write_peft_adapter(model.config, weights.adapter(), base_model_name(model.config, model.base_dir), folder)
