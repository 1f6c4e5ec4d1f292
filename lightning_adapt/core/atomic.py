"""Write files and output folders so that a kill never leaves a half-written result and nothing we did not write
is ever deleted or replaced.

Every folder a command writes (an export, a report, a converted checkpoint, `final/`) goes through
`atomic_directory`: it is refused before any work when it would destroy something or could not be swapped in
(`check_output_dir`), filled in a staging folder beside it, synced to disk, marked as ours with the list of what we
wrote, and swapped in by renames under a lock. A kill at any point leaves either the previous folder or the new one;
the next write puts a half-swapped previous folder back and removes our own stale staging folders. Files and
folders get the permissions the user's umask gives. A training run claims its out_dir (`claim_folder`) so that a
second run into it is refused while the first runs.
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
"""The file inside every output folder we write: which kind of output it is (`kind`) and every file and folder we
wrote in it (`files`). Only such a folder is ever replaced, and only while it holds nothing else."""
CLAIM = ".lightning-adapt-run.lock"
"""The file a training run holds locked in its out_dir while it runs (`claim_folder`)."""
_claims: dict[Path, int] = {}


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


def _marker(folder: Path) -> dict[str, Any]:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def read_marker(folder: Path) -> str | None:
    """The kind of output `folder` holds if lightning-adapt wrote it, else None."""
    return _marker(folder).get("kind")


def _entries(root: Path) -> list[str]:
    """Every file and folder under `root` (links not followed), as paths relative to it."""
    found = []
    for folder, dirs, files in os.walk(root):
        base = Path(folder).relative_to(root)
        found += [(base / name).as_posix() for name in dirs + files]
    return sorted(found)


def _not_written(target: Path, written: set[str]) -> list[str]:
    """What `target` holds beyond `written`; a folder beyond it is named once, with a trailing /."""
    found = []
    for folder, dirs, files in os.walk(target):
        base = Path(folder).relative_to(target)
        for name in list(dirs):
            if (base / name).as_posix() not in written:
                found.append(f"{(base / name).as_posix()}/")
                dirs.remove(name)
        found += [(base / name).as_posix() for name in files if (base / name).as_posix() not in written]
    return sorted(found)


def _added(folder: Path) -> list[str] | None:
    """What `folder` holds beyond the files its marker lists as ours; None when the marker lists none (an older one)."""
    written = _marker(folder).get("files")
    return _not_written(folder, {*written, MARKER}) if isinstance(written, list) else None


def only_ours(folder: Path, kind: str) -> bool:
    """Whether `folder` is a `kind` output we wrote that holds nothing else (so removing it deletes only our files)."""
    return read_marker(folder) == kind and _added(folder) == []


def _check_only_ours(target: Path) -> None:
    """Refuse replacing a folder of ours that holds what we did not write (replacing it would delete that)."""
    added = _added(target)
    if added is None:
        raise OutputError(
            f"Output folder '{target}' was written by an older lightning-adapt, whose {MARKER} does not list the files "
            "it wrote, so files added to it since cannot be told apart and it is never replaced. Check it, then "
            "delete it or move it away yourself, or choose a new folder."
        )
    if added:
        shown = ", ".join(added[:5]) + (f" and {len(added) - 5} more" if len(added) > 5 else "")
        raise OutputError(
            f"Output folder '{target}' holds files lightning-adapt did not write: {shown}. Replacing the folder would "
            "delete them: move them out of it (or choose a new folder) and run again."
        )


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
    marker, with the marker of another kind of output, or holding files the marker does not list; one with our
    marker of the same kind unless `overwrite` (`overwrite_hint` names the flag that allows it); a place where no
    folder can be created and renamed; an existing folder that cannot be moved (a mount point, an immutable folder).
    """
    target = Path(target).absolute()
    _check_target(target, kind, inputs, overwrite, overwrite_hint)
    _check_writable(target)
    with _folder_lock(target.parent):
        _check_movable(target)
    return target


def _check_target(target: Path, kind: str, inputs: Iterable[str | Path], overwrite: bool, overwrite_hint: str) -> None:
    """The checks of `check_output_dir` that only read: the inputs, and what an existing folder holds."""
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
        _check_only_ours(target)
        if not overwrite:
            raise OutputError(
                f"Output folder '{target}' holds an earlier {kind}. Pass {overwrite_hint} to replace it, or choose a new folder."
            )


def _check_writable(target: Path) -> None:
    """Create, rename and remove a probe folder where the staging folder will go, creating missing parents."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        probe, renamed = _tmp_name(target, "probe"), _tmp_name(target, "probe")
        probe.mkdir()
        try:
            os.rename(probe, renamed)
        except OSError:
            probe.rmdir()
            raise
        renamed.rmdir()
    except OSError as error:
        raise OutputError(
            f"Cannot write the output folder '{target}': {error.strerror or error} ({error.filename or target.parent}). "
            "Choose a writable location."
        ) from None


def _rename_error(target: Path, error: OSError) -> OutputError:
    """The refusal of a folder the swap cannot rename, with the way out."""
    if os.path.ismount(target):
        fix = (f"'{target}' is a mount point, which no folder can be renamed over: choose a new folder inside it, "
               f"such as '{target / 'out'}'")
    else:
        fix = (f"Choose an output folder where you can create, rename and remove folders, or make '{target}' movable "
               "(its parent writable by you, no immutable attribute: lsattr, chattr -i)")
    return OutputError(
        f"Cannot replace the output folder '{target}': renaming '{error.filename}' to '{error.filename2}' failed "
        f"({error.strerror or error}); it is left as it was. {fix}."
    )


def _check_movable(target: Path) -> None:
    """Move an existing `target` aside and back (under the lock), as the swap will: a mount point, an immutable folder
    or one in a sticky folder owned by another user refuse it, though a probe beside it can be created and renamed.
    A kill in between is undone by `recover`."""
    if not os.path.lexists(target):
        return
    aside = _tmp_name(target, "old")
    try:
        os.replace(target, aside)
    except OSError as error:
        raise _rename_error(target, error) from None
    os.replace(aside, target)


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (the parent of the output): writers of it take turns."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as error:
        raise OutputError(
            f"Cannot lock the folder '{folder}' to write an output folder in it ({error.strerror or error}). "
            "Choose a location you can read and write."
        ) from None
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
    """Yield an empty staging folder beside `target`; on success it becomes `target`, marked as a `kind` output with
    the list of what it holds.

    The checks of `check_output_dir` run again under the lock (a concurrent writer may have finished meanwhile).
    """
    inputs = list(inputs)
    target = check_output_dir(target, kind, inputs, overwrite, overwrite_hint)
    with _folder_lock(target.parent):
        recover(target)
        _check_target(target, kind, inputs, overwrite, overwrite_hint)
        staging = _tmp_name(target, "tmp")
        staging.mkdir()
        try:
            yield staging
            marker = {"kind": kind, "writer": "lightning-adapt", "files": _entries(staging)}
            (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
            _apply_umask(staging)
            _fsync_tree(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap(staging, target)


def _swap(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, moving an existing `target` aside first and removing it after. A refused rename
    puts `target` back, removes `staging` and raises an OutputError."""
    previous = _tmp_name(target, "old") if os.path.lexists(target) else None
    try:
        if previous is not None:
            os.replace(target, previous)
        try:
            os.replace(staging, target)
        except OSError:
            if previous is not None:
                os.replace(previous, target)
            raise
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise _rename_error(target, error) from None
    _fsync(target.parent)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def claim_folder(folder: str | Path) -> None:
    """Hold `folder`'s CLAIM file locked until `release_folder` or the end of this process (a kill releases it too):
    a training run's claim on its out_dir, refused while another process holds it. Claiming a folder this process
    holds does nothing (a fit that raised never released its claim)."""
    folder = Path(folder).absolute()
    key = folder.resolve()
    if key in _claims:
        return
    fd = os.open(folder / CLAIM, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(
            f"'{folder}' is the out_dir of another training run that is still running (it holds {folder / CLAIM}): "
            "the final/ of one run would replace the other's. Give this run its own out_dir, or start it when the "
            "other run has ended."
        ) from None
    _claims[key] = fd


def release_folder(folder: str | Path) -> None:
    """Give up this process's claim on `folder` (see `claim_folder`), if it holds one."""
    fd = _claims.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


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
