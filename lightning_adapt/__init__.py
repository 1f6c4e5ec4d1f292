"""lightning-adapt: in-context learning, fine-tuning and continual pretraining of LitGPT models on one timeline."""

from lightning_adapt.data.instructions import Instructions
from lightning_adapt.data.records import DataError
from lightning_adapt.export import export_checkpoint
from lightning_adapt.lora import LoRA
from lightning_adapt.methods import AdaptationModule, FineTuning, NoTargetTokensError
from lightning_adapt.model import CheckpointError

__all__ = [
    "AdaptationModule",
    "CheckpointError",
    "DataError",
    "FineTuning",
    "Instructions",
    "LoRA",
    "NoTargetTokensError",
    "export_checkpoint",
]
