"""The interface of an adaptation technique: everything that changes when a run trains LoRA adapters instead of
Adapter V2's prompts and scales, in one place.

A technique is a settings dataclass (what a YAML's `lora:` or `technique:` fills) that also knows the LitGPT model
its settings describe: the config and model classes it builds, the parameters it adds to a base checkpoint and how
they start, which parameters train and which are saved as "the adapter", how the trained model is written as a LitGPT
checkpoint and whether it can become plain base weights (the formats it supports follow), whether its frozen base can
be quantized, and the FLOPs it adds. The modules, loaders, exports and the run record ask the technique (found by
`lightning_adapt.techniques.technique_of` from a model config); none of them asks which technique it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol

import torch
from litgpt import GPT, Config
from torch import nn

WeightOf = Callable[[nn.Module], torch.Tensor]
"""The full-precision weight of a frozen base linear layer (dequantized where quantization replaced it)."""


class TechniqueError(ValueError):
    """A setting a technique cannot honour (an export format, quantization); the message names it and the way out."""


@dataclass(frozen=True)
class AddedCompute:
    """The FLOPs a technique adds to its base model, and what its trainable weights make the backward pass compute,
    counted as `lightning_adapt.record.flops` counts (2 FLOPs per multiply-accumulate, element-wise work left out)."""

    qkv: float = 0.0
    """Forward FLOPs per token of the adapter on each block's query-key-value matrix."""
    proj: float = 0.0
    """Forward FLOPs per token of the adapter on each block's attention output projection."""
    mlp_in: float = 0.0
    """Forward FLOPs per token of the adapter on each of a block's MLP input matrices."""
    mlp_out: float = 0.0
    """Forward FLOPs per token of the adapter on each block's MLP output matrix."""
    head: float = 0.0
    """Forward FLOPs per token of the adapter on the LM head."""
    block_inputs_need_grad: bool = False
    """Whether a weight before the first block's first matrix trains (e.g. its norm), so that every frozen weight
    matrix passes an activation gradient back, from the first block on."""
    sequence_forward: float = 0.0
    """Forward FLOPs per sequence besides the weight matrices and their adapters, all layers together."""
    token_forward: float = 0.0
    """Forward FLOPs per token besides the weight matrices and their adapters, all layers together."""
    sequence_backward: float = 0.0
    """Backward FLOPs per sequence of that extra compute."""
    token_backward: float = 0.0
    """Backward FLOPs per token of that extra compute."""


class Technique(Protocol):
    """An adaptation technique: its settings (the dataclass fields a YAML fills) and what depends on them."""

    name: ClassVar[str]
    """Its name in run names, `.ckpt` settings (`technique: {NAME: {...}}`), messages and the registry."""
    config_class: ClassVar[type[Config]]
    """LitGPT's config class of the technique's model (e.g. `litgpt.lora.Config`)."""
    adapter_file: ClassVar[str]
    """The file of a LitGPT export that holds the adapter alone, named as LitGPT's own finetune script names it."""
    layer_class: ClassVar[type[nn.Module] | None]
    """The technique's layer that holds a frozen base `nn.Linear` as `.linear`, the layer quantization replaces
    (QLoRA); None where the technique's model cannot be quantized."""

    @classmethod
    def from_config(cls, config: Config) -> Technique | None:
        """The settings a model config of this technique holds; None when `config` is not one (or adapts nothing)."""
        ...

    def config_kwargs(self) -> dict[str, object]:
        """The fields of `config_class` these settings set (also written to an export's `hyperparameters.yaml`)."""
        ...

    def build(self, config: Config) -> GPT:
        """An uninitialised model of `config` (a `config_class`) with the technique's layers."""
        ...

    def is_added(self, key: str) -> bool:
        """Whether the state-dict `key` names a parameter the technique adds to the base model (so absent from a base
        checkpoint's weights, and given its starting value by `init_added`)."""
        ...

    def init_added(self, model: GPT, device: torch.device, dtype: torch.dtype) -> None:
        """Give the parameters the technique added to `model` that no weights filled (still on the meta device) their
        starting values on `device`, in module order from the global RNG (so they start alike however the model is
        placed or sharded)."""
        ...

    def mark_trainable(self, model: GPT) -> None:
        """Let exactly the technique's trainable parameters require gradients."""
        ...

    def in_adapter(self, key: str, value: Any) -> bool:
        """Whether the state-dict entry belongs to the adapter alone (what `adapter_file` holds), as LitGPT's filter
        of the technique says."""
        ...

    def litgpt_config(self, config: Config) -> Config:
        """The `model_config.yaml` of a LitGPT checkpoint folder holding the trained model of `config`."""
        ...

    def litgpt_weights(self, model: GPT, weight_of: WeightOf) -> dict[str, torch.Tensor]:
        """The `lit_model.pth` of a LitGPT checkpoint folder holding the trained `model`, in full precision
        (`weight_of` gives a base layer's weight, dequantized where it is quantized). Plain weights (a plain `GPT` of
        `litgpt_config` loads them) exactly when `check_format` accepts the formats of plain models (hf, gguf)."""
        ...

    def check_format(self, format: str) -> None:
        """Refuse, with a `TechniqueError` naming the format and the way out, an export format (`litgpt`, `hf`,
        `peft`, `gguf`) the technique's model cannot be written in."""
        ...

    def added_compute(self, config: Config) -> AddedCompute:
        """The FLOPs the technique adds to the base model of `config`, and what it makes the backward pass compute."""
        ...

    def describe(self) -> str:
        """The technique in words, as far as it decides which weights train and their shapes (a `.ckpt` resumes only
        under the same description)."""
        ...


def base_config(config: Config) -> Config:
    """`config` without a technique's fields: the plain LitGPT config of its base model."""
    names = {f.name for f in fields(Config)}
    return Config(**{key: value for key, value in asdict(config).items() if key in names})


def technique_fields(config_class: type[Config]) -> set[str]:
    """The fields `config_class` adds to LitGPT's plain `Config`."""
    return {f.name for f in fields(config_class)} - {f.name for f in fields(Config)}
