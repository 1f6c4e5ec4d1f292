"""Read rows of data from local JSON, JSONL, CSV and Parquet files or a `datasets` hub name.

Every row keeps its origin (file and 1-based row number) so that errors can name it.
"""

from __future__ import annotations

import codecs
import glob
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

LOCAL_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
BUILTIN_PREFIX = "builtin:"
READ_BYTES = 1 << 16


class DataError(ValueError):
    """A data source or one of its rows cannot be used; the message names the file, row and field."""


@dataclass(frozen=True)
class Record:
    """One row and where it came from."""

    data: dict[str, Any]
    source: str
    row: int

    @property
    def where(self) -> str:
        return f"{self.source}: row {self.row}"


def resolve_builtin(source: str | Path) -> str | Path:
    """`builtin:NAME` is the data file NAME shipped inside the package (`lightning_adapt/data/builtin/NAME`)."""
    if isinstance(source, str) and source.startswith(BUILTIN_PREFIX):
        return Path(__file__).parent / "builtin" / source[len(BUILTIN_PREFIX) :]
    return source


def resolve_files(source: str | Path, suffixes: Iterable[str] = tuple(LOCAL_FORMATS)) -> list[Path] | None:
    """The data files `source` names — a file, a folder (searched recursively for `suffixes`, hidden files left out),
    a glob, a `builtin:` name — or None for a `datasets` hub name (anything shaped like `name` or `org/name` that is
    not a local path). A local path that names nothing is an error, never a hub look-up."""
    suffixes = tuple(suffixes)
    path = Path(resolve_builtin(source))
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if not files:
            raise DataError(f"Folder '{source}' holds no {', '.join(suffixes)} files.")
        return files
    if any(ch in str(source) for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"No file matches '{source}' (relative to '{Path.cwd()}').")
        return files
    looks_local = path.suffix.lower() in suffixes or str(source).startswith((BUILTIN_PREFIX, "/", ".", "~"))
    if looks_local or len(path.parts) > 2 or (len(path.parts) == 2 and path.parent.is_dir()):
        raise DataError(f"Data file '{source}' does not exist. Check the path (relative to '{Path.cwd()}').")
    return None


def read_records(source: str | Path, split: str = "train", name: str | None = None) -> list[Record]:
    """All rows of `source`: local file(s) when it names any, else `datasets.load_dataset(source, name, split=split)`."""
    files = resolve_files(source)
    if files is None:
        return read_hub_dataset(str(source), split, name)
    return [record for path in files for record in read_file(path)]


def read_file(path: Path) -> list[Record]:
    kind = LOCAL_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"'{path}': unsupported file type '{path.suffix}'. Use one of {', '.join(LOCAL_FORMATS)}."
        )
    if kind == "jsonl":
        return read_jsonl(path)
    if kind == "json":
        return read_json(path)
    return read_tabular(path, kind)


def decoded_lines(
    path: Path, errors: str = "strict", replace_option: str | None = None, start: int = 0, first_line: int = 1
) -> Iterator[tuple[int, str, int]]:
    """(line number, text, byte offset just past it) of a UTF-8 file from byte `start` (a line start, numbered
    `first_line`) on, read in chunks of at most READ_BYTES (a longer line comes in several pieces); bad bytes are a
    DataError naming the line, and `replace_option` when the caller has one."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)
    line_number = first_line
    with open(path, "rb") as fp:
        fp.seek(start)
        for chunk in itertools.chain(iter(lambda: fp.readline(READ_BYTES), b""), [None]):
            try:
                text = decoder.decode(chunk or b"", final=chunk is None)
            except UnicodeDecodeError as error:
                replace = f", or set {replace_option} to read them as U+FFFD" if replace_option else ""
                raise DataError(
                    f"{path}: line {line_number}: bytes that are not valid UTF-8 ({error.reason}). Convert the file "
                    f"to UTF-8 (e.g. `iconv -f latin1 -t utf-8`){replace}."
                ) from None
            if text:
                yield line_number, text, fp.tell()
            line_number += chunk is not None and chunk.endswith(b"\n")


def whole_lines(
    path: Path, errors: str = "strict", replace_option: str | None = None, start: int = 0, first_line: int = 1
) -> Iterator[tuple[int, str, int]]:
    """Like `decoded_lines`, but each line whole, however long."""
    lines = decoded_lines(path, errors, replace_option, start, first_line)
    for line_number, pieces in itertools.groupby(lines, key=itemgetter(0)):
        texts, end = [], start
        for _, text, end in pieces:
            texts.append(text)
        yield line_number, "".join(texts), end


def jsonl_record(path: Path, line_number: int, line: str) -> Record:
    """The row that JSONL `line` holds."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: row {line_number}: not valid JSON ({error.msg}). Fix or remove that line.") from None
    return as_record(row, str(path), line_number)


def jsonl_records(path: Path, errors: str = "strict", replace_option: str | None = None) -> Iterator[Record]:
    """The rows of a JSONL file, one per non-blank line (however long), each with its line number."""
    for line_number, line, _ in whole_lines(path, errors, replace_option):
        if line.strip():
            yield jsonl_record(path, line_number, line)


def read_jsonl(path: Path) -> list[Record]:
    return list(jsonl_records(path))


def read_json(path: Path) -> list[Record]:
    try:
        rows = json.loads("".join(text for _, text, _ in decoded_lines(path)))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON at line {error.lineno}, column {error.colno} ({error.msg}).") from None
    if isinstance(rows, dict) and len(rows) == 1 and isinstance(next(iter(rows.values())), list):
        rows = next(iter(rows.values()))
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of objects (one per example), got {type(rows).__name__}.")
    return [as_record(row, str(path), index) for index, row in enumerate(rows, start=1)]


def read_tabular(path: Path, kind: str) -> list[Record]:
    import datasets

    try:
        table = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as error:
        raise DataError(f"{path}: cannot be read as {kind.upper()} ({type(error).__name__}: {error}).") from error
    return [as_record(row, str(path), index) for index, row in enumerate(table, start=1)]


def read_hub_dataset(path: str, split: str, name: str | None = None) -> list[Record]:
    import datasets

    label = f"{path}[{split}]" if name is None else f"{path}/{name}[{split}]"
    try:
        table = datasets.load_dataset(path, name, split=split)
    except Exception as error:
        raise DataError(
            f"'{label}' is neither a local data file nor a loadable `datasets` dataset: {type(error).__name__}: {error}"
        ) from error
    return [as_record(row, label, index) for index, row in enumerate(table, start=1)]


def as_record(row: Any, source: str, number: int) -> Record:
    if not isinstance(row, dict):
        raise DataError(f"{source}: row {number}: expected an object with named fields, got {type(row).__name__}.")
    return Record(row, source, number)


def text_field(record: Record, field: str, hint: str, required: bool = True) -> str:
    """`record.data[field]` as a string; a clear error naming row and field when it is missing or not text."""
    if field not in record.data or record.data[field] is None:
        if not required:
            return ""
        present = ", ".join(sorted(map(str, record.data))) or "none"
        raise DataError(f"{record.where}: missing field '{field}' (fields present: {present}). {hint}")
    value = record.data[field]
    if not isinstance(value, str):
        raise DataError(f"{record.where}: field '{field}' must be text, got {type(value).__name__} {value!r:.60}.")
    return value
