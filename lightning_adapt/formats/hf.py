"""Write Hugging Face folders from a LitGPT model: a transformers model (`hf`) and a PEFT LoRA adapter (`peft`).

Weight names come from LitGPT's own LitGPT→HF converter (`litgpt.scripts.convert_lit_checkpoint`, the
`copy_weights_*` functions); `config.json`, `generation_config.json` and `adapter_config.json` are plain JSON, so
writing them needs neither transformers nor peft. Supported: the llama family (`LlamaForCausalLM`) and its
Qwen2 variant with biases on q/k/v (`Qwen2ForCausalLM`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import litgpt.lora
from litgpt import Config
from litgpt.scripts.convert_lit_checkpoint import copy_weights_llama, copy_weights_qwen_2_5
from safetensors.torch import save_file

from lightning_adapt.formats.litgpt import ExportError
from lightning_adapt.model.loading import CONFIG_FILE, load_tokenizer

HF_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt",
)
LLAMA_FIELDS = {
    "norm_class_name": "RMSNorm", "mlp_class_name": "LLaMAMLP", "parallel_residual": False,
    "shared_attention_norm": False, "bias": False, "lm_head_bias": False, "rotary_percentage": 1.0,
    "rope_condense_ratio": 1, "rope_interleave": False, "rope_indices": None, "rope_local_base_freq": None,
    "norm_qk": False, "post_attention_norm": False, "post_mlp_norm": False, "norm_1": True, "norm_2": True,
    "scale_embeddings": False, "attention_scores_scalar": None, "attention_logit_softcapping": None,
    "final_logit_softcapping": None, "sliding_window_size": None, "n_expert": 0, "latent_attention": None,
}
"""The `model_config.yaml` values a llama-family model has (anything else computes something transformers' Llama
and Qwen2 do not)."""
LLAMA3_ROPE = ("factor", "low_freq_factor", "high_freq_factor", "original_max_seq_len")
SUPPORTED = (
    "the llama family (LlamaForCausalLM: RMSNorm, LLaMAMLP, full RoPE, optionally Llama 3 rope_adjustments, "
    "no biases; e.g. SmolLM2, Llama 2/3) and its Qwen2 variant "
    "(Qwen2ForCausalLM: the same with attn_bias: true)"
)


@dataclass(frozen=True)
class Architecture:
    hf_class: str
    model_type: str
    copy_weights: Callable[..., None]


def hf_architecture(config: Config, target: str = "a Hugging Face format", supported: str = SUPPORTED) -> Architecture:
    """The transformers class that computes what `config` does, or an error naming the fields that differ, the
    format asked for (`target`) and what it supports."""
    found = {key: getattr(config, key) for key in LLAMA_FIELDS}
    wrong = [f"{key}: {value!r} (needs {LLAMA_FIELDS[key]!r})" for key, value in found.items() if value != LLAMA_FIELDS[key]]
    if "Gemma" in config.name:
        wrong.append(f"name: {config.name!r} (Gemma's RMSNorm adds 1 to its weight)")
    adjustments = config.rope_adjustments
    if adjustments is not None and set(adjustments) != set(LLAMA3_ROPE):
        wrong.append(f"rope_adjustments: {adjustments!r} (only Llama 3's {', '.join(LLAMA3_ROPE)})")
    if wrong:
        raise ExportError(
            f"Cannot export '{config.name}' to {target}: its {CONFIG_FILE} has {'; '.join(wrong)}. "
            f"Supported are {supported}. Export other models with --format litgpt."
        )
    if config.attn_bias:
        return Architecture("Qwen2ForCausalLM", "qwen2", copy_weights_qwen_2_5)
    return Architecture("LlamaForCausalLM", "llama", copy_weights_llama)


def hf_state_dict(config: Config, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state_dict` (plain LitGPT keys) under transformers' names, by LitGPT's converter; each tensor its own copy
    (safetensors refuses views that share memory)."""
    hf: dict[str, torch.Tensor] = {}
    hf_architecture(config).copy_weights(config, hf, state_dict)
    return {key: value.contiguous().clone() for key, value in hf.items()}


def hf_config(config: Config, dtype: torch.dtype, tied: bool, bos_id: int | None, eos_id: int | None) -> dict:
    """transformers' `config.json` for `config` (weights in `dtype`, `lm_head` tied to the embeddings when `tied`)."""
    architecture = hf_architecture(config)
    hf = {
        "architectures": [architecture.hf_class],
        "model_type": architecture.model_type,
        "vocab_size": config.padded_vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_query_groups,
        "head_dim": config.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": float(config.rope_base),
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if config.rope_adjustments is not None:
        adjustments = config.rope_adjustments
        hf["rope_scaling"] = {
            "rope_type": "llama3", "factor": adjustments["factor"], "low_freq_factor": adjustments["low_freq_factor"],
            "high_freq_factor": adjustments["high_freq_factor"],
            "original_max_position_embeddings": adjustments["original_max_seq_len"],
        }
    if architecture.model_type == "llama":
        hf.update(attention_bias=False, mlp_bias=False)
    else:
        hf.update(use_sliding_window=False)
    return hf


def generation_config(checkpoint_dir: Path, bos_id: int | None, eos_id: int | None) -> dict:
    """The checkpoint's `generation_config.json`, with the tokenizer's BOS/EOS ids where it names none."""
    path = checkpoint_dir / "generation_config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for key, value in (("bos_token_id", bos_id), ("eos_token_id", eos_id)):
        if config.get(key) is None and value is not None:
            config[key] = value
    return config


def write_hf_model(config: Config, state_dict: dict[str, torch.Tensor], checkpoint_dir: Path, folder: Path) -> None:
    """Fill `folder` with the transformers model of `config` and `state_dict` (plain LitGPT keys, LoRA merged):
    `model.safetensors`, `config.json`, `generation_config.json` and `checkpoint_dir`'s tokenizer files as they are."""
    weights = hf_state_dict(config, state_dict)
    tied = "lm_head.weight" in weights and torch.equal(weights["lm_head.weight"], weights["model.embed_tokens.weight"])
    if tied:
        del weights["lm_head.weight"]
    tokenizer = load_tokenizer(checkpoint_dir)
    dtype = weights["model.embed_tokens.weight"].dtype
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_json(folder / "config.json", hf_config(config, dtype, tied, tokenizer.bos_id, tokenizer.eos_id))
    write_json(folder / "generation_config.json", generation_config(checkpoint_dir, tokenizer.bos_id, tokenizer.eos_id))
    for name in HF_TOKENIZER_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copyfile(checkpoint_dir / name, folder / name)


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


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def base_model_name(config: Config, base_checkpoint_dir: Path) -> str:
    """What PEFT's `base_model_name_or_path` names: the Hugging Face repository LitGPT knows the model by, else the
    base checkpoint folder (export it with --format hf to get the model the adapter applies to)."""
    hf = config.hf_config or {}
    if hf.get("org") and hf.get("name"):
        return f"{hf['org']}/{hf['name']}"
    return str(base_checkpoint_dir.resolve())
