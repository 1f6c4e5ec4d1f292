"""How the weights are updated: the optimizer, its learning-rate schedule (linear warmup to the peak, cosine decay
to a floor) and gradient clipping, declared once for every training method and for `compare`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn


class WarmupWarning(UserWarning):
    """The warmup lasts as long as the run or longer: the learning rate never reaches its peak, nor decays."""


@dataclass(frozen=True)
class Optimization:
    """The optimizer, the learning-rate schedule (linear warmup to `learning_rate`, then a cosine to `min_lr` at the
    last step) and gradient clipping."""

    optimizer: str | dict = "AdamW"
    """A `torch.optim` class name ("AdamW"), a full class path, or {class_path, init_args}."""
    learning_rate: float = 3e-4
    """Peak learning rate, reached at the end of warmup."""
    weight_decay: float = 0.0
    """Decoupled weight decay passed to the optimizer."""
    warmup_steps: int | float = 10
    """Linear warmup length in optimizer steps, or a fraction (0, 1) of all steps."""
    min_lr: float | None = 0.0
    """Learning rate at the last step, after cosine decay (null: a tenth of learning_rate)."""
    gradient_clip_val: float | None = 1.0
    """Clip the gradient norm to this value (null: no clipping); the Trainer's own `gradient_clip_val`, when set,
    takes precedence."""

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate} must be positive (it is the peak of the schedule).")
        if not 0.0 <= self.final_lr <= self.learning_rate:
            raise ValueError(f"min_lr={self.min_lr} must lie between 0 and learning_rate={self.learning_rate}.")

    @property
    def final_lr(self) -> float:
        """The learning rate at the last step: `min_lr`, or a tenth of `learning_rate` when that is None."""
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def configure(self, parameters: Iterable[torch.nn.Parameter], total_steps: int) -> dict[str, Any]:
        """The optimizer of `parameters` and its per-step schedule over `total_steps`, as
        `LightningModule.configure_optimizers` returns them."""
        from litgpt.utils import instantiate_torch_optimizer

        optimizer = instantiate_torch_optimizer(
            self.optimizer, list(parameters), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        warmup = warmup_steps_for(self.warmup_steps, total_steps)
        if warmup >= total_steps:
            rank_zero_warn(
                f"warmup_steps={self.warmup_steps} is as long as the run's {total_steps} optimizer step(s) or longer: "
                f"the learning rate only ramps up (to {warmup_cosine_factor(total_steps - 1, warmup, total_steps, 0):.2g}"
                f" x learning_rate at the last step), never reaching learning_rate={self.learning_rate:g} nor "
                "decaying. Give fewer warmup steps than max_steps, or a fraction such as warmup_steps: 0.1.",
                category=WarmupWarning,
            )
        min_ratio = self.final_lr / self.learning_rate

        def factor(step: int) -> float:
            return warmup_cosine_factor(step, warmup, total_steps, min_ratio)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


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
