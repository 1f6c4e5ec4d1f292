"""Quantities as people read them: bytes in B, kB, MB or GB (the estimate's table, the report, refusals)."""

from __future__ import annotations


def format_bytes(value: float | None) -> str:
    """Bytes in B, kB, MB or GB (decimal), "n/a" for None."""
    if value is None:
        return "n/a"
    size, unit = next(((size, unit) for size, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")) if value >= size), (1, "B"))
    return f"{value / size:.1f} {unit}"
