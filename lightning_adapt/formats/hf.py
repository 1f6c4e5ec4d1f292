"""The Hugging Face transformers model folder (`hf`) as an export format, written from and read back into LitGPT.

Weight names come from LitGPT's own converters (`litgpt.scripts.convert_lit_checkpoint` writes,
`litgpt.scripts.convert_hf_checkpoint` reads: the `copy_weights_*` functions); `config.json` and
`generation_config.json` are plain JSON, so neither writing nor reading needs transformers. Supported: the llama family
(`LlamaForCausalLM`) and its Qwen2 variant with biases on q/k/v (`Qwen2ForCausalLM`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from litgpt import Config
from litgpt.scripts.convert_hf_checkpoint import copy_weights_hf_llama
from litgpt.scripts.convert_hf_checkpoint import copy_weights_qwen_2_5 as read_weights_qwen_2_5
from litgpt.scripts.convert_lit_checkpoint import copy_weights_llama, copy_weights_qwen_2_5
from safetensors.torch import load_file, save_file

from lightning_adapt.formats.base import ExportError, Format, ModelInfo, Weights
from lightning_adapt.model.loading import CONFIG_FILE, load_tokenizer
from lightning_adapt.techniques.base import base_config

HF_WEIGHTS_FILE = "model.safetensors"
HF_CONFIG_FILE = "config.json"
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
    """LitGPT's converter of LitGPT weights to transformers' names."""
    read_weights: Callable[..., None]
    """LitGPT's converter of transformers' weights to LitGPT's names."""


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
        return Architecture("Qwen2ForCausalLM", "qwen2", copy_weights_qwen_2_5, read_weights_qwen_2_5)
    return Architecture("LlamaForCausalLM", "llama", copy_weights_llama, copy_weights_hf_llama)


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
    save_file(weights, str(folder / HF_WEIGHTS_FILE), metadata={"format": "pt"})
    write_json(folder / HF_CONFIG_FILE, hf_config(config, dtype, tied, tokenizer.bos_id, tokenizer.eos_id))
    write_json(folder / "generation_config.json", generation_config(checkpoint_dir, tokenizer.bos_id, tokenizer.eos_id))
    for name in HF_TOKENIZER_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copyfile(checkpoint_dir / name, folder / name)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def config_from_hf(hf: dict, name: str) -> Config:
    """The LitGPT config of a transformers `config.json` that `hf_config` wrote (a llama or Qwen2 model)."""
    if hf.get("model_type") not in ("llama", "qwen2"):
        raise ExportError(f"Cannot read a Hugging Face model of model_type {hf.get('model_type')!r}: supported are {SUPPORTED}.")
    scaling = hf.get("rope_scaling")
    adjustments = None if not scaling else {
        "factor": scaling["factor"], "low_freq_factor": scaling["low_freq_factor"],
        "high_freq_factor": scaling["high_freq_factor"],
        "original_max_seq_len": scaling["original_max_position_embeddings"],
    }
    rope_base = hf["rope_theta"]
    return Config(
        name=name, **LLAMA_FIELDS, block_size=hf["max_position_embeddings"], vocab_size=hf["vocab_size"],
        padded_vocab_size=hf["vocab_size"], n_layer=hf["num_hidden_layers"], n_head=hf["num_attention_heads"],
        n_embd=hf["hidden_size"], n_query_groups=hf["num_key_value_heads"], head_size=hf.get("head_dim"),
        intermediate_size=hf["intermediate_size"], norm_eps=hf["rms_norm_eps"],
        rope_base=int(rope_base) if float(rope_base).is_integer() else rope_base, rope_adjustments=adjustments,
        attn_bias=hf["model_type"] == "qwen2",
    )


class HFWeights:
    """The weights of a transformers model folder under LitGPT's names (a tied `lm_head` copied from the embedding)."""

    def __init__(self, folder: Path, config: Config) -> None:
        self.folder, self.config = folder, config

    def merged(self) -> dict[str, torch.Tensor]:
        state_dict: dict[str, torch.Tensor] = {}
        hf_architecture(self.config).read_weights(self.config, {}, state_dict, load_file(self.folder / HF_WEIGHTS_FILE))
        return state_dict

    def adapter(self) -> dict[str, torch.Tensor]:
        raise ExportError(f"'{self.folder}' is a whole transformers model: it holds no LoRA adapter.")


class HFFormat(Format):
    """A transformers model folder (LoRA merged) that `AutoModelForCausalLM.from_pretrained` loads: see
    `write_hf_model`. Read back into LitGPT names and config (named after the folder)."""

    name = "hf"
    kind = "hf-export"
    description = "Hugging Face model"

    def check(self, model: ModelInfo) -> None:
        super().check(model)
        hf_architecture(model.config)

    def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
        write_hf_model(base_config(model.config), weights.merged(), model.tokenizer_dir, folder)

    def holds(self, path: Path) -> bool:
        return (path / HF_CONFIG_FILE).is_file() and (path / HF_WEIGHTS_FILE).is_file()

    def read(self, path: Path) -> tuple[ModelInfo, Weights]:
        config = config_from_hf(json.loads((path / HF_CONFIG_FILE).read_text(encoding="utf-8")), path.name)
        return ModelInfo(config, path, path), HFWeights(path, config)
