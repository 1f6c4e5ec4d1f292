"""Hostile GGUF files (issue #31): header values, tensor offsets and shapes that lie are refused with a message naming
the file, the field, its value and the expected range, before anything big is allocated, and nothing is written."""

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf")
pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")

from gguf import GGUFReader  # noqa: E402
from lightning_adapt.core.atomic import OutputError  # noqa: E402
from lightning_adapt.cli import main  # noqa: E402
from lightning_adapt_gguf import GGUFImportError, convert_gguf  # noqa: E402

from tests.helpers import assert_no_output, run_cli_capped  # noqa: E402

MEMORY_CAP = 3 * 2**30
"""The address space a refusing `convert` process gets: importing torch and LitGPT takes about 0.55 GiB of it."""
PEAK_RSS = 2**30
"""The most memory a refusal may take, imports included (measured: about 0.6 GiB)."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_refused(path: Path, out_dir: Path, *fragments: str) -> None:
    """`convert_gguf(path, out_dir)` raises `GGUFImportError` naming `path` and each of `fragments`; nothing is
    written and the file is unchanged."""
    before = digest(path)
    with pytest.raises(GGUFImportError) as info:
        convert_gguf(path, out_dir)
    for fragment in (str(path), *fragments):
        assert fragment in str(info.value)
    assert_no_output(out_dir)
    assert digest(path) == before


def edit_tensor_info(path: Path, name: str, offset: int | None = None, dims: list[int] | None = None) -> None:
    """Overwrite, in place, the data offset or dims of tensor `name`'s info in the header."""
    reader = GGUFReader(path, "r+")
    field = next(t.field for t in reader.tensors if t.name == name)
    _, _, _, dims_part, _, offset_part = field.parts
    if offset is not None:
        offset_part[0] = offset
    if dims is not None:
        dims_part[:] = dims
    reader.data.flush()


def tensor_offset(path: Path, name: str) -> int:
    """The data offset (relative to the data section) the header gives tensor `name`."""
    return next(int(t.field.parts[5][0]) for t in GGUFReader(path).tensors if t.name == name)


def capped_convert(path: Path, out_dir: Path) -> tuple[int, str, int]:
    """`lightning-adapt convert gguf path --out out_dir` in a process of at most `MEMORY_CAP` bytes of address space:
    its exit code, stderr and peak resident memory."""
    return run_cli_capped(["convert", "gguf", str(path), "--out", str(out_dir)], MEMORY_CAP)


# ---------------------------------------------------------------- 6, 7: header values that would allocate gigabytes


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"llama.block_count": (10**9, "UINT32")}, "llama.block_count = 1000000000: expected 2, the number of blocks"),
        (
            {"llama.context_length": (4 * 10**9, "UINT32")},
            "llama.context_length = 4000000000: expected an integer from 1 to 1048576",
        ),
    ],
)
@pytest.mark.slow
def test_huge_header_value_is_refused_within_a_memory_cap(tiny_gguf, tmp_path, metadata, message):
    path = tiny_gguf(metadata=metadata)
    before = digest(path)
    code, stderr, peak = capped_convert(path, tmp_path / "out")
    assert code == 1, stderr[-2000:]
    assert f"lightning-adapt convert: error: {path}: {message}" in stderr
    assert "Traceback" not in stderr
    assert peak < PEAK_RSS, f"peak RSS {peak / 2**20:.0f} MiB while refusing"
    assert_no_output(tmp_path / "out")
    assert digest(path) == before


@pytest.mark.slow
def test_metadata_array_longer_than_the_file_is_refused_within_a_memory_cap(tiny_gguf, tmp_path):
    path = tiny_gguf()
    reader = GGUFReader(path, "r+")
    reader.fields["tokenizer.ggml.token_type"].parts[4][0] = 2**40  # the array's length: 262 in truth
    reader.data.flush()
    code, stderr, peak = capped_convert(path, tmp_path / "out")
    assert code == 1, stderr[-2000:]
    assert f"{path}: truncated or corrupt GGUF file (its header reads up to byte" in stderr
    assert peak < PEAK_RSS, f"peak RSS {peak / 2**20:.0f} MiB while refusing"
    assert_no_output(tmp_path / "out")


# ---------------------------------------------------------------- 7: tensor data outside the file


@pytest.mark.parametrize(
    ("offset", "dims"),
    [
        (2**64 - 32, None),  # wraps around to 32 bytes before the data section in numpy's uint64 sum
        (2**40, None),
        (None, [2**32, 2**32]),  # 2^64 elements: numpy's uint64 product wraps around to 0
    ],
)
def test_tensor_data_past_the_end_of_the_file_is_refused(tiny_gguf, tmp_path, offset, dims):
    path = tiny_gguf()
    edit_tensor_info(path, "token_embd.weight", offset, dims)
    assert_refused(path, tmp_path / "out", "tensor 'token_embd.weight' has data offset", "expected its data inside")


def test_overlapping_tensor_data_is_refused(tiny_gguf, tmp_path):
    path = tiny_gguf()
    edit_tensor_info(path, "blk.0.attn_norm.weight", tensor_offset(path, "output_norm.weight"))
    assert_refused(path, tmp_path / "out", "overlaps that of tensor", "expected each tensor's data in a byte range")


def test_misaligned_tensor_data_is_refused(tiny_gguf, tmp_path):
    path = tiny_gguf()
    edit_tensor_info(path, "output_norm.weight", tensor_offset(path, "output_norm.weight") + 4)
    expected = "expected a multiple of the alignment 32"
    assert_refused(path, tmp_path / "out", "'output_norm.weight' has data offset", expected)


def test_tensor_with_a_zero_dimension_is_refused(tiny_gguf, tmp_path):
    path = tiny_gguf()
    edit_tensor_info(path, "token_embd.weight", dims=[0, 262])
    assert_refused(path, tmp_path / "out", "has dims [0, 262]; expected 1 to 4 dimensions, each at least 1")


def test_tensor_of_five_dimensions_is_refused(tiny_gguf, tmp_path):
    path = tiny_gguf(raw_tensors={"output_norm.weight": (np.ones((2, 1, 1, 1, 64), np.float32), "F32")})
    assert_refused(path, tmp_path / "out", "'output_norm.weight' has dims [64, 1, 1, 1, 2]; expected 1 to 4")


# ---------------------------------------------------------------- 7: config values out of range


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"llama.attention.head_count": (0, "UINT32")}, "llama.attention.head_count = 0: expected a positive integer"),
        ({"llama.attention.head_count": (3, "UINT32")}, "head_count = 3: expected a divisor of llama.embedding_length"),
        ({"llama.attention.head_count_kv": (0, "UINT32")}, "head_count_kv = 0: expected a positive integer"),
        ({"llama.attention.head_count_kv": (3, "UINT32")}, "head_count_kv = 3: expected a divisor of llama.attention"),
        ({"llama.attention.key_length": (15, "UINT32")}, "key_length = 15: expected an even head size"),
        ({"llama.embedding_length": (0, "UINT32")}, "llama.embedding_length = 0: expected a positive integer"),
        ({"llama.block_count": (0, "UINT32")}, "llama.block_count = 0: expected a positive integer"),
        ({"llama.block_count": (3, "UINT32")}, "llama.block_count = 3: expected 2, the number of blocks"),
        ({"llama.context_length": (0, "UINT32")}, "llama.context_length = 0: expected an integer from 1 to 1048576"),
        ({"llama.context_length": ("8192", "STRING")}, "llama.context_length = '8192': expected an integer from 1"),
        ({"llama.feed_forward_length": (0, "UINT32")}, "llama.feed_forward_length = 0: expected a positive integer"),
        ({"llama.attention.layer_norm_rms_epsilon": (0.0, "FLOAT32")}, "epsilon = 0.0: expected a finite number > 0"),
        ({"llama.attention.layer_norm_rms_epsilon": (float("nan"), "FLOAT32")}, "epsilon = nan: expected a finite"),
        ({"llama.attention.layer_norm_rms_epsilon": (-1e-5, "FLOAT32")}, "epsilon = -9.99"),
        ({"llama.rope.freq_base": (0.0, "FLOAT32")}, "llama.rope.freq_base = 0.0: expected a finite number > 0"),
        ({"llama.rope.freq_base": (float("inf"), "FLOAT32")}, "llama.rope.freq_base = inf: expected a finite"),
        ({"tokenizer.ggml.bos_token_id": (999, "UINT32")}, "bos_token_id = 999: expected a token id from 0 to 262"),
    ],
)
def test_config_value_out_of_range_is_refused(tiny_gguf, tmp_path, metadata, message):
    assert_refused(tiny_gguf(metadata=metadata), tmp_path / "out", message)


def test_token_count_other_than_the_embedding_rows_is_refused(tiny_gguf, tiny_llama, tmp_path):
    _, state_dict = tiny_llama
    embedding = state_dict["transformer.wte.weight"][:-1].numpy()
    path = tiny_gguf(raw_tensors={"token_embd.weight": (embedding, "F32")})
    assert_refused(path, tmp_path / "out", "tokenizer.ggml.tokens holds 263 tokens: expected 262, the rows of")


def test_shapes_are_checked_against_the_config_before_any_tensor_is_read(tiny_gguf, tmp_path, monkeypatch):
    path = tiny_gguf(metadata={"llama.feed_forward_length": (128, "UINT32")})  # the tensors have 96

    def dequantize(*args):
        raise AssertionError("a tensor was read before the shapes were checked")

    monkeypatch.setattr("lightning_adapt_gguf.weights.dequantize", dequantize)
    assert_refused(path, tmp_path / "out", "tensor 'blk.0.ffn_gate.weight' has shape (96, 64): expected (128, 64)")


# ---------------------------------------------------------------- 8: the output folder is checked first


def test_unwritable_output_folder_is_refused_before_the_file_is_read(tiny_gguf, tmp_path, monkeypatch):
    path = tiny_gguf()
    (tmp_path / "a-file").write_text("not a folder")
    out_dir = tmp_path / "a-file" / "model"

    def open_gguf(*args):
        raise AssertionError("the GGUF file was read before the output folder was checked")

    monkeypatch.setattr("lightning_adapt_gguf.convert.open_gguf", open_gguf)
    with pytest.raises(SystemExit) as info:
        main(["convert", "gguf", str(path), "--out", str(out_dir)])
    assert f"lightning-adapt convert: error: Cannot write the output folder '{out_dir}'" in str(info.value)
    with pytest.raises(OutputError):
        convert_gguf(path, out_dir)
