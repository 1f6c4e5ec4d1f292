"""LoRA hyperparameters, as LitGPT's `litgpt.lora.Config` understands them."""

from __future__ import annotations

from dataclasses import dataclass, field

LORA_TARGETS = ("query", "key", "value", "projection", "mlp", "head")


@dataclass
class LoRA:
    """Low-rank adapters on the chosen linear layers; every other weight stays frozen."""

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

    def config_kwargs(self) -> dict[str, object]:
        """The `lora_*` fields of `litgpt.lora.Config` for these settings."""
        kwargs: dict[str, object] = {"lora_r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout}
        kwargs.update({f"lora_{target}": target in self.targets for target in LORA_TARGETS})
        return kwargs
