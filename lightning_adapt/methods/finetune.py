"""FineTuning: full, LoRA, QLoRA or Adapter V2 supervised fine-tuning with the loss on response tokens."""

from __future__ import annotations

from litgpt.data import DataModule as LitGPTDataModule
from litgpt.prompts import PromptStyle

from lightning_adapt.data.instructions import Instructions
from lightning_adapt.model.packed_attention import check_packable
from lightning_adapt.methods.base import AdaptationModule


class FineTuning(AdaptationModule):
    """Supervised fine-tuning of a LitGPT checkpoint: every weight (`lora=None`), or a technique's parameters only
    (LoRA adapters, Adapter V2's prompt, scales and norms).

    The loss is cross-entropy on the tokens the data module labels (the response, when the data module masks
    the prompt, as `Instructions` does by default). Works with `Instructions` and with LitGPT's own data
    modules (`litgpt.data.JSON`, `Alpaca2k`, ...). At the end of fit, `out_dir/final/` holds a LitGPT checkpoint
    (LoRA merged), the adapter alone (`lit_model.pth.lora`) and the prompt style the model was trained with.
    """

    def connect_datamodule(self, datamodule: LitGPTDataModule) -> None:
        if not isinstance(datamodule, Instructions):
            super().connect_datamodule(datamodule)
            return
        if datamodule.batching == "packed":
            check_packable(self.config)  # before any example is tokenized
        datamodule.connect(
            tokenizer=self.tokenizer,
            max_seq_length=self.max_seq_length,
            default_prompt_style=self.default_prompt_style(),
        )
        datamodule.setup()

    def export_prompt_style(self) -> PromptStyle | None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        style = getattr(datamodule, "style", None) or getattr(datamodule, "prompt_style", None)
        return style if isinstance(style, PromptStyle) else self.default_prompt_style()
