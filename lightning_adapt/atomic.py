"""Write files and output folders so that a kill never leaves a half-written result and nothing we did not write
is ever deleted or replaced.

Every folder a command writes (an export, a report, a converted checkpoint, `final/`) goes through
`atomic_directory`: it is refused before any work when it would destroy something (`check_output_dir`), filled in
a staging folder beside it, synced to disk, marked as ours, and swapped in by renames under a lock. A kill at any
point leaves either the previous folder or the new one; the next write puts a half-swapped previous folder back
and removes our own stale staging folders. Files and folders get the permissions the user's umask gives.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

MARKER = ".lightning-adapt-output.json"
"""The file inside every output folder we write: which kind of output it is. Only such a folder is ever replaced."""


class OutputError(ValueError):
    """An output folder that must not or cannot be written; the message names it and the way out."""


def _tmp_name(path: Path, tag: str) -> Path:
    return path.parent / f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (and `root`) to disk, so a rename never exposes unwritten data."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(root: Path) -> None:
    """Give every file and folder under `root` the mode a new one gets from the umask (copies keep their source's)."""
    mask = _current_umask()
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            os.chmod(Path(folder) / name, 0o666 & ~mask)


def read_marker(folder: Path) -> str | None:
    """The kind of output `folder` holds if lightning-adapt wrote it, else None."""
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _relation(target: Path, source: Path) -> str | None:
    if target == source:
        return "is"
    if source.is_relative_to(target):
        return "contains"
    if target.is_relative_to(source):
        return "lies inside"
    return None


def check_output_dir(
    target: str | Path,
    kind: str,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> Path:
    """Refuse, before any expensive work, an output folder that would destroy data or cannot be written.

    Refused: a folder that is, contains or lies inside one of `inputs`; an existing non-empty folder without our
    marker, or with the marker of another kind of output; one with our marker of the same kind unless `overwrite`
    (`overwrite_hint` names the flag that allows it); a place where no folder can be created.
    """
    target = Path(target).absolute()
    real = target.resolve()
    for source in inputs:
        relation = _relation(real, Path(source).resolve())
        if relation is not None:
            raise OutputError(
                f"Output folder '{target}' {relation} the input '{source}': writing it would replace or mix with what "
                f"this command reads. Choose an output folder outside '{source}' (and not containing it)."
            )
    if target.exists() and not target.is_dir():
        raise OutputError(f"Output folder '{target}' is an existing file. Choose a folder path.")
    if target.is_dir() and any(target.iterdir()):
        found = read_marker(target)
        if found is None:
            raise OutputError(
                f"Output folder '{target}' exists and was not written by lightning-adapt (it has no {MARKER}); it is "
                "never replaced. Choose a new folder, or move this one away yourself."
            )
        if found != kind:
            raise OutputError(
                f"Output folder '{target}' holds another kind of lightning-adapt output ({found}, not {kind}). "
                "Choose another folder."
            )
        if not overwrite:
            raise OutputError(
                f"Output folder '{target}' holds an earlier {kind}. Pass {overwrite_hint} to replace it, or choose a new folder."
            )
    _check_writable(target)
    return target


def _check_writable(target: Path) -> None:
    """Create (and remove) a probe folder where the staging folder will go, creating missing parents."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = _tmp_name(target, "probe")
        probe.mkdir()
        probe.rmdir()
    except OSError as error:
        raise OutputError(
            f"Cannot write the output folder '{target}': {error.strerror or error} ({error.filename or target.parent}). "
            "Choose a writable location."
        ) from None


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (the parent of the output): writers of it take turns."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ours(target: Path, tag: str) -> list[Path]:
    prefix = f".{target.name}.{tag}-"
    return sorted(path for path in target.parent.iterdir() if path.name.startswith(prefix))


def recover(target: Path) -> None:
    """Finish what a killed write left (call under the lock): put back a previous folder that was moved aside but
    not replaced, drop previous folders that were replaced, and remove staging folders of killed writes."""
    previous = [path for path in _ours(target, "old") if path.is_dir()]
    if previous and not target.exists():
        os.replace(previous.pop(), target)
    for path in previous + _ours(target, "tmp"):
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_directory(
    target: str | Path,
    kind: str,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    overwrite_hint: str = "overwrite=True",
) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it becomes `target`, marked as a `kind` output.

    The checks of `check_output_dir` run again under the lock (a concurrent writer may have finished meanwhile).
    """
    target = Path(target).absolute()
    inputs = list(inputs)
    check_output_dir(target, kind, inputs, overwrite, overwrite_hint)
    with _folder_lock(target.parent):
        recover(target)
        check_output_dir(target, kind, inputs, overwrite, overwrite_hint)
        staging = _tmp_name(target, "tmp")
        staging.mkdir()
        try:
            yield staging
            (staging / MARKER).write_text(json.dumps({"kind": kind, "writer": "lightning-adapt"}) + "\n")
            _apply_umask(staging)
            _fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        previous = None
        if target.exists():
            previous = _tmp_name(target, "old")
            os.replace(target, previous)
        os.replace(staging, target)
        _fsync(target.parent)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)


@contextmanager
def _atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is synced and renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path, "tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _fsync(path.parent)
    except OSError as error:  # some file systems cannot sync a folder
        if error.errno not in (errno.EINVAL, errno.EBADF):
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a synced temporary file and a rename."""
    with _atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """`torch.save` through a synced temporary file and a rename."""
    with _atomic_file(path) as tmp:
        torch.save(obj, tmp)
