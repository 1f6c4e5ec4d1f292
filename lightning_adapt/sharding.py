"""Sharded training: FSDP2 through Lightning's `ModelParallelStrategy`, and which strategies a run may use.

`FSDP2Strategy` (`--trainer.strategy fsdp2`) is `ModelParallelStrategy` with every process in data parallelism
(`data_parallel_size` = world size, `tensor_parallel_size` = 1; Lightning's own default would put a node's devices
into tensor parallelism). The modules' `configure_model` shards each transformer block and then the root with
`fully_shard` (`shard_model`). Checkpoints hold only the trainable weights, gathered at full shape into one `.ckpt`
file that loads with `weights_only=True` (a distributed-checkpoint folder's metadata is a pickle, which we never
load); the frozen base is never gathered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy, Strategy, StrategyRegistry
from torch import nn

FSDP2_NAME = "fsdp2"


class StrategyError(ValueError):
    """A Trainer strategy (or its sizes) that a lightning-adapt run cannot use; says which one to use instead."""


class FSDP2Strategy(ModelParallelStrategy):
    """Fully sharded data parallelism (PyTorch's FSDP2, `fully_shard`) on every device of every node.

    Args:
        process_group_backend: "nccl" on CUDA, "gloo" on CPU by default.
        timeout: How long a collective may wait for the other processes before the run fails.
    """

    def __init__(self, process_group_backend: str | None = None, timeout: timedelta | None = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, save_distributed_checkpoint=False,
                         process_group_backend=process_group_backend, timeout=timeout)

    def _setup_distributed(self) -> None:
        super()._setup_distributed()
        check_world_size(self.world_size, self.num_nodes, self.num_processes)
        self._data_parallel_size = self.world_size

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The trainable weights at full shape on global rank 0 (every process takes part; empty elsewhere)."""
        return full_trainable_state(self.model)

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        reshard(self.model)  # the optimizer holds the sharded parameters; an eval pass leaves the root gathered
        return super().optimizer_state(optimizer)

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
        """Resume from a `.ckpt` of any number of processes: its trainable weights and optimizer state are sharded
        over this run's processes; the file is read as data only."""
        return super().load_checkpoint(checkpoint_path, weights_only=True)


StrategyRegistry.register(FSDP2_NAME, FSDP2Strategy, description="FSDP2 (fully_shard) over every device",
                          override=True)


def check_world_size(world_size: int, num_nodes: int, devices: int) -> None:
    """Refuse a launch whose processes do not match the Trainer's `num_nodes` x `devices`."""
    if world_size != num_nodes * devices:
        raise StrategyError(
            f"The launcher started {world_size} processes, but the Trainer asks for num_nodes={num_nodes} x "
            f"devices={devices} = {num_nodes * devices}. Set --trainer.num_nodes and --trainer.devices to the nodes "
            "and processes per node the launcher (torchrun, SLURM, mpirun) starts."
        )


def is_launch_rank_zero() -> bool:
    """Whether this process is global rank 0 of its launch, from what launchers put in the environment (torchrun and
    Lightning's own launcher: RANK, or NODE_RANK/GROUP_RANK and LOCAL_RANK; SLURM: SLURM_PROCID). True when
    nothing launched it."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]) == 0
    node = int(env.get("NODE_RANK", env.get("GROUP_RANK", 0)))
    return node == 0 and int(env.get("LOCAL_RANK", 0)) == 0


def is_fsdp2(strategy: Strategy) -> bool:
    return isinstance(strategy, FSDP2Strategy)


def check_training_strategy(strategy: Strategy) -> None:
    """Refuse, before training, strategies a lightning-adapt module cannot train with, naming the alternative."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy

    name = type(strategy).__name__
    if isinstance(strategy, ModelParallelStrategy) and not is_fsdp2(strategy):
        raise StrategyError(
            f"{name} is not supported: lightning-adapt's modules shard with FSDP2 only. Use --trainer.strategy "
            f"{FSDP2_NAME} (lightning_adapt.FSDP2Strategy: a ModelParallelStrategy with data_parallel_size = world "
            "size and tensor_parallel_size = 1, whose checkpoints hold only the trainable weights)."
        )
    if isinstance(strategy, FSDPStrategy):
        raise StrategyError(
            f"{name} (FSDP1) is not supported yet: use --trainer.strategy {FSDP2_NAME} (PyTorch's FSDP2), which "
            "shards the same way on CUDA and on CPU."
        )
    if isinstance(strategy, DeepSpeedStrategy):
        raise StrategyError(
            f"{name} is not supported yet: use --trainer.strategy {FSDP2_NAME} to shard parameters, gradients and "
            "optimizer state, or ddp when the model fits one device."
        )


def shard_model(model: nn.Module, mesh: Any, whole: set[nn.Parameter] | None = None) -> None:
    """FSDP2: each transformer block its own `fully_shard` unit, then the root (embedding, final norm, head).
    Parameters in `whole` (QLoRA's frozen 4-bit / 8-bit base) are left out of the sharding: every process keeps them."""
    from torch.distributed.fsdp import fully_shard

    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, ignored_params=whole or None)
    fully_shard(model, mesh=mesh, ignored_params=whole or None)


def local_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers this process holds: its shards of sharded ones, all of the others."""
    from torch.distributed.tensor import DTensor

    tensors = [*model.parameters(), *model.buffers()]
    local = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in local)


def checkpoint_activations(model: nn.Module) -> None:
    """Recompute each transformer block's activations in the backward pass instead of keeping them (PyTorch's
    non-reentrant `checkpoint` around the block's own forward, so parameter names, classes and FSDP2's hooks stay as
    they are). Without gradients (evaluation) the blocks run as usual."""
    for block in model.transformer.h:
        block.forward = _recomputed(block.forward)


def _recomputed(forward: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


def collective_device() -> torch.device:
    """Where tensors for `torch.distributed` collectives live: the current CUDA device under NCCL, else the CPU."""
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def reshard(model: nn.Module) -> None:
    """Free every gathered FSDP2 unit of `model`, so that its parameters are the sharded ones again (FSDP2 keeps the
    root gathered after a forward pass without backward, e.g. in evaluation)."""
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of `model` at full shape, on the CPU of global rank 0 (every process must call this;
    the others get an empty dict). Gathered one parameter at a time; the frozen base is not gathered."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    reshard(model)
    keep = not dist.is_initialized() or dist.get_rank() == 0
    state = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            full = param.full_tensor() if isinstance(param, DTensor) else param
            if keep:
                state[name] = full.detach().to("cpu", copy=True)
    return state
