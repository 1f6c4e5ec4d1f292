"""LoRA: low-rank adapters on chosen linear layers, as LitGPT's `litgpt.lora` builds, trains and merges them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import litgpt.lora
import torch
from litgpt import GPT, Config
from litgpt.lora import LoRALinear, lora_filter, mark_only_lora_as_trainable
from torch import nn

from lightning_adapt.techniques.base import AddedCompute, WeightOf, base_config

LORA_TARGETS = ("query", "key", "value", "projection", "mlp", "head")


@dataclass
class LoRA:
    """Low-rank adapters on the chosen linear layers; every other weight stays frozen."""

    name: ClassVar[str] = "lora"
    config_class: ClassVar[type[Config]] = litgpt.lora.Config
    adapter_file: ClassVar[str] = "lit_model.pth.lora"
    layer_class: ClassVar[type[nn.Module] | None] = LoRALinear

    r: int = 8
    """Rank of the update matrices A (r x in) and B (out x r)."""
    alpha: int = 16
    """Scaling numerator: the update is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter's input."""
    targets: list[str] = field(default_factory=lambda: ["query", "value"])
    """Layers that get adapters: any of query, key, value, projection, mlp, head."""

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA(r={self.r}): the rank must be at least 1; use lora=None for full fine-tuning.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA(dropout={self.dropout}): dropout must lie in [0, 1).")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if unknown:
            raise ValueError(
                f"LoRA(targets={self.targets}): unknown target(s) {unknown}. Choose from {list(LORA_TARGETS)}."
            )
        if not self.targets:
            raise ValueError("LoRA(targets=[]): name at least one of " + ", ".join(LORA_TARGETS) + ".")

    @classmethod
    def from_config(cls, config: Config) -> LoRA | None:
        if not isinstance(config, litgpt.lora.Config) or config.lora_r < 1:
            return None
        targets = [target for target in LORA_TARGETS if getattr(config, f"lora_{target}")]
        if not targets:
            return None
        return cls(r=config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout, targets=targets)

    def config_kwargs(self) -> dict[str, object]:
        """The `lora_*` fields of `litgpt.lora.Config` for these settings."""
        kwargs: dict[str, object] = {"lora_r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout}
        kwargs.update({f"lora_{target}": target in self.targets for target in LORA_TARGETS})
        return kwargs

    def build(self, config: Config) -> GPT:
        return litgpt.lora.GPT(config)

    def is_added(self, key: str) -> bool:
        return "lora_" in key

    def init_added(self, model: GPT, device: torch.device, dtype: torch.dtype) -> None:
        """Fresh A (LitGPT's Kaiming-uniform) and B (zeros) matrices for every LoRA layer."""
        for module in model.modules():
            if isinstance(module, litgpt.lora.LoRALayer) and getattr(module, "r", 0) > 0 and module.lora_A.is_meta:
                module.lora_A = nn.Parameter(torch.empty_like(module.lora_A, device=device, dtype=dtype))
                module.lora_B = nn.Parameter(torch.empty_like(module.lora_B, device=device, dtype=dtype))
                module.reset_parameters()

    def mark_trainable(self, model: GPT) -> None:
        mark_only_lora_as_trainable(model)

    def in_adapter(self, key: str, value: Any) -> bool:
        return lora_filter(key, value)

    def litgpt_config(self, config: Config) -> Config:
        """The plain config: the weights are merged."""
        return base_config(config)

    def litgpt_weights(self, model: GPT, weight_of: WeightOf) -> dict[str, torch.Tensor]:
        """Base weights with the LoRA updates added in (W + B·A·alpha/r), keyed as a plain LitGPT `GPT`:
        `litgpt generate/chat/serve` load them unchanged."""
        linears = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
        inside = tuple(f"{name}.linear." for name in linears)
        state = {
            key: value.detach().cpu()
            for key, value in model.state_dict().items()
            if not key.startswith(inside) and not lora_filter(key, value)
        }
        dtype = model.transformer.wte.weight.dtype
        for name, module in linears.items():
            weight = weight_of(module.linear).float()
            if module.r > 0:
                weight = weight + module.get_lora_AB().detach().float()
            state[f"{name}.weight"] = weight.to(dtype).cpu()
            if module.linear.bias is not None:
                state[f"{name}.bias"] = module.linear.bias.detach().cpu()
        return state

    def check_format(self, format: str) -> None:
        """Every format: a LoRA model merges into plain weights, and PEFT holds its adapter alone."""

    def added_compute(self, config: Config) -> AddedCompute:
        """An adapter on a weight matrix (in x out) costs 2·r·(in + out) FLOPs per token: 2 per adapter parameter."""
        d, attn, kv = config.n_embd, config.n_head * config.head_size, config.n_query_groups * config.head_size
        adapted = {name: size for name, size in (("query", attn), ("key", kv), ("value", kv)) if name in self.targets}

        def adapter(n_in: int, n_out: int, target: str) -> float:
            return 2.0 * self.r * (n_in + n_out) if target in self.targets else 0.0

        return AddedCompute(
            qkv=2.0 * self.r * (len(adapted) * d + sum(adapted.values())),
            proj=adapter(attn, d, "projection"),
            mlp_in=adapter(d, config.intermediate_size, "mlp"),
            mlp_out=adapter(config.intermediate_size, d, "mlp"),
            head=adapter(d, config.padded_vocab_size, "head"),
        )

    def describe(self) -> str:
        return f"LoRA (r={self.r} on {', '.join(sorted(self.targets))})"
