"""What a training run exports when fit ends: `ExportSettings`, the `export:` section of its config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.formats.base import ExportError, Format
from lightning_adapt.formats.registry import make_format


@dataclass
class ExportSettings:
    """What a training run writes into its out_dir when fit ends: `final/` for `litgpt` (a LitGPT checkpoint folder
    with the merged weights and, for LoRA, the adapter) and `final-<format>/` for each other format in `formats`.
    Every folder is checked before the first training step."""

    formats: list[str] = field(default_factory=lambda: ["litgpt"])
    """The formats to write: litgpt, hf (a transformers model), peft (a LoRA adapter alone) or a plugin's (gguf:
    plugins/gguf)."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each format's options by its name, e.g. `{gguf: {outtype: q8_0}}` (the fields of the format's options class)."""
    gguf_outtype: str | None = None
    """The earlier spelling of `options: {gguf: {outtype: ...}}`, still read (and ignored when formats has no gguf)."""

    def __post_init__(self) -> None:
        if not self.formats:
            raise ExportError("export: formats is empty; write export: false to export nothing.")
        if len(set(self.formats)) < len(self.formats):
            raise ExportError(f"export: formats {self.formats} names a format twice.")
        if self.gguf_outtype is not None and "gguf" in self.formats:
            gguf = self.options.get("gguf", {})
            if gguf.get("outtype", self.gguf_outtype) != self.gguf_outtype:
                raise ExportError(f"export: gguf_outtype {self.gguf_outtype!r} and options: {{gguf: {{outtype: "
                                  f"{gguf['outtype']!r}}}}} differ; write the outtype once, under options.")
            self.options = {**self.options, "gguf": {**gguf, "outtype": self.gguf_outtype}}
        self.gguf_outtype = None
        unlisted = sorted(set(self.options) - set(self.formats))
        if unlisted:
            raise ExportError(f"export: options has {', '.join(unlisted)}, which formats {self.formats} does not list.")
        self.selected()

    def selected(self) -> dict[str, Format]:
        """Each format of `formats` with its options, by name (every name and option checked)."""
        return {name: make_format(name, self.options.get(name)) for name in self.formats}


def export_settings(export: bool | ExportSettings | dict) -> ExportSettings | None:
    """A module's `export` argument as settings: True is a LitGPT `final/` alone, False nothing."""
    if isinstance(export, dict):
        return ExportSettings(**export)
    if isinstance(export, bool):
        return ExportSettings() if export else None
    return export
