"""Every export format by name: the built-in ones and those plugins register in the `lightning_adapt.formats`
entry-point group (`gguf = "lightning_adapt_gguf.export:GGUFFormat"` in plugins/gguf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from lightning_adapt.formats.base import ExportError, Format
from lightning_adapt.formats.hf import HFFormat
from lightning_adapt.formats.litgpt import LitGPTFormat
from lightning_adapt.formats.peft import PEFTFormat

FORMATS_GROUP = "lightning_adapt.formats"
"""The entry-point group where a plugin registers a `Format` subclass under its name."""
BUILTIN_FORMATS: dict[str, type[Format]] = {format.name: format for format in (LitGPTFormat, HFFormat, PEFTFormat)}
PLUGIN_FORMATS = {"gguf": "pip install ./plugins/gguf (GGUF export writes with gguf-py)"}
"""Formats of lightning-adapt's own plugins, known by name even when not installed, and how to install them."""


def plugin_entries() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=FORMATS_GROUP)}


def format_names() -> list[str]:
    """The names of every format: the built-in ones, our plugins' (installed or not), then other installed plugins'."""
    names = [*BUILTIN_FORMATS, *PLUGIN_FORMATS]
    return names + sorted(set(plugin_entries()) - set(names))


def format_class(name: str) -> type[Format]:
    """The `Format` called `name`; an error listing the known names, or saying how to install its plugin."""
    if name in BUILTIN_FORMATS:
        return BUILTIN_FORMATS[name]
    entry = plugin_entries().get(name)
    if entry is None:
        if name in PLUGIN_FORMATS:
            raise ModuleNotFoundError(f"Format '{name}' comes from a plugin that is not installed: {PLUGIN_FORMATS[name]}.")
        raise ExportError(f"Unknown export format '{name}'. Choose one of: {', '.join(format_names())}.")
    format = entry.load()
    if not (isinstance(format, type) and issubclass(format, Format)) or format.name != name:
        raise ExportError(f"The '{name}' entry point of the {FORMATS_GROUP} group ({entry.value}) is not a "
                          f"lightning_adapt.formats.base.Format subclass named '{name}'.")
    return format


def make_format(name: str, options: Mapping[str, Any] | None = None) -> Format:
    """The format called `name` with `options` (the fields of its `options_class`), each checked."""
    format = format_class(name)
    options = dict(options or {})
    known = [field.name for field in fields(format.options_class)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ExportError(f"Format {name} has no option {', '.join(unknown)} (its options: {', '.join(known) or 'none'}).")
    return format(format.options_class(**options))


def folder_format(path: Path) -> Format | None:
    """The format of a folder one of them `holds` (reads back), built-in formats first; None for any other folder."""
    for name in [*BUILTIN_FORMATS, *plugin_entries()]:
        format = format_class(name)()
        if format.holds(path):
            return format
    return None
