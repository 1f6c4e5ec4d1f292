"""A Hugging Face `tokenizers` tokenizer and its config files from a GGUF's tokenizer metadata."""

from collections.abc import Callable
from typing import Any

from gguf import TokenType
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from lightning_adapt_gguf.errors import GGUFImportError, NotSupportedError


def _byte_level() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _digits_then_byte_level() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _byte_level()])


# llama.cpp's `tokenizer.ggml.pre` names -> the same split expressed as `tokenizers` pre-tokenizers.
# "gpt-2" is GPT-2's regex; the StarCoder family first isolates every digit (llama.cpp: "\p{N}").
PRE_TOKENIZERS: dict[str, Callable[[], pre_tokenizers.PreTokenizer]] = {
    "gpt-2": _byte_level,
    "smollm": _digits_then_byte_level,
    "starcoder": _digits_then_byte_level,
    "refact": _digits_then_byte_level,
}

SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def build_tokenizer(meta: dict[str, Any]) -> Tokenizer:
    """The byte-level BPE tokenizer that `tokenizer.ggml.{tokens,merges,token_type,pre}` describe."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise NotSupportedError(f"not supported: tokenizer model {model!r} (supported: 'gpt2', byte-level BPE)")
    pre = meta.get("tokenizer.ggml.pre", "gpt-2")  # older files name none: GPT-2's split, as transformers does
    if pre not in PRE_TOKENIZERS:
        raise NotSupportedError(f"not supported: pre-tokenizer {pre!r} (supported: {', '.join(PRE_TOKENIZERS)})")
    if "tokenizer.ggml.tokens" not in meta:
        raise GGUFImportError("missing metadata key 'tokenizer.ggml.tokens'")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(merge.split(" ", 1)) for merge in meta.get("tokenizer.ggml.merges", [])]
    tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = PRE_TOKENIZERS[pre]()
    tokenizer.decoder = decoders.ByteLevel()
    kinds = dict(zip(tokens, meta.get("tokenizer.ggml.token_type", ()), strict=False))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds.items() if k == TokenType.CONTROL]
    )
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t, k in kinds.items() if k == TokenType.USER_DEFINED])
    return tokenizer


def special_tokens(meta: dict[str, Any]) -> dict[str, str]:
    """`bos_token`, `eos_token`, ... as strings, for those the file names."""
    tokens = meta["tokenizer.ggml.tokens"]
    return {name: tokens[meta[key]] for name, key in SPECIAL_TOKEN_KEYS.items() if key in meta}


def tokenizer_config(meta: dict[str, Any], context_length: int) -> dict[str, Any]:
    """The `tokenizer_config.json` Hugging Face and LitGPT read next to `tokenizer.json`."""
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": context_length,
        **special_tokens(meta),
    }
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    return config


def generation_config(meta: dict[str, Any]) -> dict[str, int]:
    """The special token ids of `generation_config.json`."""
    keys = {"bos_token_id": "bos_token", "eos_token_id": "eos_token", "pad_token_id": "pad_token"}
    return {name: int(meta[SPECIAL_TOKEN_KEYS[t]]) for name, t in keys.items() if SPECIAL_TOKEN_KEYS[t] in meta}
