"""lightning-adapt as an lm-evaluation-harness model: importing this package registers `lightning-adapt`
in lm-eval's model registry (`lm_eval --model lightning-adapt` needs that import: `lightning-adapt-lm-eval`)."""

from lightning_adapt_lm_eval.model import LightningAdaptLM

__all__ = ["LightningAdaptLM"]
