"""A LitGPT `Config` from a llama or qwen2 GGUF's hyperparameters, named after the LitGPT config it equals."""

import math
import re
from dataclasses import asdict
from typing import Any

import numpy as np
from litgpt import Config
from litgpt.config import name_to_config
from litgpt.prompts import Default, model_name_to_prompt_style

from lightning_adapt_gguf.errors import GGUFImportError, NotSupportedError

ARCHITECTURE_FIELDS = {"llama": {"attn_bias": False}, "qwen2": {"attn_bias": True}}
"""The `Config` fields that differ between the architectures we convert: qwen2 is a llama with Q/K/V biases."""
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURE_FIELDS)
INSTRUCTION_TUNED = re.compile(r"instruct|chat|-it(-|$)", re.IGNORECASE)
"""How LitGPT's config names mark a chat fine-tune (`Qwen2.5-0.5B-Instruct`, `gemma-2-2b-it`)."""
MAX_CONTEXT_LENGTH = 2**20
"""The longest context we accept (1,048,576 tokens). The llama/qwen2 files in the wild go up to Qwen2.5-*-1M's
1,010,000 (Llama 3.1: 131,072); LitGPT builds a RoPE cache of context x head size floats at load, 1 GiB for
head size 128 at this bound, so a corrupt 4e9 would make every later use of the checkpoint allocate terabytes."""


def _require(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise GGUFImportError(f"missing metadata key {key!r}")
    return meta[key]


def _value(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    """`meta[key]`, or `default` when it is not None and the key is absent."""
    return _require(meta, key) if default is None else meta.get(key, default)


def _integer(meta: dict[str, Any], key: str, maximum: int | None = None, default: int | None = None) -> int:
    """The value of `key` if it is an integer from 1 to `maximum` (unbounded if None), else an error naming it."""
    value = _value(meta, key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (maximum and value > maximum):
        expected = f"an integer from 1 to {maximum}" if maximum else "a positive integer"
        raise GGUFImportError(f"{key} = {value!r}: expected {expected}")
    return value


def _divisor(meta: dict[str, Any], key: str, of_key: str, of_value: int, default: int | None = None) -> int:
    """The value of `key` if it is a positive integer that divides `of_value` (the value of `of_key`)."""
    value = _integer(meta, key, default=default)
    if of_value % value:
        raise GGUFImportError(f"{key} = {value}: expected a divisor of {of_key} = {of_value}")
    return value


def _positive(meta: dict[str, Any], key: str, default: float | None = None) -> float:
    """The value of `key` as a float, if it is a finite number above 0."""
    value = _value(meta, key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise GGUFImportError(f"{key} = {value!r}: expected a finite number > 0")
    return _float32(value)


def _head_size(meta: dict[str, Any], arch: str, n_embd: int, n_head: int) -> int:
    """`key_length`, else embedding_length / head_count (then head_count must divide it); even, as RoPE rotates
    pairs of dimensions."""
    key = f"{arch}.attention.key_length"
    if key in meta:
        head_size = _integer(meta, key)
    else:
        head_size = n_embd // _divisor(meta, f"{arch}.attention.head_count", f"{arch}.embedding_length", n_embd)
        key = f"{arch}.embedding_length / {arch}.attention.head_count"
    if head_size % 2:
        raise GGUFImportError(f"{key} = {head_size}: expected an even head size (rotary embeddings rotate pairs)")
    return head_size


def _vocab_size(meta: dict[str, Any], vocab_rows: int) -> int:
    """The token list's length, which must be the embedding's row count (llama.cpp pads the list to it)."""
    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None:
        return vocab_rows
    if len(tokens) != vocab_rows:
        raise GGUFImportError(
            f"tokenizer.ggml.tokens holds {len(tokens)} tokens: expected {vocab_rows}, the rows of 'token_embd.weight'"
        )
    return vocab_rows


def _float32(value: float) -> float:
    """GGUF stores floats as float32: 1e-5 comes back as 9.99999974e-06. Recover the short decimal."""
    return float(str(np.float32(value)))


def _architecture(config: Config) -> dict[str, Any]:
    """The fields that make two configs the same model. Not `vocab_size`: llama.cpp pads the token list to the
    embedding's rows (Qwen2.5: 151936 tokens, LitGPT's `vocab_size` 151643); `padded_vocab_size` is compared."""
    return {k: v for k, v in asdict(config).items() if k not in ("name", "hf_config", "vocab_size")}


def _spelling(name: str) -> str:
    """`name` lowercased, letters and digits only: "Qwen2.5 0.5B Instruct" and "Qwen2.5-0.5B-Instruct" agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _pick_name(matches: list[str], preferred_name: str, meta: dict[str, Any]) -> str:
    """`preferred_name` if it is among `matches`, else the one `general.name` spells, else (for a file with a chat
    template) the first instruction-tuned chat variant, else the first match."""
    if preferred_name in matches:
        return preferred_name
    if named := [name for name in matches if _spelling(name) == _spelling(meta.get("general.name", ""))]:
        return named[0]
    if "tokenizer.chat_template" in meta:
        chat = [name for name in matches if not isinstance(model_name_to_prompt_style(name), Default)]
        matches = [name for name in chat if INSTRUCTION_TUNED.search(name)] or chat or matches
    return matches[0]


def config_from_metadata(meta: dict[str, Any], vocab_rows: int, preferred_name: str) -> Config:
    """The model's `Config`; `vocab_rows` is the embedding's row count.

    If LitGPT knows a config with exactly these hyperparameters, that one is returned: the one named
    `preferred_name` if it is among them, else the one the file's `general.name` spells, else a chat variant
    when the file has a chat template.
    """
    arch = _require(meta, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise NotSupportedError(
            f"not supported: architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    scaling = meta.get(f"{arch}.rope.scaling.type", "none")
    if scaling != "none":
        raise NotSupportedError(f"not supported: rope scaling {scaling!r}")
    n_embd = _integer(meta, f"{arch}.embedding_length")
    n_head = _integer(meta, f"{arch}.attention.head_count")
    head_size = _head_size(meta, arch, n_embd, n_head)
    rope_dims = meta.get(f"{arch}.rope.dimension_count", head_size)
    if rope_dims != head_size:
        raise NotSupportedError(f"not supported: partial rotary embedding ({rope_dims} of {head_size} dims)")
    config = Config(
        name=preferred_name,
        block_size=_integer(meta, f"{arch}.context_length", MAX_CONTEXT_LENGTH),
        vocab_size=_vocab_size(meta, vocab_rows),
        padded_vocab_size=vocab_rows,
        n_layer=_integer(meta, f"{arch}.block_count"),
        n_embd=n_embd,
        n_head=n_head,
        head_size=head_size,
        n_query_groups=_divisor(
            meta, f"{arch}.attention.head_count_kv", f"{arch}.attention.head_count", n_head, default=n_head
        ),
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        **ARCHITECTURE_FIELDS[arch],
        norm_class_name="RMSNorm",
        mlp_class_name="LLaMAMLP",
        intermediate_size=_integer(meta, f"{arch}.feed_forward_length"),
        rope_base=_positive(meta, f"{arch}.rope.freq_base", default=10000.0),
        norm_eps=_positive(meta, f"{arch}.attention.layer_norm_rms_epsilon"),
    )
    matches = [name for name in name_to_config if _architecture(Config.from_name(name)) == _architecture(config)]
    return Config.from_name(_pick_name(matches, preferred_name, meta)) if matches else config
