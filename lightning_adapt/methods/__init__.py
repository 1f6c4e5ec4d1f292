from lightning_adapt.methods.base import AdaptationModule, NoTargetTokensError
from lightning_adapt.methods.cpt import ContinualPretraining, Rewarming
from lightning_adapt.methods.finetune import FineTuning
from lightning_adapt.methods.optimization import Optimization

__all__ = ["AdaptationModule", "ContinualPretraining", "FineTuning", "NoTargetTokensError", "Optimization", "Rewarming"]
