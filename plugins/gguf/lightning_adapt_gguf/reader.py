"""Open a GGUF file and read its metadata, with errors that say what is wrong with it."""

import math
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, ReaderField

from lightning_adapt_gguf.errors import GGUFImportError

GGUF_MAGIC = b"GGUF"
MAX_DIMS = 4
"""GGML's GGML_MAX_DIMS: llama.cpp refuses a tensor of more dimensions."""


class CheckedGGUFReader(GGUFReader):
    """gguf-py's reader, refusing reads past the end of the file and tensor data that does not lie inside it.

    gguf-py reads past the end as empty arrays (so a tiny file claiming an array of 10^12 numbers loops 10^12
    times), and adds each tensor's offset to the data section's as numpy uint64, which wraps around silently
    (an offset of 2^64 - 32 points 32 bytes before the data section): both are checked here with Python integers.
    """

    def _get(self, offset: int, dtype: Any, count: int = 1, override_order: Any = None) -> np.ndarray:
        end = int(offset) + np.dtype(dtype).itemsize * int(count)
        if end > len(self.data):
            raise GGUFImportError(
                f"truncated or corrupt GGUF file (its header reads up to byte {end}, but the file has {len(self.data)})"
            )
        return super()._get(offset, dtype, count, override_order)

    def _build_tensors(self, start_offs: int, fields: list[ReaderField]) -> None:
        check_tensor_data(fields, start_offs, int(self.alignment), len(self.data))
        super()._build_tensors(start_offs, fields)


def check_tensor_data(fields: list[ReaderField], data_start: int, alignment: int, file_size: int) -> None:
    """Refuse tensor infos whose data is not an aligned byte range inside the file, or overlaps another's."""
    ranges = []
    for field in fields:
        _, _, _, dims, raw_type, raw_offset = field.parts
        offset = int(raw_offset[0])
        n_bytes = _tensor_bytes(field.name, [int(d) for d in dims], int(raw_type[0]))
        start, end = data_start + offset, data_start + offset + n_bytes
        if offset % alignment:
            raise GGUFImportError(
                f"corrupt GGUF file: tensor {field.name!r} has data offset {offset}; expected a multiple of the "
                f"alignment {alignment}"
            )
        if end > file_size:
            raise GGUFImportError(
                f"truncated or corrupt GGUF file: tensor {field.name!r} has data offset {offset} and {n_bytes} bytes, "
                f"so it ends at byte {end}; expected its data inside the file's {file_size} bytes"
            )
        ranges.append((start, end, field.name))
    for (_, end, first), (start, _, second) in pairwise(sorted(ranges)):
        if start < end:
            raise GGUFImportError(
                f"corrupt GGUF file: the data of tensor {second!r} (from byte {start}) overlaps that of tensor "
                f"{first!r} (up to byte {end}); expected each tensor's data in a byte range of its own"
            )


def _tensor_bytes(name: str, dims: list[int], raw_type: int) -> int:
    """The data size of a tensor of `dims` (GGML order: the row length first) and type `raw_type`."""
    if not 1 <= len(dims) <= MAX_DIMS or min(dims) < 1:
        raise GGUFImportError(
            f"corrupt GGUF file: tensor {name!r} has dims {dims}; expected 1 to {MAX_DIMS} dimensions, each at least 1"
        )
    try:
        tensor_type = GGMLQuantizationType(raw_type)
    except ValueError:
        raise GGUFImportError(f"corrupt GGUF file: tensor {name!r} has type {raw_type}, not a GGML type") from None
    block_size, type_size = GGML_QUANT_SIZES[tensor_type]
    if dims[0] % block_size:
        raise GGUFImportError(
            f"corrupt GGUF file: tensor {name!r} has dims {dims}: row size ({dims[0]}) is not a multiple of "
            f"{tensor_type.name} block size ({block_size}); expected a multiple of {block_size}"
        )
    return math.prod(dims) // block_size * type_size


def open_gguf(path: str | Path) -> GGUFReader:
    """Memory-map `path` as GGUF; raise `GGUFImportError` if it is not GGUF, or is truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise GGUFImportError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")
    try:
        return CheckedGGUFReader(path)
    except GGUFImportError as e:
        raise GGUFImportError(f"{path}: {e}") from None
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError) as e:
        raise GGUFImportError(f"{path}: truncated or corrupt GGUF file ({e})") from e


def read_metadata(reader: GGUFReader) -> dict[str, Any]:
    """Every key/value field of the file as plain Python values (str, int, float, bool, list)."""
    return {name: field.contents() for name, field in reader.fields.items()}
