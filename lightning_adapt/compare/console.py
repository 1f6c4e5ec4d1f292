"""What `compare` prints while it runs: one line per phase (what ran, its budget, its last scores)."""

from __future__ import annotations

from lightning_adapt.icl.keys import PROMPT_TOKENS, parse_icl_key
from lightning_adapt.record.runs import TRAIN_FLOPS, TRAIN_TOKENS
from lightning_adapt.verdict.run import Run


def say(message: str) -> None:
    print(f"[compare] {message}", flush=True)


def phase_line(run: Run, seconds: float) -> str:
    """One line per phase: what ran, its budget and its last scores."""
    scores = ", ".join(
        f"{icl.task}/{icl.metric}@k{icl.k} {values[max(values)]:.3f}"
        for key, values in sorted(run.metrics.items())
        if (icl := parse_icl_key(key)) and icl.k is not None and not icl.std and icl.metric != PROMPT_TOKENS
    )
    if not run.trains:
        return f"{run.method}: base model evaluated in {seconds:.1f} s — {scores}"
    return (f"{run.method}: {run.last(TRAIN_TOKENS, 0):,.0f} tokens, {run.last(TRAIN_FLOPS, 0):.3g} FLOPs, "
            f"{seconds:.1f} s — last evaluation: {scores}")
