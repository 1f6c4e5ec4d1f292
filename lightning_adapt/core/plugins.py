"""Optional extensions found through the `lightning_adapt.core.plugins` entry-point group (e.g. plugins/gguf)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

GROUP = "lightning_adapt.plugins"
PLUGIN_HINTS = {
    "gguf": "pip install ./plugins/gguf",
    "smollm2-135m-instruct": "pip install ./plugins/gguf",
    "lm-eval": "pip install ./plugins/lm_eval",
    "lm-eval-task": "pip install ./plugins/lm_eval (lm-evaluation-harness tasks need lm-eval)",
}
DOWNLOADABLE = {Path("HuggingFaceTB", "SmolLM2-135M-Instruct"): "smollm2-135m-instruct"}
"""Checkpoint folders (as LitGPT names them under `checkpoints/`) that a plugin can make offline."""


def plugin(name: str) -> Callable:
    """The callable registered as `name`, or an error saying which package to install."""
    for entry in entry_points(group=GROUP):
        if entry.name == name:
            return entry.load()
    hint = PLUGIN_HINTS.get(name, f"install a package that registers '{name}' in the '{GROUP}' entry-point group")
    raise ModuleNotFoundError(f"No lightning-adapt plugin provides '{name}': {hint}.")


def download_name(checkpoint_dir: Path) -> tuple[str, Path] | None:
    """(plugin name, checkpoints root) when `checkpoint_dir` is a folder a plugin can make, else None."""
    for subdir, name in DOWNLOADABLE.items():
        if checkpoint_dir.parts[-len(subdir.parts) :] == subdir.parts:
            return name, checkpoint_dir.parents[len(subdir.parts) - 1]
    return None


def download(name: str, checkpoints_root: str | Path = "checkpoints") -> Path:
    """Make the checkpoint folder of model `name` under `checkpoints_root` (a no-op when it exists).

    Args:
        name: Model name, e.g. smollm2-135m-instruct.
        checkpoints_root: Where checkpoints live.
    """
    return Path(plugin(name)(checkpoints_root))


def convert(format: str, path: str | Path, *, out: str | Path) -> Path:
    """Convert a checkpoint of another format into a LitGPT checkpoint folder, with the plugin providing `format`.

    Args:
        format: Source format; a plugin must provide it (gguf: plugins/gguf).
        path: The file to convert.
        out: The LitGPT checkpoint folder to write.
    """
    return Path(plugin(format)(path, out))
