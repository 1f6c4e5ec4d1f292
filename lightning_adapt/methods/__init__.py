from lightning_adapt.methods.base import AdaptationModule, NoTargetTokensError
from lightning_adapt.methods.cpt import ContinualPretraining
from lightning_adapt.methods.finetune import FineTuning

__all__ = ["AdaptationModule", "ContinualPretraining", "FineTuning", "NoTargetTokensError"]
