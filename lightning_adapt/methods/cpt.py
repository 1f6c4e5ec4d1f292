"""ContinualPretraining: next-token loss on every token of packed text, learning rate re-warmed and re-decayed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from litgpt.data import DataModule as LitGPTDataModule

from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.methods.base import AdaptationModule
from lightning_adapt.methods.checkpoints import COUNTERS_KEY
from lightning_adapt.methods.optimization import Optimization


GENERAL_TEXT = "builtin:general_text.txt"
"""The built-in general text whose held-out loss shows forgetting."""


@dataclass(frozen=True)
class Rewarming(Optimization):
    """Continual pretraining's defaults: a short re-warm to a lower peak learning rate, a cosine re-decay to a tenth
    of it, and weight decay (Ibrahim et al. 2024; Gupta et al. 2023)."""

    learning_rate: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int | float = 0.01
    min_lr: float | None = None


class ContinualPretraining(AdaptationModule):
    """Continue pretraining a LitGPT checkpoint on raw text: every weight (`lora=None`) or a technique's parameters
    (LoRA-CPT, Adapter V2).

    The loss is next-token cross-entropy on every token of the packed blocks that `TextCorpus` (or LitGPT's
    `TextFiles` / `LitData`, whose batches are bare token tensors) provides. LitGPT's modules tokenize in
    `prepare_data`, which Lightning runs before `setup`: call `module.connect_datamodule(data)` before `fit` (as
    `litgpt pretrain` connects them itself). The learning rate is re-warmed and re-decayed (`Rewarming`).

    Forgetting is measured as it happens: val/domain_loss on the validation data and val/general_loss on
    `general_val`, before the first step and at every validation. With `TextCorpus(replay=...)`,
    train/replay_blocks counts the general-text blocks trained on; the general validation paragraphs are never
    replayed.
    """

    def __init__(
        self,
        *args: Any,
        optimization: Optimization = Rewarming(),
        general_val: str | None = GENERAL_TEXT,
        **settings: Any,
    ) -> None:
        """The settings of `AdaptationModule`; only these defaults differ.

        Args:
            optimization: the optimizer and the re-warmed, re-decayed learning-rate schedule.
            general_val: general text whose loss (val/general_loss) shows forgetting, or None.
        """
        super().__init__(*args, optimization=optimization, general_val=general_val, **settings)
        self.replay_blocks = 0

    def connect_datamodule(self, datamodule: LitGPTDataModule) -> None:
        if not isinstance(datamodule, TextCorpus):
            super().connect_datamodule(datamodule)
            return
        datamodule.connect(self.tokenizer, datamodule.batch_size, self.max_seq_length, exclude=self.general_exclude)
        datamodule.setup()

    def training_step(self, batch: dict[str, Any] | torch.Tensor, batch_idx: int) -> torch.Tensor:
        batch = token_batch(batch)
        loss = super().training_step(batch, batch_idx)
        if "replay" in batch:
            self.replay_blocks += int(self.sum_over_processes(batch["replay"].sum()))
            self.log("train/replay_blocks", float(self.replay_blocks), on_step=True, on_epoch=False, reduce_fx="max")
        return loss

    def validation_step(self, batch: dict[str, Any] | torch.Tensor, batch_idx: int) -> None:
        super().validation_step(token_batch(batch), batch_idx)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[COUNTERS_KEY]["replay_blocks"] = self.replay_blocks

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.replay_blocks = checkpoint.get(COUNTERS_KEY, {}).get("replay_blocks", 0)


def token_batch(batch: dict[str, Any] | torch.Tensor) -> dict[str, Any]:
    """LitGPT's pretraining data modules yield bare (batch, length + 1) token tensors: every token is a target."""
    if isinstance(batch, torch.Tensor):
        return {"input_ids": batch.long(), "labels": batch.long()}
    return batch
