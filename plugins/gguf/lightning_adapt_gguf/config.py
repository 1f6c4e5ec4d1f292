"""A LitGPT `Config` from a llama or qwen2 GGUF's hyperparameters, named after the LitGPT config it equals."""

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


def _require(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise GGUFImportError(f"missing metadata key {key!r}")
    return meta[key]


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
    n_embd = _require(meta, f"{arch}.embedding_length")
    n_head = _require(meta, f"{arch}.attention.head_count")
    head_size = meta.get(f"{arch}.attention.key_length", n_embd // n_head)
    rope_dims = meta.get(f"{arch}.rope.dimension_count", head_size)
    if rope_dims != head_size:
        raise NotSupportedError(f"not supported: partial rotary embedding ({rope_dims} of {head_size} dims)")
    config = Config(
        name=preferred_name,
        block_size=_require(meta, f"{arch}.context_length"),
        vocab_size=len(meta.get("tokenizer.ggml.tokens", ())) or vocab_rows,
        padded_vocab_size=vocab_rows,
        n_layer=_require(meta, f"{arch}.block_count"),
        n_embd=n_embd,
        n_head=n_head,
        head_size=head_size,
        n_query_groups=meta.get(f"{arch}.attention.head_count_kv", n_head),
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        **ARCHITECTURE_FIELDS[arch],
        norm_class_name="RMSNorm",
        mlp_class_name="LLaMAMLP",
        intermediate_size=_require(meta, f"{arch}.feed_forward_length"),
        rope_base=_float32(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        norm_eps=_float32(_require(meta, f"{arch}.attention.layer_norm_rms_epsilon")),
    )
    matches = [name for name in name_to_config if _architecture(Config.from_name(name)) == _architecture(config)]
    return Config.from_name(_pick_name(matches, preferred_name, meta)) if matches else config
