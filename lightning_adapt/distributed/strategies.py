"""Which Trainer strategies a lightning-adapt module trains with: ours (`FSDP2Strategy`, `FSDP1Strategy`,
`DeepSpeedStrategy` without offloading) or Lightning's that keep the model whole (single device, DDP); every other
sharding strategy is refused before training, naming the one to use instead."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy, Strategy

from lightning_adapt.distributed.deepspeed_zero import DEEPSPEED_NAMES
from lightning_adapt.distributed.deepspeed_zero import DeepSpeedStrategy as OurDeepSpeed
from lightning_adapt.distributed.sharding import FSDP1_NAME, FSDP2_NAME, StrategyError, is_fsdp1, is_fsdp2


def check_training_strategy(strategy: Strategy, quantize: str | None = None, compile: bool = False) -> None:
    """Refuse, before training, strategies a lightning-adapt module cannot train with, naming the alternative."""
    name = type(strategy).__name__
    if isinstance(strategy, ModelParallelStrategy) and not is_fsdp2(strategy):
        raise StrategyError(
            f"{name} is not supported: lightning-adapt's modules shard with FSDP2 only. Use --trainer.strategy "
            f"{FSDP2_NAME} (lightning_adapt.FSDP2Strategy: a ModelParallelStrategy with data_parallel_size = world "
            "size and tensor_parallel_size = 1, whose checkpoints hold only the trainable weights)."
        )
    if isinstance(strategy, FSDPStrategy) and not is_fsdp1(strategy):
        raise StrategyError(
            f"{name} is not supported: use --trainer.strategy {FSDP1_NAME} (lightning_adapt.FSDP1Strategy: "
            "FSDPStrategy with each transformer block its own unit, use_orig_params=True and checkpoints of the "
            f"trainable weights only) or {FSDP2_NAME} (PyTorch's FSDP2)."
        )
    names = " or ".join(DEEPSPEED_NAMES.values())
    if isinstance(strategy, DeepSpeedStrategy) and (not isinstance(strategy, OurDeepSpeed) or _offloads(strategy)):
        raise StrategyError(
            f"{name} (ZeRO stage {strategy.config.get('zero_optimization', {}).get('stage', '?')}"
            f"{', offloading' if _offloads(strategy) else ''}) is not supported: use --trainer.strategy {names} "
            "(lightning_adapt.DeepSpeedStrategy, without offloading: checkpoints of the trainable weights only) or "
            f"{FSDP2_NAME}."
        )
    if isinstance(strategy, OurDeepSpeed) and quantize is not None:
        raise StrategyError(
            f"QLoRA (quantize={quantize}) does not train under DeepSpeed, which would partition or recast the "
            f"bitsandbytes base: use --trainer.strategy {FSDP2_NAME} or {FSDP1_NAME} (the quantized base is kept "
            "whole on every process, the rest sharded), or ddp."
        )
    if compile and (is_fsdp1(strategy) or isinstance(strategy, DeepSpeedStrategy)):
        raise StrategyError(
            f"compile: true is not supported under {name}, which wraps the blocks in units of its own: use "
            f"--trainer.strategy {FSDP2_NAME} or ddp, or compile: false."
        )


def _offloads(strategy: Any) -> bool:
    zero = strategy.config.get("zero_optimization", {}) if isinstance(strategy.config, dict) else {}
    return bool(zero.get("offload_optimizer") or zero.get("offload_param"))
