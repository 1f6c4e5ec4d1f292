"""Adaptation techniques by name: what a technique adds to a LitGPT model, how it trains, exports and costs.

`TECHNIQUES` maps a name to its settings class; the rest of the package asks `technique_of(config)` (or resolves a
module's `lora`/`technique` arguments with `chosen_technique`) instead of testing for a class. To add a technique:
write a settings dataclass implementing `Technique` (techniques/base.py) in techniques/NAME.py, list it in
`TECHNIQUES` below, export it from `lightning_adapt/__init__.py`, and give a config under configs/ and tests.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from litgpt import Config

from lightning_adapt.techniques.adapter_v2 import AdapterV2
from lightning_adapt.techniques.base import Technique, TechniqueError, technique_fields
from lightning_adapt.techniques.lora import LoRA

TECHNIQUES: dict[str, type[Technique]] = {technique.name: technique for technique in (LoRA, AdapterV2)}
"""Every technique, by name (the key of its settings in a `.ckpt`: `technique: {NAME: {...}}`)."""


def technique_named(name: str) -> type[Technique]:
    """The technique called `name`, with the known names when there is none."""
    if name not in TECHNIQUES:
        raise ValueError(f"Unknown adaptation technique '{name}'. Choose one of: {', '.join(TECHNIQUES)}.")
    return TECHNIQUES[name]


def technique_of(config: Config) -> Technique | None:
    """The technique (with its settings) whose model `config` describes; None for a plain model."""
    for technique in TECHNIQUES.values():
        found = technique.from_config(config)
        if found is not None:
            return found
    return None


def config_class_for(fields: dict[str, Any]) -> type[Config]:
    """The config class of a `model_config.yaml` holding `fields`: the technique config whose own fields it sets
    (an exported Adapter V2 model keeps them), else LitGPT's plain `Config`."""
    for technique in TECHNIQUES.values():
        if technique_fields(technique.config_class) & set(fields):
            return technique.config_class
    return Config


def technique_from_settings(settings: dict[str, dict[str, Any]]) -> Technique:
    """The technique `{NAME: {field: value}}` describes (the form `technique_arguments` writes)."""
    if len(settings) != 1:
        raise ValueError(
            f"technique={settings}: name one technique and its settings, e.g. {{adapter_v2: {{}}}} "
            f"(techniques: {', '.join(TECHNIQUES)})."
        )
    [(name, fields)] = settings.items()
    technique = technique_named(name)
    try:
        return technique(**(fields or {}))
    except TypeError as error:
        raise ValueError(f"technique {name}: {error}. Its settings are the fields of {technique.__name__}.") from error


def technique_arguments(technique: Technique | None) -> dict[str, Any]:
    """The module arguments `lora` and `technique` that choose `technique`, as plain data for a `.ckpt`: LoRA under
    `lora` (as every `.ckpt` before other techniques holds it), any other under `technique: {NAME: {...}}`."""
    if isinstance(technique, LoRA):
        return {"lora": asdict(technique), "technique": None}
    return {"lora": None, "technique": None if technique is None else {technique.name: asdict(technique)}}


def chosen_technique(lora: LoRA | dict | None, technique: Technique | dict | None) -> Technique | None:
    """The technique a module's `lora` and `technique` arguments choose (settings dicts as a `.ckpt` holds them);
    None for every weight. Naming both is refused."""
    if lora is not None and technique is not None:
        raise ValueError(
            f"lora={lora} and technique={technique} both choose a technique: give one of them (lora: {{...}} is "
            "short for a LoRA technique), or neither to train every weight."
        )
    if isinstance(lora, dict):
        return LoRA(**lora)
    if isinstance(technique, dict):
        return technique_from_settings(technique)
    return lora if lora is not None else technique
