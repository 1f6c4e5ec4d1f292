"""Training checkpoints as files, and the one reader of them.

A training checkpoint is a Lightning `.ckpt` (the zip archive `torch.save` writes) or a DeepSpeed checkpoint folder
(named like a `.ckpt`; its `latest` file names a folder of states, one file of model states and one of optimizer
states per process). Every command, strategy and module that reads one reads it here: whether it is whole, which of
the two it is, and its content as data only (`weights_only=True`, memory-mapped), with one message per way a
checkpoint can be unusable. What the content means (module class, settings, base fingerprint) is
`lightning_adapt.methods.checkpoints`'s.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from lightning_adapt.model.loading import CheckpointError

DEEPSPEED_LATEST = "latest"
"""The file of a DeepSpeed checkpoint folder that names its folder of states."""


def is_deepspeed_checkpoint(path: Path) -> bool:
    """Whether `path` is a complete checkpoint folder DeepSpeed wrote (its `latest` file names a folder of states)."""
    return path.is_dir() and (path / DEEPSPEED_LATEST).is_file() and states_folder(path).is_dir()


def is_training_checkpoint(path: Path) -> bool:
    """Whether `path` is meant as a training checkpoint: a file, or a complete DeepSpeed checkpoint folder. Any other
    folder is not (a model folder, or a DeepSpeed save that was killed)."""
    return not path.is_dir() or is_deepspeed_checkpoint(path)


def is_complete_checkpoint(path: Path) -> bool:
    """Whether `path` is a whole `.ckpt` file or DeepSpeed checkpoint folder (a truncated file is not)."""
    return is_deepspeed_checkpoint(path) if path.is_dir() else zipfile.is_zipfile(path)


def newest_checkpoint(root: Path) -> Path | None:
    """The most recently written complete `.ckpt` (file or DeepSpeed folder) anywhere under `root` (truncated ones
    are passed over)."""
    found = sorted(root.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime_ns, reverse=True) if root.is_dir() else []
    return next((path for path in found if is_complete_checkpoint(path)), None)


def states_folder(path: Path) -> Path:
    """The folder of states that the `latest` file of a DeepSpeed checkpoint folder names."""
    return path / (path / DEEPSPEED_LATEST).read_text().strip()


def model_states_file(path: Path) -> Path:
    """The model-states file of process 0 in a DeepSpeed checkpoint folder (stage 2 names it without the rank)."""
    folder = states_folder(path)
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"'{folder}' holds no model states of process 0.")


def check_checkpoint(path: str | Path) -> Path:
    """`path` as a Path if it is a complete `.ckpt` file (cheap: the zip directory only) or DeepSpeed checkpoint
    folder, else a clear error."""
    path = Path(path)
    if not is_training_checkpoint(path):
        raise CheckpointError(
            f"'{path}' is a folder but not a complete DeepSpeed checkpoint (no 'latest' file naming a folder of "
            "states: a killed save?). Resume from an earlier checkpoint of the run."
        )
    if path.is_dir():
        return path
    if not path.is_file():
        raise CheckpointError(f"Checkpoint file '{path}' does not exist.")
    if not is_complete_checkpoint(path):
        raise CheckpointError(
            f"'{path}' is not a complete PyTorch checkpoint (truncated by a kill or a full disk, or another "
            "format). Resume from an earlier checkpoint of the run, or delete this file."
        )
    return path


def check_resumed_by(path: str | Path, deepspeed: bool) -> Path:
    """`path` checked (`check_checkpoint`) as a checkpoint the resuming strategy can read: a DeepSpeed checkpoint
    folder under DeepSpeed, a one-file `.ckpt` under any other strategy."""
    path = check_checkpoint(path)
    if deepspeed and path.is_file():
        raise CheckpointError(f"'{path}' is a one-file checkpoint: DeepSpeed resumes from the checkpoint folders it "
                              "writes. Resume it with the strategy that wrote it.")
    if not deepspeed and path.is_dir():
        raise CheckpointError(f"'{path}' is a DeepSpeed checkpoint folder: only DeepSpeed resumes it (its optimizer "
                              "state is partitioned by process). Resume it with the strategy that wrote it.")
    return path


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A `.ckpt` (or DeepSpeed checkpoint folder, as the same dict) loaded as data only (tensors, numbers, strings),
    with errors that name the file."""
    path = check_checkpoint(path)
    try:
        return _read_deepspeed_checkpoint(path) if path.is_dir() else _load(path)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"Cannot read checkpoint '{path}' as data only ({unreadable_reason(error)}). lightning-adapt's "
            "checkpoints hold tensors, numbers and strings, and nothing else is ever unpickled: use a checkpoint "
            "lightning-adapt wrote."
        ) from error
    except Exception as error:
        raise CheckpointError(f"Cannot read checkpoint '{path}': {type(error).__name__}: {error}") from error


def _read_deepspeed_checkpoint(path: Path) -> dict[str, Any]:
    """A complete DeepSpeed checkpoint folder as the dict a one-file `.ckpt` holds (its `state_dict` the trainable
    weights: under stage 3 gathered into process 0's model states, under stage 2 DeepSpeed's own `module` entry)."""
    states = _load(model_states_file(path))
    if "state_dict" not in states:  # stage 2: DeepSpeed's own copy of the module, whose weights are whole
        trainable = {name for group in states["param_shapes"] for name in group}
        states["state_dict"] = {name: value for name, value in states["module"].items() if name in trainable}
    return states


def check_deepspeed_files(path: Path) -> None:
    """Refuse a DeepSpeed checkpoint folder with a file that does not load as data only (`weights_only=True`; DeepSpeed's
    own loader unpickles in full)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    for file in sorted(states_folder(path).glob("*.pt")):
        try:  # DeepSpeed's optimizer states hold three data classes of its own besides tensors and numbers
            with torch.serialization.safe_globals([LossScaler, ZeroStageEnum, fragment_address]):
                _load(file)
        except Exception as error:
            raise CheckpointError(
                f"Cannot read '{file}' as data only ({unreadable_reason(error)}). lightning-adapt's DeepSpeed "
                "checkpoints hold tensors, numbers, strings and three data classes of DeepSpeed, and nothing else is "
                "ever unpickled: resume from a checkpoint this run wrote."
            ) from error


def _load(file: Path) -> Any:
    """The content of a file `torch.save` wrote, as data only, its tensors memory-mapped on the CPU."""
    return torch.load(file, map_location="cpu", weights_only=True, mmap=True)


def unreadable_reason(error: Exception) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in a few words: the class or function its pickle
    names, or the error itself."""
    named = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
    if named:
        return f"it names {named.group(1)}"
    detail = re.search(r"WeightsUnpickler error: (.+)", str(error))
    return detail.group(1) if detail else f"{type(error).__name__}: {error}"
