"""What a lightning-adapt `.ckpt` holds beyond Lightning's own entries, and how one is read back.

Besides the trainable weights and the loop state, a `.ckpt` records the module class and prompt style by name,
a fingerprint of the base checkpoint folder it was trained from (its frozen weights are not in the file), and the
random number generator states of every process (so dropout continues exactly on resume). Reading one never
imports or calls anything the file names: classes are looked up among those registered here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import random
import re
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lightning_adapt.model.loading import CONFIG_FILE, WEIGHTS_FILE, CheckpointError

if TYPE_CHECKING:
    from lightning_adapt.methods.base import AdaptationModule

MODULE_CLASS_KEY = "lightning_adapt_module"
COUNTERS_KEY = "lightning_adapt_counters"
PROMPT_STYLE_KEY = "lightning_adapt_prompt_style"
BASE_KEY = "lightning_adapt_base"
RNG_KEY = "lightning_adapt_rng"

MODULE_CLASSES: dict[str, type] = {}
"""Module classes a `.ckpt` may name, by `module.qualname`; every `AdaptationModule` subclass registers itself."""


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def module_class_named(name: str, ckpt_path: Path) -> type:
    """The registered module class a `.ckpt` names; anything else is refused, never imported."""
    import lightning_adapt.methods  # noqa: F401  (registers the built-in modules)

    if name not in MODULE_CLASSES:
        raise CheckpointError(
            f"'{ckpt_path}' names the module class '{name}', which is not a lightning-adapt module "
            f"(known: {', '.join(sorted(MODULE_CLASSES))}). Classes named inside a checkpoint are never imported; "
            "import your own AdaptationModule subclass before loading a checkpoint of it."
        )
    return MODULE_CLASSES[name]


def prompt_style_named(name: str, ckpt_path: Path) -> Any:
    """An instance of the prompt style class a `.ckpt` names, looked up among the loaded `PromptStyle` subclasses
    (LitGPT's own and any the user imported), never imported."""
    from litgpt.prompts import PromptStyle

    known = {class_path(cls): cls for cls in _subclasses(PromptStyle)}
    if name not in known:
        raise CheckpointError(
            f"'{ckpt_path}' names the prompt style '{name}', which is not a loaded `litgpt.prompts.PromptStyle` class. "
            "Classes named inside a checkpoint are never imported."
        )
    return known[name]()


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def read_checkpoint_header(ckpt_path: Path) -> Path:
    """`ckpt_path` if it is a complete PyTorch checkpoint file (cheap: the zip directory only) or DeepSpeed checkpoint
    folder, else a clear error."""
    from lightning_adapt.distributed.deepspeed_zero import is_deepspeed_checkpoint

    if ckpt_path.is_dir():
        if is_deepspeed_checkpoint(ckpt_path):
            return ckpt_path
        raise CheckpointError(
            f"'{ckpt_path}' is a folder but not a complete DeepSpeed checkpoint (no 'latest' file naming a folder of "
            "states: a killed save?). Resume from an earlier checkpoint of the run."
        )
    if not ckpt_path.is_file():
        raise CheckpointError(f"Checkpoint file '{ckpt_path}' does not exist.")
    if not zipfile.is_zipfile(ckpt_path):
        raise CheckpointError(
            f"'{ckpt_path}' is not a complete PyTorch checkpoint (truncated by a kill or a full disk, or another "
            "format). Resume from an earlier checkpoint of the run, or delete this file."
        )
    return ckpt_path


def is_complete_checkpoint(path: Path) -> bool:
    """Whether `path` is a whole `.ckpt` file or DeepSpeed checkpoint folder (a truncated file is not)."""
    from lightning_adapt.distributed.deepspeed_zero import is_deepspeed_checkpoint

    return is_deepspeed_checkpoint(path) if path.is_dir() else zipfile.is_zipfile(path)


def newest_checkpoint(root: Path) -> Path | None:
    """The most recently written complete `.ckpt` (file or DeepSpeed folder) anywhere under `root` (truncated ones
    are passed over)."""
    found = sorted(root.rglob("*.ckpt"), key=lambda path: path.stat().st_mtime_ns, reverse=True) if root.is_dir() else []
    return next((path for path in found if is_complete_checkpoint(path)), None)


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A `.ckpt` (or DeepSpeed checkpoint folder, as the same dict) loaded as data only (tensors, numbers, strings),
    with errors that name the file."""
    from lightning_adapt.distributed.deepspeed_zero import read_deepspeed_checkpoint

    ckpt_path = read_checkpoint_header(Path(ckpt_path))
    try:
        if ckpt_path.is_dir():
            checkpoint = read_deepspeed_checkpoint(ckpt_path)
        else:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"Cannot read checkpoint '{ckpt_path}' as data only ({unreadable_reason(error)}). lightning-adapt's "
            "checkpoints hold tensors, numbers and strings, and nothing else is ever unpickled: use a checkpoint "
            "lightning-adapt wrote."
        ) from error
    except Exception as error:
        raise CheckpointError(f"Cannot read checkpoint '{ckpt_path}': {type(error).__name__}: {error}") from error
    check_settings(checkpoint, ckpt_path)
    return checkpoint


def unreadable_reason(error: Exception) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in a few words: the class or function its pickle
    names, or the error itself."""
    named = re.search(r"GLOBAL (\S+) was not an allowed global", str(error))
    if named:
        return f"it names {named.group(1)}"
    detail = re.search(r"WeightsUnpickler error: (.+)", str(error))
    return detail.group(1) if detail else f"{type(error).__name__}: {error}"


def check_settings(checkpoint: dict[str, Any], ckpt_path: Path) -> None:
    """Refuse a `.ckpt` whose settings of a dataclass (`lora`, `optimization`, `export`) hold fields the dataclass
    does not have (an edited file, or one another version of lightning-adapt wrote)."""
    from lightning_adapt.formats.export import ExportSettings
    from lightning_adapt.techniques.lora import LoRA
    from lightning_adapt.methods.optimization import Optimization

    settings = checkpoint.get("hyper_parameters") or {}
    for name, cls in (("lora", LoRA), ("optimization", Optimization), ("export", ExportSettings)):
        known, value = [field.name for field in dataclasses.fields(cls)], settings.get(name)
        unknown = sorted(set(value) - set(known)) if isinstance(value, dict) else []
        if unknown:
            raise CheckpointError(
                f"'{ckpt_path}': its {name} settings hold {unknown}, which {cls.__name__} does not have (its fields: "
                f"{', '.join(known)}). The file was edited or written by another version of lightning-adapt: use a "
                "checkpoint this version wrote."
            )


def check_resumable(ckpt_path: Path, module: AdaptationModule) -> None:
    """Refuse, before the model is built, to resume `module` from a `.ckpt` it cannot continue: one unreadable as data
    only, not written by a lightning-adapt module, or by another method (`check_same_method`); or one whose base model
    changed."""
    checkpoint = read_checkpoint(ckpt_path)
    if MODULE_CLASS_KEY not in checkpoint:
        raise CheckpointError(
            f"'{ckpt_path}' was not written by a lightning-adapt module (no '{MODULE_CLASS_KEY}' entry), so it cannot "
            "be resumed. Resume from a checkpoint of a lightning-adapt run, or drop --ckpt_path."
        )
    check_same_method(checkpoint, module, f"'{ckpt_path}'")
    check_base(checkpoint, module.checkpoint_dir, f"'{ckpt_path}'")


def check_same_method(checkpoint: dict[str, Any], module: AdaptationModule, where: str) -> None:
    """Refuse to resume `module` from a checkpoint of a lightning-adapt module of another method (module class, LoRA
    or every weight, LoRA rank or targets), whose trainable weights and optimizer state would not fit."""
    saved = method_of(checkpoint[MODULE_CLASS_KEY], (checkpoint.get("hyper_parameters") or {}).get("lora"))
    current = method_of(class_path(type(module)), dataclasses.asdict(module.lora) if module.lora else None)
    if saved != current:
        raise CheckpointError(
            f"{where} was written by {saved}, but this run is {current}: its trainable weights and optimizer "
            "state do not fit. Resume with the settings of the run that wrote it (its config.yaml next to its "
            "metrics.csv), or drop --ckpt_path to start afresh."
        )


def method_of(module_class: str, lora: dict[str, Any] | None) -> str:
    """A training method in words, as far as it decides which weights train: the module class, LoRA's rank and
    targets or every weight."""
    name = module_class.rsplit(".", 1)[-1]
    if not lora:
        return f"{name} of every weight (lora: null)"
    return f"{name} with LoRA (r={lora.get('r')} on {', '.join(sorted(lora.get('targets') or []))})"


# --- the base checkpoint's fingerprint -------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        while chunk := fp.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file, computed once per process for each version of it (path, size, mtime, inode)."""
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def base_fingerprint(checkpoint_dir: Path) -> dict[str, str]:
    """SHA-256 of the base weights and model config a run trains on top of."""
    return {"checkpoint_dir": str(checkpoint_dir), "weights_sha256": file_digest(checkpoint_dir / WEIGHTS_FILE),
            "config_sha256": file_digest(checkpoint_dir / CONFIG_FILE)}


def check_base(checkpoint: dict[str, Any], checkpoint_dir: Path, what: str) -> None:
    """Refuse a `.ckpt` whose base checkpoint folder changed since it was written (a different model would result)."""
    recorded = checkpoint.get(BASE_KEY)
    if recorded is None:
        return
    current = base_fingerprint(checkpoint_dir)
    changed = [key for key in ("weights_sha256", "config_sha256") if recorded.get(key) != current[key]]
    if changed:
        files = " and ".join(WEIGHTS_FILE if key.startswith("weights") else CONFIG_FILE for key in changed)
        raise CheckpointError(
            f"{what} was trained on top of '{recorded.get('checkpoint_dir')}' ({WEIGHTS_FILE} sha256 "
            f"{recorded.get('weights_sha256', '?')[:16]}...), but {files} in '{checkpoint_dir}' differ now ({WEIGHTS_FILE} "
            f"sha256 {current['weights_sha256'][:16]}...). Restore the base model the run was trained on; its adapter "
            "or weights on top of another base would give a different model."
        )


# --- random number generator states, one per process ---------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and Python RNG states, as tensors and plain numbers (loadable with
    `weights_only=True`)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
