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
BLOCK_PREFIX = re.compile(r"^blk\.(\d+)\.")
"""How a block's tensor names start; the group is the block's index."""


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
    """The LitGPT state dict of a llama or qwen2 GGUF (Q/K/V biases when `config.attn_bias`). The tensors' names and
    shapes are checked against `GPT(config)` before any is read."""
    by_name = {t.name: t for t in tensors}
    _check_block_count(by_name, config.n_layer, architecture)
    qkv_names = {"weight": QKV_NAMES, **({"bias": QKV_BIAS_NAMES} if config.attn_bias else {})}
    _check_shapes(by_name, _expected_shapes(config, qkv_names), config.n_layer, architecture)

    def load(name: str) -> torch.Tensor:
        return to_tensor(by_name[name])

    state_dict = {GLOBAL_NAMES[n]: load(n) for n in GLOBAL_NAMES if n != "output.weight" or n in by_name}
    state_dict.setdefault("lm_head.weight", state_dict["transformer.wte.weight"])  # tied embeddings
    permuted = architecture in PERMUTED_ARCHITECTURES
    for i in range(config.n_layer):
        for kind, names in qkv_names.items():
            q, k, v = (load(f"blk.{i}.{n}") for n in names)
            if permuted:
                q, k = unpermute_rotary(q, config.n_head), unpermute_rotary(k, config.n_query_groups)
            state_dict[f"transformer.h.{i}.attn.qkv.{kind}"] = torch.cat((q, k, v))
        state_dict.update({f"transformer.h.{i}.{dst}": load(f"blk.{i}.{src}") for src, dst in BLOCK_NAMES.items()})
    return state_dict


def _check_block_count(by_name: dict[str, ReaderTensor], n_layer: int, architecture: str) -> None:
    """Refuse a `block_count` other than the number of blocks the file has tensors for, before anything is built
    per block (a 95 KB file may claim 10^9)."""
    blocks = {match[1] for name in by_name if (match := BLOCK_PREFIX.match(name))}
    if n_layer != len(blocks):
        raise GGUFImportError(
            f"{architecture}.block_count = {n_layer}: expected {len(blocks)}, the number of blocks the file has "
            "tensors for ('blk.N.*')"
        )


def _expected_shapes(config: Config, qkv_names: dict[str, tuple[str, ...]]) -> dict[str, tuple[int, ...]]:
    """Each GGUF tensor's shape, in PyTorch's order, that `GPT(config)` needs; `output.weight` is optional."""
    with torch.device("meta"):
        litgpt = {name: tuple(param.shape) for name, param in GPT(config).state_dict().items()}
    shapes = {src: litgpt[dst] for src, dst in GLOBAL_NAMES.items()}
    rows = (config.n_head * config.head_size, *[config.n_query_groups * config.head_size] * 2)
    for i in range(config.n_layer):
        shapes |= {f"blk.{i}.{src}": litgpt[f"transformer.h.{i}.{dst}"] for src, dst in BLOCK_NAMES.items()}
        for kind, names in qkv_names.items():
            columns = litgpt[f"transformer.h.{i}.attn.qkv.{kind}"][1:]
            shapes |= {f"blk.{i}.{name}": (n, *columns) for name, n in zip(names, rows, strict=True)}
    return shapes


def _check_shapes(
    by_name: dict[str, ReaderTensor], expected: dict[str, tuple[int, ...]], n_layer: int, architecture: str
) -> None:
    """Refuse unknown or missing tensors, and shapes other than the metadata's."""
    if unknown := sorted(set(by_name) - set(expected)):
        raise _unknown_tensors_error(unknown, n_layer, architecture)
    if missing := sorted(set(expected) - set(by_name) - {"output.weight"}):
        raise GGUFImportError(f"missing tensors {missing[:5]}")
    for name, tensor in by_name.items():
        shape = tuple(reversed(tensor.shape.tolist()))
        if shape != expected[name]:
            raise GGUFImportError(
                f"tensor {name!r} has shape {shape}: expected {expected[name]}, the shape the metadata's "
                f"{architecture}.* sizes give it"
            )


def _unknown_tensors_error(unknown: list[str], n_layer: int, architecture: str) -> NotSupportedError:
    """Name (the first five of) `unknown`, and say why for those in `KNOWN_UNSUPPORTED_TENSORS`."""
    reasons: dict[str, list[str]] = {}
    for kind in sorted({BLOCK_PREFIX.sub("", name) for name in unknown} & set(KNOWN_UNSUPPORTED_TENSORS)):
        reasons.setdefault(KNOWN_UNSUPPORTED_TENSORS[kind], []).append(kind)
    notes = "".join(f"; {', '.join(kinds)}: {reason}" for reason, kinds in reasons.items())
    return NotSupportedError(
        f"not supported: tensors {unknown[:5]} (not part of a {n_layer}-layer {architecture}{notes})"
    )
