"""What every export format is: a `Format` checks a model before any weight is read, writes it into a folder, and
reads such a folder back where it can; `write_format` writes one folder whole or not at all.

A format sees a model as a `ModelInfo` (known before any weight is read) and a `Weights` (read only when written).
The formats are listed by `lightning_adapt.formats.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from litgpt import Config
from litgpt.prompts import PromptStyle

from lightning_adapt.core.atomic import atomic_directory
from lightning_adapt.techniques import Technique, technique_of


class ExportError(ValueError):
    """A model, run or setting that cannot be exported as asked; the message names the field and the way out."""


@dataclass(frozen=True)
class ModelInfo:
    """A model as a format needs to know it before reading any weight."""

    config: Config
    """Its LitGPT config: a technique's config (e.g. `litgpt.lora.Config`) when it carries an adapter."""
    tokenizer_dir: Path
    """The folder holding its tokenizer and generation files."""
    base_dir: Path
    """The base checkpoint folder its adapter applies to (the model's own folder without an adapter)."""
    prompt_style: PromptStyle | None = None
    """The prompt style it was trained with, where known."""

    @property
    def technique(self) -> Technique | None:
        """How the model was adapted: its technique's settings, None when every weight trained."""
        return technique_of(self.config)


class Weights(Protocol):
    """A model's weights, read only when a format writes them."""

    def merged(self) -> dict[str, torch.Tensor]:
        """The weights of the model's `lit_model.pth`: every weight with a LoRA update merged in, under plain LitGPT
        names; a technique's model that has no plain form (Adapter V2, which formats of plain models refuse in
        `Format.check`) whole, under its own names (`Technique.litgpt_weights`)."""

    def adapter(self) -> dict[str, torch.Tensor]:
        """The adapter alone (e.g. the LoRA matrices), under LitGPT's names."""


@dataclass(frozen=True)
class NoOptions:
    """The options of a format that has none."""


class Format(ABC):
    """One export format. A subclass names itself, its options class, and whether it holds the adapter alone;
    `check` refuses a model it cannot hold before any weight is read, `write` fills a folder, and a format that can
    be read back recognises its folders (`holds`) and `read`s them."""

    name: ClassVar[str]
    """What `export: formats` and `--format` call it."""
    kind: ClassVar[str]
    """What the marker of a folder it wrote calls it (`atomic_directory`)."""
    description: ClassVar[str]
    """What a folder of this format holds, in a few words."""
    options_class: ClassVar[type] = NoOptions
    """The dataclass of its options (`export: options: {NAME: {...}}`)."""
    adapter_only: ClassVar[bool] = False
    """Whether it holds a LoRA adapter alone, so it needs a model that has one."""

    def __init__(self, options: Any = None) -> None:
        self.options = self.options_class() if options is None else options

    def folder_name(self) -> str:
        """The folder a run writes it into when fit ends."""
        return f"final-{self.name}"

    def check(self, model: ModelInfo) -> None:
        """Refuse, before any weight is read, a model this format cannot hold (with the way out). A subclass adds its
        own refusals after this one's."""
        self.check_technique(model.technique)

    @classmethod
    def check_technique(cls, technique: Technique | None) -> None:
        """Refuse a model adapted by `technique` (None: every weight trained) that this format cannot hold, before
        the model exists (a run's settings are enough)."""
        if technique is not None:
            technique.check_format(cls.name)
        if cls.adapter_only and technique is None:
            raise ExportError(
                f"{cls.name} writes a LoRA adapter alone, and this model has no LoRA adapter (a run with lora: None "
                "trains every weight; a LoRA run's .ckpt and final/ folder hold its adapter). Export the whole model, "
                "e.g. as hf, instead."
            )

    @abstractmethod
    def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
        """Fill the empty `folder` with `model` (checked by `check`)."""

    def holds(self, path: Path) -> bool:
        """Whether `path` is a folder of this format that `read` reads (never, for a format that cannot be read)."""
        return False

    def read(self, path: Path) -> tuple[ModelInfo, Weights]:
        """The model of a folder this format wrote, its weights read only when asked for."""
        raise ExportError(f"Format {self.name} cannot be read back; export from the run's .ckpt or final/ folder.")


def write_format(format: Format, model: ModelInfo, weights: Weights, out_dir: str | Path, inputs: Iterable[str | Path],
                 overwrite: bool, overwrite_hint: str = "overwrite=True") -> Path:
    """Write `out_dir` in `format`, whole or not at all, under the rules of `atomic_directory`: never over one of
    `inputs` or something lightning-adapt did not write; an earlier export of the same format only with `overwrite`."""
    with atomic_directory(out_dir, format.kind, inputs, overwrite, overwrite_hint) as staging:
        format.write(model, weights, staging)
    return Path(out_dir)
