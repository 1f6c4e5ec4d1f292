"""What a lightning-adapt `.ckpt` holds beyond Lightning's own entries, and how one is read back.

Besides the trainable weights and the loop state, a `.ckpt` records the module class and prompt style by name,
a fingerprint of the base checkpoint folder it was trained from (its frozen weights are not in the file), and the
random number generator states of every process (so dropout continues exactly on resume). The file itself is read by
`lightning_adapt.model.training_checkpoints`; reading one never imports or calls anything it names: classes are
looked up among those registered here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from litgpt.prompts import PromptStyle

from lightning_adapt.formats.export import ExportSettings
from lightning_adapt.methods.optimization import Optimization
from lightning_adapt.model.loading import CONFIG_FILE, WEIGHTS_FILE, CheckpointError
from lightning_adapt.techniques import Technique, chosen_technique
from lightning_adapt.model.training_checkpoints import read_training_checkpoint
from lightning_adapt.techniques.lora import LoRA

MODULE_CLASS_KEY = "lightning_adapt_module"
COUNTERS_KEY = "lightning_adapt_counters"
PROMPT_STYLE_KEY = "lightning_adapt_prompt_style"
BASE_KEY = "lightning_adapt_base"
RNG_KEY = "lightning_adapt_rng"

MODULE_CLASSES: dict[str, type] = {}
"""Module classes a `.ckpt` may name, by `module.qualname`; every `AdaptationModule` subclass registers itself (the
built-in ones when `lightning_adapt.methods`, the package of this module, is imported)."""


class TrainedModule(Protocol):
    """What the resume checks read of a module (an `AdaptationModule`): its base checkpoint folder and technique."""

    checkpoint_dir: Path
    technique: Technique | None


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def module_class_named(name: str, ckpt_path: Path) -> type:
    """The registered module class a `.ckpt` names; anything else is refused, never imported."""
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


def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A `.ckpt` (or DeepSpeed checkpoint folder, as the same dict) read as data only (`read_training_checkpoint`),
    its settings checked (`check_settings`)."""
    checkpoint = read_training_checkpoint(ckpt_path)
    check_settings(checkpoint, Path(ckpt_path))
    return checkpoint


def check_settings(checkpoint: dict[str, Any], ckpt_path: Path) -> None:
    """Refuse a `.ckpt` whose settings of a dataclass (`lora`, `optimization`, `export`) hold fields the dataclass
    does not have (an edited file, or one another version of lightning-adapt wrote)."""
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


def check_resumable(ckpt_path: Path, module: TrainedModule) -> None:
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


def check_same_method(checkpoint: dict[str, Any], module: TrainedModule, where: str) -> None:
    """Refuse to resume `module` from a checkpoint of a lightning-adapt module of another method (module class,
    technique or every weight, the technique's shapes: LoRA's rank and targets, ...), whose trainable weights and
    optimizer state would not fit."""
    settings = checkpoint.get("hyper_parameters") or {}
    saved = method_of(checkpoint[MODULE_CLASS_KEY], chosen_technique(settings.get("lora"), settings.get("technique")))
    current = method_of(class_path(type(module)), module.technique)
    if saved != current:
        raise CheckpointError(
            f"{where} was written by {saved}, but this run is {current}: its trainable weights and optimizer "
            "state do not fit. Resume with the settings of the run that wrote it (its config.yaml next to its "
            "metrics.csv), or drop --ckpt_path to start afresh."
        )


def method_of(module_class: str, technique: Technique | None) -> str:
    """A training method in words, as far as it decides which weights train: the module class, and the technique as
    `Technique.describe` says (e.g. LoRA's rank and targets) or every weight."""
    name = module_class.rsplit(".", 1)[-1]
    if technique is None:
        return f"{name} of every weight (lora: null)"
    return f"{name} with {technique.describe()}"


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


def with_optimization_section(hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """Settings of a `.ckpt` with the optimizer fields under `optimization` (checkpoints written before `Optimization`
    existed hold them at the top level)."""
    names = {field.name for field in dataclasses.fields(Optimization)}
    flat = {name: value for name, value in hyperparameters.items() if name in names}
    if not flat:
        return hyperparameters
    rest = {name: value for name, value in hyperparameters.items() if name not in names}
    return {**rest, "optimization": flat}


def load_module(ckpt_path: str | Path, checkpoint: dict[str, Any] | None = None) -> TrainedModule:
    """Rebuild the module a lightning-adapt `.ckpt` was saved from: base weights from its `checkpoint_dir` (refused if
    they changed), trained weights and counters from the file. Nothing the file names is imported or called."""
    ckpt_path = Path(ckpt_path)
    checkpoint = read_checkpoint(ckpt_path) if checkpoint is None else checkpoint
    if MODULE_CLASS_KEY not in checkpoint or "hyper_parameters" not in checkpoint:
        raise CheckpointError(f"'{ckpt_path}' was not written by a lightning-adapt module (no '{MODULE_CLASS_KEY}' entry).")
    module_class = module_class_named(checkpoint[MODULE_CLASS_KEY], ckpt_path)
    module = module_class(**with_optimization_section(checkpoint["hyper_parameters"]))
    check_base(checkpoint, module.checkpoint_dir, f"'{ckpt_path}'")
    module.model = module.unsharded_model(checkpoint["state_dict"])
    module.on_load_checkpoint(checkpoint)
    return module
