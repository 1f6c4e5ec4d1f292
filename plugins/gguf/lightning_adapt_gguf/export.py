"""Write a LitGPT model as one GGUF file that llama.cpp (and Ollama, LM Studio, transformers' GGUF loader) reads.

The inverse of `convert_gguf`: llama.cpp's tensor names and Q/K row order (llama; Qwen2 keeps Hugging Face's), the
hyperparameters under `<arch>.*`, and the byte-level BPE tokenizer with its pre-tokenizer name, special tokens,
BOS/EOS rule and chat template under `tokenizer.*`. 2-D weights are written as the chosen outtype, norms and biases
as F32, as llama.cpp's converter does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, LlamaFileType, TokenType
from litgpt import Config

from lightning_adapt.formats.base import ExportError, Format, ModelInfo, Weights
from lightning_adapt.formats.hf import hf_architecture
from lightning_adapt.model.loading import load_tokenizer
from lightning_adapt.techniques.base import base_config

from lightning_adapt_gguf.tokenizer import PRE_TOKENIZERS, pre_tokenizer_name
from lightning_adapt_gguf.weights import BLOCK_NAMES, GLOBAL_NAMES, PERMUTED_ARCHITECTURES, QKV_NAMES, permute_rotary

OUTTYPES = {
    "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "bf16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
}
"""`outtype` -> (the 2-D weights' tensor type, the file type llama.cpp records)."""


GGUF_SUPPORTED = (
    "llama.cpp's llama architecture (RMSNorm, LLaMAMLP, full RoPE without rope_adjustments, no biases; e.g. SmolLM2, "
    "Llama 2) and its qwen2 architecture (the same with attn_bias: true)"
)


def gguf_architecture(config: Config) -> str:
    """`llama` or `qwen2`, or an error naming what GGUF export cannot write and what it can."""
    architecture = hf_architecture(config, target="GGUF", supported=GGUF_SUPPORTED).model_type
    if config.rope_adjustments is not None:
        raise ExportError(
            f"Cannot export '{config.name}' to GGUF: its rope_adjustments (Llama 3.1+ rope scaling) would need "
            "llama.cpp's rope_freqs tensor, which this export does not write yet. Use --format hf."
        )
    return architecture


def gguf_tensors(config: Config, state_dict: dict[str, torch.Tensor], architecture: str) -> dict[str, torch.Tensor]:
    """The LitGPT state dict (plain keys, LoRA merged) under llama.cpp's tensor names and row order, float32.
    `output.weight` is left out when it is the embedding (tied), as llama.cpp's converter does."""
    to_gguf = {litgpt: name for name, litgpt in GLOBAL_NAMES.items()}
    tensors = {to_gguf[key]: state_dict[key].float() for key in to_gguf}
    if torch.equal(tensors["output.weight"], tensors["token_embd.weight"]):
        del tensors["output.weight"]
    q_rows, kv_rows = config.n_head * config.head_size, config.n_query_groups * config.head_size
    permute = architecture in PERMUTED_ARCHITECTURES
    for i in range(config.n_layer):
        block = f"transformer.h.{i}."
        tensors |= {f"blk.{i}.{src}": state_dict[block + dst].float() for src, dst in BLOCK_NAMES.items()}
        kinds = ["weight", *(["bias"] if config.attn_bias else [])]
        for kind in kinds:
            q, k, v = state_dict[f"{block}attn.qkv.{kind}"].float().split([q_rows, kv_rows, kv_rows])
            if permute:
                q, k = permute_rotary(q, config.n_head), permute_rotary(k, config.n_query_groups)
            for name, value in zip(QKV_NAMES, (q, k, v)):
                tensors[f"blk.{i}.{name.replace('.weight', '.' + kind)}"] = value
    return tensors


def tensor_type(value: np.ndarray, outtype: GGMLQuantizationType) -> GGMLQuantizationType:
    """F32 for 1-D tensors (norms, biases); `outtype` for matrices, except Q8_0 on rows that are not a whole number of
    its 32-value blocks, which fall back to F16 as in llama.cpp."""
    if value.ndim == 1:
        return GGMLQuantizationType.F32
    block = gguf.GGML_QUANT_SIZES[outtype][0]
    return outtype if value.shape[-1] % block == 0 else GGMLQuantizationType.F16


@dataclass(frozen=True)
class TokenizerMetadata:
    """The `tokenizer.*` keys of a GGUF file: llama.cpp's `gpt2` (byte-level BPE) model."""

    pre: str
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def special_token_id(value: Any, vocab: dict[str, int]) -> int | None:
    """The id of a `tokenizer_config.json` special token (a string or an AddedToken dict)."""
    content = value.get("content") if isinstance(value, dict) else value
    return vocab.get(content) if isinstance(content, str) else None


def tokenizer_metadata(checkpoint_dir: Path, rows: int) -> TokenizerMetadata:
    """The GGUF tokenizer of `checkpoint_dir`'s `tokenizer.json` for an embedding of `rows` rows (ids without a token
    become `[PAD<id>]`, unused, as llama.cpp's converter pads them); an error for a tokenizer GGUF cannot hold."""
    path = checkpoint_dir / "tokenizer.json"
    if not path.is_file():
        raise ExportError(
            f"Cannot export '{checkpoint_dir}' to GGUF: it has no tokenizer.json (a SentencePiece tokenizer.model is "
            "not supported by this export). Use --format hf."
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ExportError(f"Cannot export {path} to GGUF: its model is {model.get('type')!r}; llama.cpp's 'gpt2' "
                          "tokenizer needs byte-level BPE. Use --format hf.")
    pre = pre_tokenizer_name(data)
    if pre is None:
        raise ExportError(
            f"Cannot export {path} to GGUF: its pre-tokenizer is none that llama.cpp names and this plugin reads back "
            f"(supported: {', '.join(PRE_TOKENIZERS)}). Use --format hf."
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {token["content"]: token for token in data.get("added_tokens", [])}
    vocab |= {content: token["id"] for content, token in added.items()}
    if max(vocab.values()) >= rows:
        raise ExportError(f"Cannot export {path} to GGUF: token id {max(vocab.values())} does not fit the model's "
                          f"{rows} embedding rows.")
    tokens, token_types = [f"[PAD{i}]" for i in range(rows)], [int(TokenType.UNUSED)] * rows
    for content, index in vocab.items():
        tokens[index] = content
        token = added.get(content)
        kind = TokenType.NORMAL if token is None else TokenType.CONTROL if token.get("special") else TokenType.USER_DEFINED
        token_types[index] = int(kind)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])]
    config_path = checkpoint_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    tokenizer = load_tokenizer(checkpoint_dir)
    special = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id}
    special |= {name: special_token_id(config.get(f"{name}_token"), vocab) for name in ("pad", "unk")}
    template = config.get("chat_template")
    return TokenizerMetadata(
        pre=pre, tokens=tokens, token_types=token_types, merges=merges,
        special_ids={name: index for name, index in special.items() if index is not None},
        add_bos=tokenizer.hf_bos, add_eos=bool(config.get("add_eos_token", False)),
        chat_template=template if isinstance(template, str) else None,
    )


def write_metadata(writer: gguf.GGUFWriter, config: Config, file_type: LlamaFileType) -> None:
    """The `general.*` and `<arch>.*` hyperparameter keys llama.cpp reads for a llama or Qwen2 model."""
    writer.add_name(config.name)
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    writer.add_rope_freq_base(float(config.rope_base))
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_rope_dimension_count(config.head_size)
    if config.head_size != config.n_embd // config.n_head:
        writer.add_key_length(config.head_size)
        writer.add_value_length(config.head_size)
    writer.add_vocab_size(config.padded_vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_tokenizer(writer: gguf.GGUFWriter, tokenizer: TokenizerMetadata) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(tokenizer.pre)
    writer.add_token_list(tokenizer.tokens)
    writer.add_token_types(tokenizer.token_types)
    writer.add_token_merges(tokenizer.merges)
    adders = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "pad": writer.add_pad_token_id,
              "unk": writer.add_unk_token_id}
    for name, index in tokenizer.special_ids.items():
        adders[name](index)
    writer.add_add_bos_token(tokenizer.add_bos)
    writer.add_add_eos_token(tokenizer.add_eos)
    if tokenizer.chat_template is not None:
        writer.add_chat_template(tokenizer.chat_template)


def gguf_file_name(config: Config, outtype: str) -> str:
    """`<model name>-<OUTTYPE>.gguf`, the name with anything but letters, digits, `.`, `_` and `-` replaced."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', config.name)}-{outtype.upper()}.gguf"


@dataclass(frozen=True)
class GGUFOptions:
    """The options of the gguf format (`export: options: {gguf: {...}}`, `lightning-adapt export --outtype`)."""

    outtype: str = "f16"
    """The type of the 2-D weights: f16, q8_0, bf16 or f32 (norms and biases stay f32, as in llama.cpp)."""

    def __post_init__(self) -> None:
        if self.outtype not in OUTTYPES:
            raise ExportError(f"Unknown GGUF outtype '{self.outtype}'. Choose one of: {', '.join(OUTTYPES)}.")


class GGUFFormat(Format):
    """One `<name>-<OUTTYPE>.gguf` file for llama.cpp (LoRA merged), registered in the `lightning_adapt.formats`
    entry-point group. Not read back here: `lightning-adapt convert gguf FILE` imports it as a LitGPT folder."""

    name = "gguf"
    kind = "gguf-export"
    description = "GGUF file"
    options_class = GGUFOptions

    def check(self, model: ModelInfo) -> None:
        super().check(model)
        gguf_architecture(model.config)
        tokenizer_metadata(model.tokenizer_dir, model.config.padded_vocab_size)

    def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
        config = base_config(model.config)
        architecture = gguf_architecture(config)
        qtype, file_type = OUTTYPES[self.options.outtype]
        writer = gguf.GGUFWriter(folder / gguf_file_name(config, self.options.outtype), architecture)
        write_metadata(writer, config, file_type)
        write_tokenizer(writer, tokenizer_metadata(model.tokenizer_dir, config.padded_vocab_size))
        for name, tensor in gguf_tensors(config, weights.merged(), architecture).items():
            array = tensor.contiguous().numpy()
            stored = tensor_type(array, qtype)
            if stored == GGMLQuantizationType.F32:
                writer.add_tensor(name, array)
            elif stored == GGMLQuantizationType.F16:
                writer.add_tensor(name, array.astype(np.float16))
            else:
                writer.add_tensor(name, gguf.quants.quantize(array, stored), raw_dtype=stored)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
