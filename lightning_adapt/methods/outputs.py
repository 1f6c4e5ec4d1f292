"""How to try a trained model: the commands a training command prints at its end, beside where its outputs are (bash
command lines)."""

from __future__ import annotations

import shlex
from pathlib import Path

from lightning_adapt.techniques import AdapterV2, Technique

PLACEHOLDER = "Your prompt"
"""The prompt of a suggested command when the run knows no prompt of its own."""


def try_commands(final: str | Path, technique: Technique | None = None, prompt: str = PLACEHOLDER) -> list[str]:
    """The `litgpt` commands that generate from a LitGPT checkpoint folder (a run's `final/`, adapted by `technique`)
    with `prompt`, and chat with it: LitGPT's own, which apply the prompt style saved beside the weights (the one the
    run trained with). Adapter V2's folder is read by `generate_adapter_v2`, which has no chat."""
    final = Path(final)
    if isinstance(technique, AdapterV2):
        adapter = shlex.quote(str(final / AdapterV2.adapter_file))
        return [f"litgpt generate_adapter_v2 {shlex.quote(str(final))} --adapter_path {adapter} --prompt "
                f"{shell_quoted(prompt)}"]
    return [f"litgpt generate {shlex.quote(str(final))} --prompt {shell_quoted(prompt)}",
            f"litgpt chat {shlex.quote(str(final))}"]


def shell_quoted(text: str) -> str:
    """`text` as one bash word on one line: shlex's quoting, or bash's $'...' when it holds line breaks or tabs."""
    if "\n" not in text and "\t" not in text:
        return shlex.quote(text)
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t")
    return f"$'{escaped}'"
