"""Read text documents, lazily, from plain-text files, JSONL / JSON / CSV / Parquet rows or a `datasets` name.

Nothing is materialised beyond one document (a plain-text file read whole is cut into pieces of about
`PIECE_CHARS` characters at line ends), so corpora larger than memory can be streamed. Every error names the
file and line or row.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightning_adapt.data.records import (
    LOCAL_FORMATS,
    DataError,
    Record,
    decoded_lines,
    jsonl_records,
    read_json,
    resolve_files,
    text_field,
)

TEXT_SUFFIXES = (".txt", ".text", ".md")
DOCUMENT_SUFFIXES = TEXT_SUFFIXES + tuple(LOCAL_FORMATS)
"""What a folder given to `TextCorpus` is searched for: plain text and the row formats."""
PIECE_CHARS = 1 << 16
DocumentMode = Literal["file", "paragraph", "line"]
REPLACE_OPTION = "encoding_errors='replace'"


@dataclass(frozen=True)
class Piece:
    """Text of one document, or a piece of it: `first` and `last` mark its ends."""

    text: str
    first: bool = True
    last: bool = True


def nonempty_files(files: list[Path], source: str) -> list[Path]:
    """`files` without the empty ones (a warning names them); an error when nothing is left."""
    empty = [path for path in files if path.stat().st_size == 0]
    if empty and len(empty) == len(files):
        raise DataError(f"'{source}' holds no text: all {len(files)} file(s) are empty ({files[0]}, ...).")
    if empty:
        names = ", ".join(str(path) for path in empty[:5]) + (" ..." if len(empty) > 5 else "")
        warnings.warn(f"Skipping {len(empty)} empty file(s) in '{source}': {names}", stacklevel=2)
    skipped = set(empty)
    return [path for path in files if path not in skipped]


def read_documents(
    source: str,
    text_field: str = "text",
    split: str = "train",
    documents: DocumentMode = "file",
    errors: str = "strict",
) -> Iterator[Piece]:
    """Every non-blank document of `source`, in a fixed order; `documents` says how a plain-text file splits."""
    files = resolve_files(source, DOCUMENT_SUFFIXES)
    if files is None:
        yield from hub_documents(source, text_field, split)
        return
    for path in nonempty_files(files, source):
        suffix = path.suffix.lower()
        if suffix in LOCAL_FORMATS:
            yield from row_documents(path, text_field, errors)
        else:
            yield from text_documents(path, documents, errors)


def text_documents(path: Path, documents: DocumentMode, errors: str) -> Iterator[Piece]:
    if documents == "file":
        yield from whole_file(path, errors)
        return
    paragraph: list[str] = []
    for _, line in decoded_lines(path, errors, REPLACE_OPTION):
        if documents == "line" or not line.strip():
            text = line.strip() if documents == "line" else "".join(paragraph).strip()
            paragraph = []
            if text:
                yield Piece(text)
        else:
            paragraph.append(line)
    if paragraph and "".join(paragraph).strip():
        yield Piece("".join(paragraph).strip())


def whole_file(path: Path, errors: str) -> Iterator[Piece]:
    """The file as one document, in pieces of about PIECE_CHARS characters cut at line ends."""
    buffer: list[str] = []
    size, first = 0, True
    for _, line in decoded_lines(path, errors, REPLACE_OPTION):
        if first and not buffer and not line.strip():
            continue
        buffer.append(line)
        size += len(line)
        if size >= PIECE_CHARS and line.endswith("\n"):
            text = "".join(buffer)
            yield Piece(text.lstrip() if first else text, first=first, last=False)
            buffer, size, first = [], 0, False
    text = "".join(buffer).rstrip()
    if text or not first:
        yield Piece(text.lstrip() if first else text, first=first, last=True)


def row_documents(path: Path, field: str, errors: str) -> Iterator[Piece]:
    """One document per row: the row's `field`."""
    hint = f"Set text_field to the name of the field that holds the text in '{path.name}'."
    for record in rows(path, field, errors):
        text = text_field(record, field, hint)
        if text.strip():
            yield Piece(text)


def rows(path: Path, field: str, errors: str) -> Iterator[Record]:
    kind = LOCAL_FORMATS[path.suffix.lower()]
    if kind == "jsonl":
        yield from jsonl_records(path, errors, REPLACE_OPTION)
    elif kind == "json":
        yield from read_json(path)
    elif kind == "csv":
        with open(path, encoding="utf-8", errors=errors, newline="") as fp:
            try:
                for number, row in enumerate(csv.DictReader(fp), start=1):
                    yield Record(row, str(path), number)
            except UnicodeDecodeError as error:
                raise DataError(f"{path}: bytes that are not valid UTF-8 ({error.reason}).") from None
    else:
        yield from parquet_rows(path, field)


def parquet_rows(path: Path, field: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    if field not in table.schema_arrow.names:
        raise DataError(
            f"{path}: no column '{field}' (columns: {', '.join(table.schema_arrow.names)}). "
            "Set text_field to the column that holds the text."
        )
    number = 0
    for batch in table.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            number += 1
            yield Record({field: value}, str(path), number)


def hub_documents(name: str, field: str, split: str) -> Iterator[Piece]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as error:
        raise DataError(
            f"'{name}' is neither a local file, folder or glob nor a loadable `datasets` dataset (split '{split}'): "
            f"{type(error).__name__}: {error}"
        ) from error
    hint = f"Set text_field to the field of '{name}' that holds the text."
    for number, row in enumerate(dataset, start=1):
        text = text_field(Record(row, f"{name}[{split}]", number), field, hint)
        if text.strip():
            yield Piece(text)
