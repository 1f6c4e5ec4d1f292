"""Read text documents, lazily, from plain-text files, JSONL / JSON / CSV / Parquet rows or a `datasets` name.

Nothing is materialised beyond one document (a plain-text file read whole is cut into pieces of about
`PIECE_CHARS` characters at line ends), so corpora larger than memory can be streamed. Every error names the
file and line or row. `document_stream` says, after every piece, where the stream stands (a `Position`), and can
start from one without reading what lies before it: byte offsets in text, JSONL and CSV files, row numbers in
Parquet (found through its row groups) and JSON files, the `datasets` stream's own state for hub names.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lightning_adapt.data.records import (
    LOCAL_FORMATS,
    DataError,
    Record,
    decoded_lines,
    jsonl_record,
    read_json,
    resolve_files,
    text_field,
    whole_lines,
)

TEXT_SUFFIXES = (".txt", ".text", ".md")
DOCUMENT_SUFFIXES = TEXT_SUFFIXES + tuple(LOCAL_FORMATS)
"""What a folder given to `TextCorpus` is searched for: plain text and the row formats."""
PIECE_CHARS = 1 << 16
DocumentMode = Literal["file", "paragraph", "line"]
REPLACE_OPTION = "encoding_errors='replace'"
Position = dict[str, Any]
"""Where a document stream stands after a piece: the file (index and path) and where in it to go on. Plain data, so
that a checkpoint holds it and loads it with `weights_only=True`."""


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
    return (piece for piece, _ in document_stream(source, text_field, split, documents, errors))


def document_stream(
    source: str,
    text_field: str = "text",
    split: str = "train",
    documents: DocumentMode = "file",
    errors: str = "strict",
    start: Position | None = None,
) -> Iterator[tuple[Piece, Position]]:
    """(piece, position after it) of `read_documents`, from `start` (a position it gave) on."""
    files = resolve_files(source, DOCUMENT_SUFFIXES)
    if files is None:
        yield from hub_documents(source, text_field, split, start)
        return
    files = nonempty_files(files, source)
    first = 0 if start is None else start_file(files, start, source)
    for index in range(first, len(files)):
        path = files[index]
        at = start if start is not None and index == first else {}
        if path.suffix.lower() in LOCAL_FORMATS:
            pieces = row_documents(path, text_field, errors, at)
        else:
            pieces = text_documents(path, documents, errors, at)
        for piece, position in pieces:
            yield piece, {"file": index, "path": str(path), **position}


def start_file(files: list[Path], start: Position, source: str) -> int:
    """The index of the file a position lies in; an error when the source no longer holds that file there."""
    index = start["file"]
    if index >= len(files) or str(files[index]) != start["path"]:
        now = str(files[index]) if index < len(files) else f"only {len(files)} files"
        raise DataError(
            f"'{source}' changed since the checkpoint was saved: its file {index + 1} was '{start['path']}', now "
            f"{now}. Resume with the data the run started with, or start a new run."
        )
    return index


def text_documents(path: Path, documents: DocumentMode, errors: str, at: Position) -> Iterator[tuple[Piece, Position]]:
    lines = decoded_lines(path, errors, REPLACE_OPTION, at.get("offset", 0), at.get("line", 1))
    if documents == "file":
        yield from whole_file(path, lines, at.get("first", True))
        return
    paragraph: list[str] = []
    for number, line, end in lines:
        if documents == "line" or not line.strip():
            text = line.strip() if documents == "line" else "".join(paragraph).strip()
            paragraph = []
            if text:
                yield Piece(text), {"offset": end, "line": number + line.endswith("\n")}
        else:
            paragraph.append(line)
    if paragraph and "".join(paragraph).strip():
        yield Piece("".join(paragraph).strip()), {"offset": path.stat().st_size, "line": number + 1}


def whole_file(path: Path, lines: Iterator[tuple[int, str, int]], first: bool) -> Iterator[tuple[Piece, Position]]:
    """The file as one document, in pieces of about PIECE_CHARS characters cut at line ends (from `lines` on; `first`:
    no piece of it was read yet)."""
    buffer: list[str] = []
    size = 0
    for number, line, end in lines:
        if first and not buffer and not line.strip():
            continue
        buffer.append(line)
        size += len(line)
        if size >= PIECE_CHARS and line.endswith("\n"):
            text = "".join(buffer)
            yield Piece(text.lstrip() if first else text, first=first, last=False), {
                "offset": end, "line": number + 1, "first": False}
            buffer, size, first = [], 0, False
    text = "".join(buffer).rstrip()
    if text or not first:
        yield Piece(text.lstrip() if first else text, first=first, last=True), {"offset": path.stat().st_size}


def row_documents(path: Path, field: str, errors: str, at: Position) -> Iterator[tuple[Piece, Position]]:
    """One document per row: the row's `field`."""
    hint = f"Set text_field to the name of the field that holds the text in '{path.name}'."
    for record, position in rows(path, field, errors, at):
        text = text_field(record, field, hint)
        if text.strip():
            yield Piece(text), position


def rows(path: Path, field: str, errors: str, at: Position) -> Iterator[tuple[Record, Position]]:
    kind = LOCAL_FORMATS[path.suffix.lower()]
    if kind == "jsonl":
        for number, line, end in whole_lines(path, errors, REPLACE_OPTION, at.get("offset", 0), at.get("line", 1)):
            if line.strip():
                yield jsonl_record(path, number, line), {"offset": end, "line": number + 1}
    elif kind == "json":
        done = at.get("row", 0)
        for record in read_json(path)[done:]:
            yield record, {"row": record.row}
    elif kind == "csv":
        yield from csv_rows(path, errors, at)
    else:
        yield from parquet_rows(path, field, at.get("row", 0))


def csv_rows(path: Path, errors: str, at: Position) -> Iterator[tuple[Record, Position]]:
    """The rows of a CSV file under its header row, each with the byte offset past it (rows may span lines)."""
    end = at.get("offset", 0)
    line_number = at.get("line", 1)

    def lines() -> Iterator[str]:
        nonlocal end, line_number
        for line_number, line, end in whole_lines(path, errors, REPLACE_OPTION, end, line_number):
            yield line

    reader = csv.reader(lines())
    header = at.get("header") or next(reader, None)
    number = at.get("row", 0)
    for values in reader:
        if not values:
            continue
        number += 1
        yield Record(dict(zip(header, values)), str(path), number), {
            "offset": end, "line": line_number + 1, "header": header, "row": number}


def parquet_rows(path: Path, field: str, done: int = 0) -> Iterator[tuple[Record, Position]]:
    """The `field` of every row after the first `done`, found through the row groups (earlier ones are not read)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    if field not in table.schema_arrow.names:
        raise DataError(
            f"{path}: no column '{field}' (columns: {', '.join(table.schema_arrow.names)}). "
            "Set text_field to the column that holds the text."
        )
    group, number = 0, 0
    while group < table.num_row_groups and number + table.metadata.row_group(group).num_rows <= done:
        number += table.metadata.row_group(group).num_rows
        group += 1
    if group == table.num_row_groups:
        return
    batches = table.iter_batches(columns=[field], batch_size=1024, row_groups=range(group, table.num_row_groups))
    for batch in batches:
        for value in batch.column(0).to_pylist():
            number += 1
            if number > done:
                yield Record({field: value}, str(path), number), {"row": number}


def hub_documents(name: str, field: str, split: str, start: Position | None) -> Iterator[tuple[Piece, Position]]:
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split, streaming=True)
    except Exception as error:
        raise DataError(
            f"'{name}' is neither a local file, folder or glob nor a loadable `datasets` dataset (split '{split}'): "
            f"{type(error).__name__}: {error}"
        ) from error
    number = 0
    if start is not None:
        dataset.load_state_dict(start["state"])
        number = start["row"]
    hint = f"Set text_field to the field of '{name}' that holds the text."
    for row in dataset:
        number += 1
        text = text_field(Record(row, f"{name}[{split}]", number), field, hint)
        if text.strip():
            yield Piece(text), {"state": dataset.state_dict(), "row": number}
