"""Adapter V2 (LLaMA-Adapter V2, Gao et al. 2023): a learned prompt attended to by the upper layers through a
zero-initialised gate, a scale and a bias on every linear layer's output, and trainable norms — as LitGPT's
`litgpt.adapter_v2` builds and trains it (`litgpt finetune_adapter_v2`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import litgpt.adapter_v2
import torch
from litgpt import GPT, Config
from litgpt.adapter_v2 import AdapterV2Linear, CausalSelfAttention, adapter_filter, mark_only_adapter_v2_as_trainable
from torch import nn

from lightning_adapt.techniques.base import AddedCompute, TechniqueError, WeightOf

ADDED = ("adapter_wte", "gating_factor", "adapter_scale", "adapter_bias")
"""The parameters Adapter V2 adds to a base model (its trainable norms are the base model's own)."""


@dataclass
class AdapterV2:
    """A learned prompt in the layers from `adapter_start_layer` on, gated from zero, plus a trainable scale and bias
    on the output of every linear layer and trainable norms; every other weight stays frozen."""

    name: ClassVar[str] = "adapter_v2"
    config_class: ClassVar[type[Config]] = litgpt.adapter_v2.Config
    adapter_file: ClassVar[str] = "lit_model.pth.adapter_v2"
    layer_class: ClassVar[type[nn.Module] | None] = AdapterV2Linear

    adapter_prompt_length: int = 10
    """Tokens in the learned prompt each adapted layer attends to."""
    adapter_start_layer: int = 2
    """The first layer (counted from 0) whose attention gets the learned prompt."""

    def __post_init__(self) -> None:
        if self.adapter_prompt_length < 1:
            raise ValueError(f"AdapterV2(adapter_prompt_length={self.adapter_prompt_length}): the prompt needs at "
                             "least 1 token.")
        if self.adapter_start_layer < 0:
            raise ValueError(f"AdapterV2(adapter_start_layer={self.adapter_start_layer}): layers count from 0.")

    @classmethod
    def from_config(cls, config: Config) -> AdapterV2 | None:
        if type(config) is not litgpt.adapter_v2.Config:
            return None
        return cls(config.adapter_prompt_length, config.adapter_start_layer)

    def config_kwargs(self) -> dict[str, object]:
        return {"adapter_prompt_length": self.adapter_prompt_length, "adapter_start_layer": self.adapter_start_layer}

    def build(self, config: Config) -> GPT:
        """LitGPT's Adapter V2 model, whose prompt keys and values are computed afresh in every forward pass."""
        model = litgpt.adapter_v2.GPT(config)
        model.register_forward_pre_hook(forget_prompt_cache)
        return model

    def is_added(self, key: str) -> bool:
        return any(name in key for name in ADDED)

    def init_added(self, model: GPT, device: torch.device, dtype: torch.dtype) -> None:
        """Each linear layer's scale at ones and bias at zeros, each gate at zero, each prompt drawn as
        `nn.Embedding` draws its weights (a unit normal), as LitGPT's fine-tuning script starts them."""

        def fresh(parameter: nn.Parameter) -> nn.Parameter:
            return nn.Parameter(torch.empty_like(parameter, device=device, dtype=dtype))

        for module in model.modules():
            prompted = isinstance(module, CausalSelfAttention) and hasattr(module, "gating_factor")
            if isinstance(module, AdapterV2Linear) and module.adapter_scale.is_meta:
                module.adapter_bias, module.adapter_scale = fresh(module.adapter_bias), fresh(module.adapter_scale)
                module.reset_parameters()
            elif prompted and module.gating_factor.is_meta:
                prompt = module.adapter_wte
                prompt.weight, module.gating_factor = fresh(prompt.weight), fresh(module.gating_factor)
                prompt.reset_parameters()
                module.reset_parameters()

    def mark_trainable(self, model: GPT) -> None:
        mark_only_adapter_v2_as_trainable(model)

    def in_adapter(self, key: str, value: Any) -> bool:
        return adapter_filter(key, value)

    def litgpt_config(self, config: Config) -> Config:
        """The Adapter V2 config itself, its `adapter_*` fields included (the model has no plain form)."""
        return config

    def litgpt_weights(self, model: GPT, weight_of: WeightOf) -> dict[str, torch.Tensor]:
        """Every weight of the model as `litgpt.adapter_v2.GPT` names them: `litgpt generate_adapter_v2` loads the
        folder as it is."""
        layers = {name: m for name, m in model.named_modules() if isinstance(m, AdapterV2Linear)}
        inside = tuple(f"{name}.linear." for name in layers)
        state = {key: value.detach().cpu() for key, value in model.state_dict().items() if not key.startswith(inside)}
        dtype = model.transformer.wte.weight.dtype
        for name, layer in layers.items():
            state[f"{name}.linear.weight"] = weight_of(layer.linear).to(dtype).cpu()
            if layer.linear.bias is not None:
                state[f"{name}.linear.bias"] = layer.linear.bias.detach().cpu()
        return state

    def check_format(self, format: str) -> None:
        """Only `litgpt`: the model has no plain form, and PEFT has no Adapter V2 adapter."""
        if format != "litgpt":
            raise TechniqueError(
                f"An Adapter V2 model cannot be written in the {format} format: its learned prompt and gates add "
                "attention a plain transformer does not have, so (unlike LoRA) it does not merge into base weights, "
                "and neither LitGPT nor PEFT converts it. Export the litgpt format (final/, which `litgpt "
                "generate_adapter_v2` and lightning-adapt load), or train with lora for hf, peft or gguf."
            )

    def added_compute(self, config: Config) -> AddedCompute:
        """The prompt's query-key-value projection in each adapted layer (once per sequence) and every query token's
        attention to the prompt's keys and values; the scales, biases and gates are element-wise. The first block's
        norm trains, so every frozen matrix passes an activation gradient back; the prompt's projection passes one to
        the prompt (1x its forward) and the attention computes gradients of queries, keys and values (2x)."""
        layers = max(0, config.n_layer - self.adapter_start_layer)
        qkv_size = (config.n_head + 2 * config.n_query_groups) * config.head_size
        prompt_qkv = layers * 2.0 * self.adapter_prompt_length * config.n_embd * qkv_size
        attention = layers * 4.0 * config.n_head * config.head_size * self.adapter_prompt_length
        return AddedCompute(block_inputs_need_grad=True, sequence_forward=prompt_qkv, token_forward=attention,
                            sequence_backward=prompt_qkv, token_backward=2 * attention)

    def describe(self) -> str:
        return (f"Adapter V2 (a {self.adapter_prompt_length}-token prompt from layer {self.adapter_start_layer}, "
                "scales, biases and norms)")


def forget_prompt_cache(model: nn.Module, args: Any) -> None:
    """LitGPT's adapter attention keeps the prompt's keys and values after the first forward pass, training or not
    (Lightning-AI/litgpt#1287): the next training step would backpropagate through a freed graph, or, after a pass
    without gradients (a validation), never train the prompt again. Every forward pass computes them afresh."""
    for module in model.modules():
        if isinstance(module, CausalSelfAttention) and hasattr(module, "adapter_kv_cache"):
            module.adapter_kv_cache = None
