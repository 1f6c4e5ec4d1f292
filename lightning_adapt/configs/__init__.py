"""The configs shipped with the package, named from any folder as `builtin:COMMAND/NAME.yaml` (as the shipped data
files are `builtin:sentiment/train.jsonl`): `lightning-adapt finetune --config builtin:finetune/lora.yaml`."""

from __future__ import annotations

from pathlib import Path

from lightning_adapt.data.records import BUILTIN_PREFIX

CONFIGS_DIR = Path(__file__).parent
"""The folder of the shipped YAML files, one subfolder per command (`configs/` in the repository)."""


def builtin_config_names() -> list[str]:
    """Every shipped config as `--config` names it: `builtin:finetune/lora.yaml`, ..."""
    return [f"{BUILTIN_PREFIX}{path.relative_to(CONFIGS_DIR).as_posix()}" for path in sorted(CONFIGS_DIR.rglob("*.yaml"))]


def builtin_config(name: str) -> Path:
    """The file of the shipped config `name` (`builtin:COMMAND/NAME.yaml`), or an error listing the shipped ones."""
    path = CONFIGS_DIR / name.removeprefix(BUILTIN_PREFIX)
    if not path.is_file() or path.suffix != ".yaml":
        raise FileNotFoundError(
            f"--config {name}: no such shipped config. The shipped configs are {', '.join(builtin_config_names())}; "
            "any other --config is a path to your own YAML."
        )
    return path


def resolve_config_args(args: list[str]) -> list[str]:
    """`args` with each `--config builtin:...` (or `--config=builtin:...`) replaced by the shipped file's path, so every
    parser reads it from any folder; every other argument as it is."""
    resolved = list(args)
    for index, arg in enumerate(args):
        if arg.startswith(f"--config={BUILTIN_PREFIX}"):
            resolved[index] = f"--config={builtin_config(arg.split('=', 1)[1])}"
        elif arg.startswith(BUILTIN_PREFIX) and index > 0 and args[index - 1] in ("--config", "-c"):
            resolved[index] = str(builtin_config(arg))
    return resolved
