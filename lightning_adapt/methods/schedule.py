"""Learning-rate schedule: linear warmup (or re-warm) to the peak, then cosine decay to a floor."""

from __future__ import annotations

import math


def warmup_steps_for(warmup: int | float, total_steps: int) -> int:
    """`warmup` as a step count: an int is taken as is, a float in (0, 1) as a fraction of `total_steps`."""
    if isinstance(warmup, float) and 0.0 < warmup < 1.0:
        return max(1, round(warmup * total_steps))
    if warmup < 0 or (isinstance(warmup, float) and not warmup.is_integer()):
        raise ValueError(f"warmup_steps={warmup}: give a whole number of steps or a fraction in (0, 1).")
    return int(warmup)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based).

    Rises linearly from 1/warmup_steps to 1 over `warmup_steps` steps, then follows a half cosine from 1 down to
    `min_lr_ratio`, which it reaches at the last step (`total_steps - 1`).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
