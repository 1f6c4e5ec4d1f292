"""What `compare` prints while it runs: one line per phase (what ran, its budget, its last scores)."""

from __future__ import annotations

from typing import Any

from lightning_adapt.icl.keys import PREFIX, PROMPT_TOKENS, parse_icl_key
from lightning_adapt.record.runs import TRAIN_FLOPS, TRAIN_TOKENS
from lightning_adapt.verdict.run import Run


def say(message: str) -> None:
    print(f"[compare] {message}", flush=True)


def search_words(search: dict[str, Any]) -> str:
    """Which run of a search a run is: its learning rate and seed, and the search's name and size."""
    runs = len(search["learning_rates"]) * len(search["seeds"])
    return (f"learning rate {search['learning_rate']:g}, seed {search['seed']}; one of {runs} runs of the search of "
            f"{search['of']}")


def phase_line(run: Run, seconds: float) -> str:
    """One line per phase: what ran (which run of a search), its budget and its last scores."""
    scores = ", ".join(
        f"{key.removeprefix(PREFIX)} {values[max(values)]:.3f}"
        for key, values in sorted(run.metrics.items())
        if (icl := parse_icl_key(key)) and icl.k is not None and not icl.std and icl.metric != PROMPT_TOKENS
    )
    if not run.trains:
        return f"{run.method}: base model evaluated in {seconds:.1f} s — {scores}"
    search = run.info.get("search")
    name = run.method if search is None else f"{run.method} ({search_words(search)})"
    return (f"{name}: {run.last(TRAIN_TOKENS, 0):,.0f} tokens, {run.last(TRAIN_FLOPS, 0):.3g} FLOPs, "
            f"{seconds:.1f} s — last evaluation: {scores}")
