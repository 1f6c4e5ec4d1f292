"""Open a GGUF file and read its metadata, with errors that say what is wrong with it."""

from pathlib import Path
from typing import Any

from gguf import GGUFReader

from lightning_adapt_gguf.errors import GGUFImportError

GGUF_MAGIC = b"GGUF"


def open_gguf(path: str | Path) -> GGUFReader:
    """Memory-map `path` as GGUF; raise `GGUFImportError` if it is not GGUF, or is truncated or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise GGUFImportError(f"{path}: not a GGUF file (it does not start with the bytes 'GGUF')")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, OverflowError, UnicodeDecodeError) as e:
        raise GGUFImportError(f"{path}: truncated or corrupt GGUF file ({e})") from e


def read_metadata(reader: GGUFReader) -> dict[str, Any]:
    """Every key/value field of the file as plain Python values (str, int, float, bool, list)."""
    return {name: field.contents() for name, field in reader.fields.items()}
