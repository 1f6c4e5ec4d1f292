"""K-quant (Q2_K..Q6_K), Q5_0, Q5_1 and BF16 tensors and the qwen2 architecture in the GGUF import.

gguf-py cannot quantize K types, so their blocks are built here from the structs of llama.cpp's ggml-common.h:
random bytes with sane float16 scales. Every imported tensor is checked against transformers' GGUF loader, and the
Q4_K and Q6_K ones also against NumPy dequantizers written here from the same structs (not gguf-py's code)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from litgpt import GPT, Config

pytest.importorskip("gguf")
pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")
pytest.importorskip("transformers")

import gguf  # noqa: E402
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader  # noqa: E402
from litgpt.scripts.convert_lit_checkpoint import copy_weights_llama, copy_weights_qwen_2_5  # noqa: E402
from lightning_adapt_gguf import GGUFImportError, NotSupportedError, convert_gguf  # noqa: E402
from lightning_adapt_gguf.config import config_from_metadata  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from tests.plugins.conftest import TINY_CONFIG, gguf_tensors, random_state_dict, tiny_vocab, write_gguf  # noqa: E402
from tests.helpers import assert_no_output  # noqa: E402

QK_K = 256
BLOCKS = {
    # type: (values per block, bytes per block, byte offsets of its float16 fields), from ggml-common.h's structs
    "Q2_K": (QK_K, 84, (80, 82)),  # scales[16], qs[64], d, dmin
    "Q3_K": (QK_K, 110, (108,)),  # hmask[32], qs[64], scales[12], d
    "Q4_K": (QK_K, 144, (0, 2)),  # d, dmin, scales[12], qs[128]
    "Q5_K": (QK_K, 176, (0, 2)),  # d, dmin, scales[12], qh[32], qs[128]
    "Q6_K": (QK_K, 210, (208,)),  # ql[128], qh[64], scales[16] (int8), d
    "Q5_0": (32, 22, (0,)),  # d, qh[4], qs[16]
    "Q5_1": (32, 24, (0, 2)),  # d, m, qh[4], qs[16]
    "IQ4_XS": (QK_K, 136, (0,)),  # d, scales_h, scales_l[4], qs[128]: refused
}
TYPE_CYCLE = ["Q2_K", "Q5_K", "Q4_K", "Q6_K", "Q3_K", "Q5_0", "Q5_1", "BF16"]
"""The types the 2-D tensors of the test files take in turn, each twice: token_embd Q2_K, output Q5_K, blk.0.attn_q
Q4_K, blk.0.attn_k Q6_K, ..., blk.1.attn_q Q5_K, blk.1.attn_k Q4_K."""
K_CONFIG = TINY_CONFIG | dict(name="tiny-gguf-k", n_embd=256, intermediate_size=512)
"""Rows of n_embd or intermediate_size values: whole K blocks. 4 heads of 64 in 2 query groups."""
QWEN2_CONFIG = TINY_CONFIG | dict(
    name="tiny-gguf-qwen2", n_embd=72, n_head=6, n_query_groups=2, intermediate_size=88, attn_bias=True,
    rope_base=1000000, norm_eps=1e-6,
)  # fmt: skip
QWEN25_05B_METADATA = {
    "general.architecture": "qwen2",
    "qwen2.context_length": 32768,
    "qwen2.block_count": 24,
    "qwen2.embedding_length": 896,
    "qwen2.feed_forward_length": 4864,
    "qwen2.attention.head_count": 14,
    "qwen2.attention.head_count_kv": 2,
    "qwen2.rope.freq_base": 1000000.0,
    "qwen2.attention.layer_norm_rms_epsilon": float(np.float32(1e-6)),
}
"""Qwen2.5-0.5B-Instruct-Q4_K_M.gguf's hyperparameters, as llama.cpp writes them (no rope.dimension_count)."""
CHAT = {"tokenizer.chat_template": "{% for message in messages %}<|im_start|>...{% endfor %}"}


def tiny_config(fields: dict, **changes) -> Config:
    return Config(**fields | changes, vocab_size=len(tiny_vocab()), padded_vocab_size=len(tiny_vocab()))


def random_blocks(rows: int, cols: int, type_name: str, rng: np.random.Generator) -> np.ndarray:
    """`rows` x `cols` values of `type_name` as uint8 rows of blocks: random bytes, float16 scales in [1e-3, 1e-2]."""
    values, size, scale_offsets = BLOCKS[type_name]
    blocks = rng.integers(0, 256, (rows * cols // values, size), dtype=np.uint8)
    for offset in scale_offsets:
        scales = rng.uniform(1e-3, 1e-2, (len(blocks), 1)).astype(np.float16)
        blocks[:, offset : offset + 2] = scales.view(np.uint8)
    return blocks.reshape(rows, -1)


def random_bf16(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Random bfloat16 values (float32's upper halves) as uint8 rows."""
    values = rng.normal(0, 0.1, (rows, cols)).astype(np.float32)
    return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)


def float16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """Each block's float16 at byte `offset`, as a float32 column."""
    return blocks[:, offset : offset + 2].copy().view(np.float16).astype(np.float32)


def dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    """llama.cpp's dequantize_row_q4_K for uint8 blocks of 144 bytes (d, dmin, scales[12], qs[128]) -> 256 values:
    8 sub-blocks of 32, each value d * scale * q - dmin * min with 6-bit scale and min packed in scales[12]."""
    d, dmin = float16_field(blocks, 0), float16_field(blocks, 2)
    packed, qs = blocks[:, 4:16], blocks[:, 16:144]
    out = np.empty((len(blocks), QK_K), np.float32)
    for j in range(8):
        if j < 4:  # get_scale_min_k4: low 6 bits of bytes j and j + 4 ...
            scale, minimum = packed[:, j] & 63, packed[:, j + 4] & 63
        else:  # ... or a nibble of byte j + 4 with the top 2 bits of bytes j - 4 and j
            scale = (packed[:, j + 4] & 0xF) | ((packed[:, j - 4] >> 6) << 4)
            minimum = (packed[:, j + 4] >> 4) | ((packed[:, j] >> 6) << 4)
        quants = qs[:, 32 * (j // 2) : 32 * (j // 2) + 32]  # sub-blocks 2i, 2i + 1: low, high nibbles of 32 bytes
        quants = quants & 0xF if j % 2 == 0 else quants >> 4
        d_j, m_j = d * scale[:, None].astype(np.float32), dmin * minimum[:, None].astype(np.float32)
        out[:, 32 * j : 32 * j + 32] = d_j * quants.astype(np.float32) - m_j
    return out


def dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    """llama.cpp's dequantize_row_q6_K for uint8 blocks of 210 bytes (ql[128], qh[64], int8 scales[16], d) -> 256
    values: two halves of 128, each four runs of 32 whose 6-bit q is a nibble of ql and 2 bits of qh, minus 32,
    times d and the int8 scale of its 16 values."""
    d, scales = float16_field(blocks, 208), blocks[:, 192:208].view(np.int8).astype(np.float32)
    out = np.empty((len(blocks), QK_K), np.float32)
    for half in range(2):
        ql, qh = blocks[:, 64 * half : 64 * half + 64], blocks[:, 128 + 32 * half : 128 + 32 * half + 32]
        for run in range(4):
            low = ql[:, 32 * (run % 2) : 32 * (run % 2) + 32]
            low = low & 0xF if run < 2 else low >> 4
            q = (low | (((qh >> (2 * run)) & 3) << 4)).astype(np.float32) - 32
            scale = np.repeat(scales[:, 8 * half + 2 * run : 8 * half + 2 * run + 2], 16, axis=1)
            out[:, 128 * half + 32 * run : 128 * half + 32 * run + 32] = d * scale * q
    return out


INDEPENDENT_DEQUANTIZERS = {"Q4_K": dequantize_q4_k, "Q6_K": dequantize_q6_k}


def hf_names(config: Config, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LitGPT state dict under transformers' names, by LitGPT's own converter."""
    hf: dict[str, torch.Tensor] = {}
    (copy_weights_qwen_2_5 if config.attn_bias else copy_weights_llama)(config, hf, state_dict)
    return hf


def transformers_model(path: Path) -> torch.nn.Module:
    """transformers' own import of the GGUF file `path`, float32."""
    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def assert_refused(path: Path, out_dir: Path, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message) as info:
        convert_gguf(path, out_dir)
    assert str(path) in str(info.value)
    assert_no_output(out_dir)


# ---------------------------------------------------------------- K-quants, Q5_0, Q5_1, BF16


def test_block_layouts_are_those_gguf_knows():
    for type_name, (values, size, _) in BLOCKS.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType[type_name]] == (values, size), type_name


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def mixed_import(request, tmp_path_factory) -> tuple[Config, dict[str, tuple[np.ndarray, str]], Path, Path]:
    """A tiny `request.param` model whose 2-D tensors take the types of `TYPE_CYCLE` in turn (norms and biases
    F32): (config, the raw tensors, the GGUF file, the converted folder)."""
    arch = request.param
    config = tiny_config(K_CONFIG, attn_bias=arch == "qwen2")
    state_dict = random_state_dict(config)
    matrices = [(name, w.shape) for name, w in gguf_tensors(state_dict, config, arch).items() if w.ndim == 2]
    rng = np.random.default_rng(0)
    raw = {}
    for i, (name, (rows, cols)) in enumerate(matrices):
        type_name = TYPE_CYCLE[i % len(TYPE_CYCLE)]
        data = random_bf16(rows, cols, rng) if type_name == "BF16" else random_blocks(rows, cols, type_name, rng)
        raw[name] = (data, type_name)
    tmp = tmp_path_factory.mktemp(arch)
    path = write_gguf(tmp / f"{arch}.gguf", state_dict, config, arch=arch, raw_tensors=raw)
    return config, raw, path, convert_gguf(path, tmp / "converted")


def test_file_has_the_types_it_should(mixed_import):
    _, raw, path, _ = mixed_import
    types = {t.name: t.tensor_type.name for t in GGUFReader(path).tensors if t.name in raw}
    assert types == {name: type_name for name, (_, type_name) in raw.items()}
    assert sorted(set(types.values())) == sorted(TYPE_CYCLE)


def test_every_tensor_equals_transformers_import(mixed_import):
    config, _, path, out_dir = mixed_import
    converted = torch.load(out_dir / "lit_model.pth", weights_only=True)
    expected = transformers_model(path).state_dict()
    ours = hf_names(Config.from_file(out_dir / "model_config.yaml"), converted)
    assert ours.keys() == expected.keys()
    for name, value in ours.items():
        assert value.dtype == torch.float32 and torch.isfinite(value).all(), name
        assert torch.equal(value, expected[name]), name


@pytest.mark.parametrize("type_name", list(INDEPENDENT_DEQUANTIZERS))
def test_k_quants_equal_a_dequantizer_written_from_the_format(mixed_import, type_name):
    config, raw, _, out_dir = mixed_import
    arch = "qwen2" if config.attn_bias else "llama"
    converted = gguf_tensors(torch.load(out_dir / "lit_model.pth", weights_only=True), config, arch)
    checked = [name for name, (_, t) in raw.items() if t == type_name]
    assert len(checked) == 2 and any(".attn_q." in n or ".attn_k." in n for n in checked)  # rows llama reorders
    for name in checked:
        blocks = raw[name][0]
        values = INDEPENDENT_DEQUANTIZERS[type_name](blocks.reshape(-1, BLOCKS[type_name][1]))
        assert np.array_equal(converted[name], values.reshape(converted[name].shape)), name


# ---------------------------------------------------------------- qwen2


def test_qwen2_import_is_exact_and_gives_transformers_logits(tmp_path):
    config = tiny_config(QWEN2_CONFIG)
    state_dict = random_state_dict(config, seed=1)
    state_dict["lm_head.weight"] = state_dict["transformer.wte.weight"].clone()  # tied, as in Qwen2.5-0.5B
    path = write_gguf(tmp_path / "qwen2.gguf", state_dict, config, arch="qwen2")
    assert "output.weight" not in {t.name for t in GGUFReader(path).tensors}
    out_dir = convert_gguf(path, tmp_path / "tiny-qwen2")

    converted = torch.load(out_dir / "lit_model.pth", weights_only=True)
    assert converted.keys() == state_dict.keys()
    for name, value in state_dict.items():
        assert torch.equal(converted[name], value), name
    loaded_config = Config.from_file(out_dir / "model_config.yaml")
    assert (loaded_config.attn_bias, loaded_config.bias, loaded_config.rope_base) == (True, False, 1000000)
    assert loaded_config.norm_eps == 1e-6

    ours = GPT(loaded_config).eval()
    ours.load_state_dict(converted)
    theirs = transformers_model(path)
    assert type(theirs).__name__ == "Qwen2ForCausalLM"
    ids = torch.randint(0, config.vocab_size, (3, 19), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert (ours(ids) - theirs(ids).logits).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (CHAT, "Qwen2.5-0.5B-Instruct"),  # base and Instruct are equal; a chat template picks Instruct
        ({}, "Qwen2.5-0.5B"),
        (CHAT | {"tokenizer.ggml.tokens": [""] * 151936}, "Qwen2.5-0.5B-Instruct"),  # padded with [PADn] tokens
        (CHAT | {"general.name": "Qwen2.5 Coder 0.5B Instruct"}, "Qwen2.5-Coder-0.5B-Instruct"),
    ],
)
def test_qwen2_config_takes_the_name_of_the_litgpt_config_it_equals(extra, expected):
    config = config_from_metadata(QWEN25_05B_METADATA | extra, vocab_rows=151936, preferred_name="my-model")
    assert config == Config.from_name(expected)


# ---------------------------------------------------------------- what is refused


def test_k_quant_rows_must_be_whole_blocks(tmp_path):
    path = tmp_path / "bad.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    blocks = random_blocks(1, 64 * 64, "Q4_K", np.random.default_rng(0))  # 64 rows of 64 values: quarter blocks
    q4_k = GGMLQuantizationType.Q4_K
    writer.add_tensor("blk.0.attn_q.weight", blocks.view(np.int8), raw_shape=(64, 64), raw_dtype=q4_k)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    message = r"row size \(64\) is not a multiple of Q4_K block size \(256\)"
    assert_refused(path, tmp_path / "out", GGUFImportError, message)


def test_a_type_still_refused_names_the_tensor_and_the_supported_types(tmp_path):
    config = tiny_config(K_CONFIG)
    blocks = random_blocks(config.n_embd, config.intermediate_size, "IQ4_XS", np.random.default_rng(0))
    raw = {"blk.1.ffn_down.weight": (blocks, "IQ4_XS")}
    path = write_gguf(tmp_path / "iq4.gguf", random_state_dict(config), config, raw_tensors=raw)
    message = (
        r"not supported: tensor type IQ4_XS \(tensor 'blk.1.ffn_down.weight'; supported: F32, F16, BF16, Q8_0, "
        r"Q5_0, Q5_1, Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K\)"
    )
    assert_refused(path, tmp_path / "out", NotSupportedError, message)


def test_llama_3_1_rope_freqs_are_named_and_explained(tiny_gguf, tmp_path):
    path = tiny_gguf(raw_tensors={"rope_freqs.weight": (np.ones(8, np.float32), "F32")})
    message = r"tensors \['rope_freqs.weight'\] .*Llama 3.1\+ rope scaling, not supported yet"
    assert_refused(path, tmp_path / "out", NotSupportedError, message)


def test_llama_with_qkv_biases_is_refused(tmp_path):
    config = tiny_config(TINY_CONFIG, attn_bias=True)
    path = write_gguf(tmp_path / "biased.gguf", random_state_dict(config), config, arch="llama")
    message = r"tensors \['blk.0.attn_k.bias', .*; attn_k.bias, attn_q.bias, attn_v.bias: Q/K/V biases, supported in"
    assert_refused(path, tmp_path / "out", NotSupportedError, message)


def test_an_architecture_still_unsupported(tiny_gguf, tmp_path):
    message = r"not supported: architecture 'qwen3' \(supported: llama, qwen2\)"
    assert_refused(tiny_gguf(arch="qwen3"), tmp_path / "out", NotSupportedError, message)
