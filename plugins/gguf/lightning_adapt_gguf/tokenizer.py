"""A Hugging Face `tokenizers` tokenizer and its config files from a GGUF's tokenizer metadata."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from gguf import TokenType
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from lightning_adapt_gguf.errors import GGUFImportError, NotSupportedError

# llama.cpp's split regexes (src/llama-vocab.cpp). Hugging Face's tokenizer.json files write the contractions as
# `HF_CONTRACTIONS`; llama.cpp spells them out as `CONTRACTIONS` (the same matches), and so do we.
HF_CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3_REGEX = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_REGEX = CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def _byte_level() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _digits_then_byte_level() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _byte_level()])


def _regex_then_byte_level(regex: str) -> pre_tokenizers.PreTokenizer:
    """Split on `regex`, then map to byte-level symbols without GPT-2's regex (as Meta's Llama 3 tokenizer does)."""
    split = pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False)
    return pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


@dataclass(frozen=True)
class PreType:
    """What llama.cpp does before and around BPE for a family of `tokenizer.ggml.pre` names."""

    split: Callable[[], pre_tokenizers.PreTokenizer]
    ignore_merges: bool = False
    """A whole pre-token that is in the vocabulary is that one token, whatever the merges say."""
    add_bos: bool = False
    """llama.cpp's BOS rule for a file without `tokenizer.ggml.add_bos_token`."""


GPT2 = PreType(_byte_level)
DIGITS = PreType(_digits_then_byte_level)  # the StarCoder family: every digit first ("\p{N}"), then GPT-2's regex
LLAMA3 = PreType(partial(_regex_then_byte_level, LLAMA3_REGEX), ignore_merges=True, add_bos=True)
LLAMA3_WITH_MERGES = PreType(partial(_regex_then_byte_level, LLAMA3_REGEX))
# Qwen's own tokenizer.json (and so transformers' GGUF loader) NFC-normalizes the text first; llama.cpp does not, and
# neither do we, so the ids are llama.cpp's. They differ from Qwen's only for text not in NFC (e.g. "e" + U+0301).
QWEN2 = PreType(partial(_regex_then_byte_level, QWEN2_REGEX))

# llama.cpp's `tokenizer.ggml.pre` names (`llama_vocab::impl::load`) whose split and BPE are exactly one of the
# above. `pre_tokenizer_name` answers the first name of each.
PRE_TOKENIZERS: dict[str, PreType] = {
    "gpt-2": GPT2,
    **dict.fromkeys(["smollm", "starcoder", "refact"], DIGITS),
    **dict.fromkeys(
        ["llama-bpe", "llama3", "llama-v3", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        LLAMA3,
    ),
    **dict.fromkeys(["smaug-bpe", "dbrx"], LLAMA3_WITH_MERGES),
    **dict.fromkeys(
        ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open", "grok-2"],
        QWEN2,
    ),
}

SPECIAL_TOKEN_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


def pre_type(meta: dict[str, Any]) -> PreType:
    """What `tokenizer.ggml.pre` names; GPT-2's split for older files that name none, as transformers does."""
    pre = meta.get("tokenizer.ggml.pre", "gpt-2")
    if pre not in PRE_TOKENIZERS:
        raise NotSupportedError(f"not supported: pre-tokenizer {pre!r} (supported: {', '.join(PRE_TOKENIZERS)})")
    return PRE_TOKENIZERS[pre]


def build_tokenizer(meta: dict[str, Any]) -> Tokenizer:
    """The byte-level BPE tokenizer that `tokenizer.ggml.{tokens,merges,token_type,pre}` describe."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise NotSupportedError(f"not supported: tokenizer model {model!r} (supported: 'gpt2', byte-level BPE)")
    pre = pre_type(meta)
    if "tokenizer.ggml.tokens" not in meta:
        raise GGUFImportError("missing metadata key 'tokenizer.ggml.tokens'")
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    _check_special_token_ids(meta, len(tokens))
    merges = [tuple(merge.split(" ", 1)) for merge in meta.get("tokenizer.ggml.merges", [])]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre.ignore_merges))
    tokenizer.pre_tokenizer = pre.split()
    tokenizer.decoder = decoders.ByteLevel()
    kinds = dict(zip(tokens, meta.get("tokenizer.ggml.token_type", ()), strict=False))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds.items() if k == TokenType.CONTROL]
    )
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t, k in kinds.items() if k == TokenType.USER_DEFINED])
    return tokenizer


def _check_special_token_ids(meta: dict[str, Any], n_tokens: int) -> None:
    """Refuse a BOS/EOS/UNK/PAD id that is not an index into the token list."""
    for key in (key for key in SPECIAL_TOKEN_KEYS.values() if key in meta):
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n_tokens:
            raise GGUFImportError(f"{key} = {value!r}: expected a token id from 0 to {n_tokens - 1}")


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str | None:
    """The `tokenizer.ggml.pre` name under which llama.cpp splits and merges text as the parsed `tokenizer.json`
    does, or None. Offset-only fields (`trim_offsets`) do not count, nor does an NFC normalizer, which llama.cpp and
    its converter drop. Any other normalizer matches no name."""
    if not _dropped_normalizer(tokenizer_json.get("normalizer")):
        return None
    try:
        split = _split_json(tokenizer_json.get("pre_tokenizer"))
    except Exception:  # `tokenizers` raises a bare Exception for a pre-tokenizer it does not know
        return None
    ignore_merges = bool((tokenizer_json.get("model") or {}).get("ignore_merges", False))
    for name, pre in PRE_TOKENIZERS.items():
        if pre.ignore_merges == ignore_merges and _split_json(pre.split()) == split:
            return name
    return None


def _dropped_normalizer(normalizer: dict[str, Any] | None) -> bool:
    """None, NFC, or a sequence of those."""
    if normalizer is None or normalizer["type"] == "NFC":
        return True
    return normalizer["type"] == "Sequence" and all(map(_dropped_normalizer, normalizer["normalizers"]))


def _split_json(pre_tokenizer: pre_tokenizers.PreTokenizer | dict[str, Any] | None) -> Any:
    """A pre-tokenizer as `tokenizers` writes it (defaults filled in), without `trim_offsets` and with Hugging Face's
    spelling of the contractions as llama.cpp's."""
    tokenizer = Tokenizer(models.BPE())
    if isinstance(pre_tokenizer, pre_tokenizers.PreTokenizer):
        tokenizer.pre_tokenizer = pre_tokenizer
    else:
        tokenizer = Tokenizer.from_str(json.dumps(json.loads(tokenizer.to_str()) | {"pre_tokenizer": pre_tokenizer}))
    text = tokenizer.to_str().replace(HF_CONTRACTIONS, CONTRACTIONS)
    return _without_trim_offsets(json.loads(text)["pre_tokenizer"])


def _without_trim_offsets(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_trim_offsets(item) for item in node]
    if isinstance(node, dict):
        return {key: _without_trim_offsets(value) for key, value in node.items() if key != "trim_offsets"}
    return node


def special_tokens(meta: dict[str, Any]) -> dict[str, str]:
    """`bos_token`, `eos_token`, ... as strings, for those the file names."""
    tokens = meta["tokenizer.ggml.tokens"]
    return {name: tokens[meta[key]] for name, key in SPECIAL_TOKEN_KEYS.items() if key in meta}


def tokenizer_config(meta: dict[str, Any], context_length: int) -> dict[str, Any]:
    """The `tokenizer_config.json` Hugging Face and LitGPT read next to `tokenizer.json`."""
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", pre_type(meta).add_bos)),
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
