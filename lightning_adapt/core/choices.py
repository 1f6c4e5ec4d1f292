"""Settings that take one of a few strings.

Such a setting is declared `str` and checked here, not declared as a `Literal`: jsonargparse (4.41) answers a value
outside a `Literal` with "Cannot take a Union of no types", which names neither the setting nor the choices.
"""

from __future__ import annotations

from typing import Any, get_args


def check_choice(owner: str, name: str, value: Any, choices: Any) -> None:
    """Refuse `value` of setting `name` of `owner` unless it is one of `choices` (a tuple, or a `Literal` type)."""
    allowed = get_args(choices) or tuple(choices)
    if value not in allowed:
        raise ValueError(f"{owner}({name}={value!r}): choose one of {', '.join(map(str, allowed))}.")
