"""ContinualPretraining: next-token loss on every token of packed text, learning rate re-warmed and re-decayed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from litgpt.data import DataModule as LitGPTDataModule

from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.lora import LoRA
from lightning_adapt.methods.base import AdaptationModule
from lightning_adapt.methods.checkpoints import COUNTERS_KEY


class ContinualPretraining(AdaptationModule):
    """Continue pretraining a LitGPT checkpoint on raw text: every weight (`lora=None`) or LoRA adapters (LoRA-CPT).

    The loss is next-token cross-entropy on every token of the packed blocks that `TextCorpus` (or LitGPT's
    `TextFiles` / `LitData`, whose batches are bare token tensors) provides. LitGPT's modules tokenize in
    `prepare_data`, which Lightning runs before `setup`: call `module.connect_datamodule(data)` before `fit` (as
    `litgpt pretrain` connects them itself). The learning rate is re-warmed linearly over `warmup_steps` to
    `learning_rate`, then decays along a cosine to `min_lr` (Ibrahim et al. 2024; Gupta et al. 2023).

    Forgetting is measured as it happens: val/domain_loss on the validation data and val/general_loss on
    `general_val`, before the first step and at every validation. With `TextCorpus(replay=...)`,
    train/replay_blocks counts the general-text blocks trained on; the general validation paragraphs are never
    replayed.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        lora: LoRA | dict | None = None,
        quantize: str | None = None,
        optimizer: str | dict = "AdamW",
        learning_rate: float = 1e-4,
        weight_decay: float = 0.1,
        warmup_steps: int | float = 0.01,
        min_lr: float | None = None,
        gradient_clip_val: float | None = 1.0,
        max_seq_length: int | None = None,
        general_val: str | None = "builtin:general_text.txt",
        general_val_blocks: int = 8,
        out_dir: str | Path | None = None,
        export: bool = True,
    ) -> None:
        """
        Args:
            checkpoint_dir: LitGPT checkpoint folder (lit_model.pth, model_config.yaml, tokenizer files).
            lora: LoRA settings for LoRA-CPT; None trains every weight.
            quantize: QLoRA-CPT: bitsandbytes nf4, nf4-dq, fp4, fp4-dq or int8 frozen base layers (needs `lora`).
            optimizer: a `torch.optim` class name ("AdamW"), a full class path, or {class_path, init_args}.
            learning_rate: peak learning rate, reached again at the end of the re-warm.
            weight_decay: decoupled weight decay passed to the optimizer.
            warmup_steps: linear re-warm length in optimizer steps, or a fraction (0, 1) of all steps.
            min_lr: learning rate at the last step, after cosine re-decay (default: learning_rate / 10).
            gradient_clip_val: clip the gradient norm to this value (None: no clipping).
            max_seq_length: tokens per training sequence (default: the model's context); TextCorpus packs blocks of
                this length + 1.
            general_val: general text whose loss (val/general_loss) shows forgetting, or None.
            general_val_blocks: evaluate on the first this many packed blocks of `general_val`'s paragraphs.
            out_dir: where `final/` is exported at the end of fit (default: the Trainer's `default_root_dir`).
            export: write `out_dir/final` (merged LitGPT checkpoint and adapter) when fit ends.
        """
        super().__init__(
            checkpoint_dir,
            lora=lora,
            quantize=quantize,
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            min_lr=learning_rate / 10 if min_lr is None else min_lr,
            gradient_clip_val=gradient_clip_val,
            max_seq_length=max_seq_length,
            general_val=general_val,
            general_val_blocks=general_val_blocks,
            out_dir=out_dir,
            export=export,
        )
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
