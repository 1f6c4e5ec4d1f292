"""GGUF tensors -> a float32 LitGPT state dict: dequantize, undo llama.cpp's Q/K row order, fuse QKV."""

import re

import numpy as np
import torch
from gguf import GGMLQuantizationType, ReaderTensor
from gguf.quants import dequantize
from litgpt import GPT, Config

from lightning_adapt_gguf.errors import GGUFImportError, NotSupportedError

SUPPORTED_TYPES = (
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q2_K,
    GGMLQuantizationType.Q3_K,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q5_K,
    GGMLQuantizationType.Q6_K,
)
"""The tensor types of the files people download (Q4_K_M mixes Q4_K, Q6_K and F32, ...), dequantized by gguf-py."""
PERMUTED_ARCHITECTURES = ("llama",)
"""llama.cpp permutes Q/K rows (and biases) for rotary type NORM (llama); qwen2 (NEOX) keeps Hugging Face's order."""
GLOBAL_NAMES = {
    "token_embd.weight": "transformer.wte.weight",
    "output_norm.weight": "transformer.ln_f.weight",
    "output.weight": "lm_head.weight",
}
BLOCK_NAMES = {
    "attn_norm.weight": "norm_1.weight",
    "attn_output.weight": "attn.proj.weight",
    "ffn_norm.weight": "norm_2.weight",
    "ffn_gate.weight": "mlp.fc_1.weight",
    "ffn_up.weight": "mlp.fc_2.weight",
    "ffn_down.weight": "mlp.proj.weight",
}
QKV_NAMES = ("attn_q.weight", "attn_k.weight", "attn_v.weight")
QKV_BIAS_NAMES = ("attn_q.bias", "attn_k.bias", "attn_v.bias")
KNOWN_UNSUPPORTED_TENSORS = {
    "rope_freqs.weight": "the rope frequency factors of Llama 3.1+ rope scaling, not supported yet",
    **{name: "Q/K/V biases, supported in qwen2 files only" for name in QKV_BIAS_NAMES},
}
"""Tensors real files carry that this import refuses (a block's without its `blk.N.`), and why."""


def to_tensor(tensor: ReaderTensor) -> torch.Tensor:
    """One GGUF tensor as float32, in PyTorch's (out_features, in_features) order."""
    if tensor.tensor_type not in SUPPORTED_TYPES:
        supported = ", ".join(t.name for t in SUPPORTED_TYPES)
        raise NotSupportedError(
            f"not supported: tensor type {tensor.tensor_type.name} (tensor {tensor.name!r}; supported: {supported})"
        )
    array = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
    return torch.from_numpy(array).reshape(tuple(reversed(tensor.shape.tolist())))


def unpermute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Invert llama.cpp's permutation of Q/K rows.

    llama.cpp's converter reorders each head's rows from Hugging Face's "two halves" rotary layout
    to interleaved pairs, viewing them as (heads, 2, head_size // 2) and swapping the last two axes;
    swapping them back restores the layout LitGPT (like Hugging Face) expects.
    """
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def permute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Q/K rows (or biases) in llama.cpp's order for the llama architecture: each head's "two halves" rotary layout
    as interleaved pairs (the inverse of `unpermute_rotary`, as the GGUF export writes them)."""
    rows = weight.shape[0]
    return weight.reshape(n_heads, 2, rows // n_heads // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def state_dict_from_tensors(
    tensors: list[ReaderTensor], config: Config, architecture: str = "llama"
) -> dict[str, torch.Tensor]:
    """The LitGPT state dict of a llama or qwen2 GGUF (Q/K/V biases when `config.attn_bias`); shapes are
    checked against `GPT(config)`."""
    by_name = {t.name: t for t in tensors}
    qkv_names = {"weight": QKV_NAMES, **({"bias": QKV_BIAS_NAMES} if config.attn_bias else {})}
    block_names = [*BLOCK_NAMES, *(name for names in qkv_names.values() for name in names)]
    known = set(GLOBAL_NAMES) | {f"blk.{i}.{n}" for i in range(config.n_layer) for n in block_names}
    if unknown := sorted(set(by_name) - known):
        raise _unknown_tensors_error(unknown, config.n_layer, architecture)

    def load(name: str) -> torch.Tensor:
        if name not in by_name:
            raise GGUFImportError(f"missing tensor {name!r}")
        return to_tensor(by_name[name])

    state_dict = {GLOBAL_NAMES[n]: load(n) for n in GLOBAL_NAMES if n != "output.weight" or n in by_name}
    state_dict.setdefault("lm_head.weight", state_dict["transformer.wte.weight"])  # tied embeddings
    permuted = architecture in PERMUTED_ARCHITECTURES
    for i in range(config.n_layer):
        for kind, names in qkv_names.items():
            q, k, v = (load(f"blk.{i}.{n}") for n in names)
            try:
                if permuted:
                    q, k = unpermute_rotary(q, config.n_head), unpermute_rotary(k, config.n_query_groups)
                state_dict[f"transformer.h.{i}.attn.qkv.{kind}"] = torch.cat((q, k, v))
            except RuntimeError as e:
                shapes = [tuple(t.shape) for t in (q, k, v)]
                raise GGUFImportError(f"blk.{i}: Q/K/V shapes {shapes} do not fit the metadata's head counts") from e
        state_dict.update({f"transformer.h.{i}.{dst}": load(f"blk.{i}.{src}") for src, dst in BLOCK_NAMES.items()})
    _check_shapes(state_dict, config)
    return state_dict


def _unknown_tensors_error(unknown: list[str], n_layer: int, architecture: str) -> NotSupportedError:
    """Name (the first five of) `unknown`, and say why for those in `KNOWN_UNSUPPORTED_TENSORS`."""
    reasons: dict[str, list[str]] = {}
    for kind in sorted({re.sub(r"^blk\.\d+\.", "", name) for name in unknown} & set(KNOWN_UNSUPPORTED_TENSORS)):
        reasons.setdefault(KNOWN_UNSUPPORTED_TENSORS[kind], []).append(kind)
    notes = "".join(f"; {', '.join(kinds)}: {reason}" for reason, kinds in reasons.items())
    return NotSupportedError(
        f"not supported: tensors {unknown[:5]} (not part of a {n_layer}-layer {architecture}{notes})"
    )


def _check_shapes(state_dict: dict[str, torch.Tensor], config: Config) -> None:
    with torch.device("meta"):
        expected = GPT(config).state_dict()
    if missing := sorted(set(expected) - set(state_dict)):
        raise GGUFImportError(f"missing weights for {missing[:5]}")
    for name, param in expected.items():
        if state_dict[name].shape != param.shape:
            raise GGUFImportError(
                f"{name}: shape {tuple(state_dict[name].shape)} does not match the metadata's {tuple(param.shape)}"
            )
