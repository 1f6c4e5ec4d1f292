"""Sharded training: FSDP2 through Lightning's `ModelParallelStrategy`, FSDP1 through its `FSDPStrategy`, and
gathering what any sharded model holds (DeepSpeed's ZeRO-3 partitions too; its strategy is in `deepspeed_zero`, and
which strategies a run may use in `strategies`).

`FSDP2Strategy` (`--trainer.strategy fsdp2`) is `ModelParallelStrategy` with every process in data parallelism
(`data_parallel_size` = world size, `tensor_parallel_size` = 1; Lightning's own default would put a node's devices
into tensor parallelism). The modules' `configure_model` shards each transformer block and then the root with
`fully_shard` (`shard_model`). `FSDP1Strategy` (`--trainer.strategy fsdp`) is Lightning's `FSDPStrategy` wrapping
each transformer block in its own `FullyShardedDataParallel` unit inside the root unit, with `use_orig_params`.
Under both, checkpoints hold only the trainable weights, gathered at full shape into one `.ckpt` file that loads with
`weights_only=True` (a distributed-checkpoint folder's metadata is a pickle, which we never load); the frozen base is
never gathered whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy, Strategy, StrategyRegistry
from torch import nn

from lightning_adapt.model.quantize import quantized_parameters
from lightning_adapt.model.training_checkpoints import check_resumed_by, read_training_checkpoint

FSDP2_NAME = "fsdp2"
FSDP1_NAME = "fsdp"
_FSDP1_PREFIX = "_fsdp_wrapped_module."
"""What FSDP1 puts into the names of the parameters a unit wraps (`torch.distributed.fsdp`'s FSDP_WRAPPED_MODULE)."""


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
        return super().load_checkpoint(check_resumed_by(self.broadcast(checkpoint_path), deepspeed=False),
                                       weights_only=True)


StrategyRegistry.register(FSDP2_NAME, FSDP2Strategy, description="FSDP2 (fully_shard) over every device",
                          override=True)


class FSDP1Strategy(FSDPStrategy):
    """PyTorch's FSDP1 (`FullyShardedDataParallel`) for lightning-adapt's modules: Lightning's `FSDPStrategy` with
    each transformer block its own unit (the root unit holds the embedding, final norm and head) and
    `use_orig_params=True` (LoRA's trainable and frozen weights share a unit). A QLoRA base (bitsandbytes layers)
    is left out of the units (`ignored_states`): every process holds it whole, the rest is sharded. For
    lightning-adapt's modules,
    checkpoints hold the trainable weights only, gathered one unit at a time into one `.ckpt` that loads with
    `weights_only=True`; for other LightningModules it saves and loads as `FSDPStrategy` does.

    Args:
        auto_wrap_policy: What becomes its own unit; default every litgpt `Block`.
        timeout: How long a collective may wait for the other processes before the run fails.
        **kwargs: `FSDPStrategy`'s other arguments (`sharding_strategy`, `cpu_offload`, `mixed_precision`, ...).
    """

    def __init__(self, auto_wrap_policy: Any = None, timeout: timedelta | None = default_pg_timeout,
                 **kwargs: Any) -> None:
        from litgpt.model import Block

        kwargs.setdefault("use_orig_params", True)
        super().__init__(auto_wrap_policy=auto_wrap_policy or {Block}, timeout=timeout, state_dict_type="full",
                         **kwargs)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        """Wrap `model` as `FSDPStrategy` does, but with the root device itself as FSDP's `device_id` (Lightning passes
        the device's index, which is None on the CPU, where FSDP then refuses to run: gloo tests need the CPU)."""
        from lightning.pytorch.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        if has_fsdp1_units(model):  # wrapped by the module itself: as FSDPStrategy does
            return super()._setup_model(model)
        kwargs = dict(self.kwargs)
        whole = quantized_parameters(model)  # QLoRA's frozen 4-bit / 8-bit base: every process keeps it, unflattened
        if whole:
            kwargs["ignored_states"] = [*kwargs.get("ignored_states", ()), *whole]
        wrapped = FullyShardedDataParallel(model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
                                           sharding_strategy=self.sharding_strategy, device_id=self.root_device,
                                           **kwargs)
        _move_torchmetrics_to_device(wrapped, self.root_device)
        _setup_activation_checkpointing(wrapped, self._activation_checkpointing_kwargs)
        return wrapped

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """A lightning-adapt module's trainable weights at full shape on global rank 0 (every process takes part; empty
        elsewhere); any other module's whole state, as `FSDPStrategy` saves it."""
        if not _trains_only_some_weights(self.lightning_module):
            return super().lightning_module_state_dict()
        return full_trainable_state(self.model)

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """A lightning-adapt module's optimizer state at full shapes on global rank 0, keyed by position in the
        optimizer as a one-process run saves it (`FSDPStrategy` numbers the model's parameters instead, whose order
        FSDP changes)."""
        if not _trains_only_some_weights(self.lightning_module):
            return super().optimizer_state(optimizer)
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, FullyShardedDataParallel
        from torch.distributed.fsdp import OptimStateKeyType, StateDictType

        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer's own
        # Offloading on a CPU run would keep views of one reused gather buffer (`.cpu()` copies nothing): every state
        # of a parameter (Adam's exp_avg, exp_avg_sq) would read as the last one gathered. Without it FSDP clones.
        offload = self.root_device.type != "cpu"
        with FullyShardedDataParallel.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                                      FullStateDictConfig(offload_to_cpu=True, rank0_only=True),
                                                      FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=True)):
            state = FullyShardedDataParallel.optim_state_dict(self.model, optimizer)
            if self.global_rank != 0:
                return state
            return FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model,
                                                                   optim=optimizer)

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
        """Resume a lightning-adapt module from a `.ckpt` of any number of processes (read as data only): its trainable
        weights and optimizer state are sharded over this run's processes."""
        if not _trains_only_some_weights(self.lightning_module):
            return super().load_checkpoint(checkpoint_path, weights_only)
        from lightning.fabric.strategies.fsdp import _get_full_state_dict_context
        from lightning.pytorch.trainer.states import TrainerFn
        from torch.distributed.fsdp import FullyShardedDataParallel, OptimStateKeyType

        checkpoint = read_training_checkpoint(check_resumed_by(self.broadcast(checkpoint_path), deepspeed=False))
        with _get_full_state_dict_context(self.model, world_size=self.world_size, rank0_only=False):
            self.model.load_state_dict(checkpoint.pop("state_dict"), strict=False)
            states = checkpoint.get("optimizer_states")
            if states and self.lightning_module.trainer.state.fn == TrainerFn.FITTING:
                for optimizer, state in zip(self.optimizers, states, strict=True):
                    if state["state"] and isinstance(next(iter(state["state"])), int):
                        state = FullyShardedDataParallel.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_NAME,
                                                                                self.model, optim=optimizer)
                    optimizer.load_state_dict(FullyShardedDataParallel.optim_state_dict_to_load(self.model, optimizer,
                                                                                                state))
        return checkpoint


StrategyRegistry.register(FSDP1_NAME, FSDP1Strategy, description="FSDP1, each transformer block a unit",
                          override=True)
StrategyRegistry.register("fsdp_cpu_offload", FSDP1Strategy, description="FSDP1 with parameters offloaded to the CPU",
                          cpu_offload=True, override=True)


def _trains_only_some_weights(module: Any) -> bool:
    """Whether `module`'s checkpoints hold its trainable weights only: a lightning-adapt module's do
    (`AdaptationModule.saves_trainable_weights_only`)."""
    return getattr(module, "saves_trainable_weights_only", False)


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


def is_fsdp1(strategy: Strategy) -> bool:
    return isinstance(strategy, FSDP1Strategy)


def shard_model(model: nn.Module, mesh: Any, whole: set[nn.Parameter] | None = None) -> None:
    """FSDP2: each transformer block its own `fully_shard` unit, then the root (embedding, final norm, head).
    Parameters in `whole` (QLoRA's frozen 4-bit / 8-bit base) are left out of the sharding: every process keeps them."""
    from torch.distributed.fsdp import fully_shard

    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, ignored_params=whole or None)
    fully_shard(model, mesh=mesh, ignored_params=whole or None)


def local_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers this process holds: its shards of sharded ones (FSDP2's DTensors, ZeRO-3's
    partitions), all of the others."""
    from torch.distributed.tensor import DTensor

    tensors = [*model.parameters(), *model.buffers()]
    local = [t.to_local() if isinstance(t, DTensor) else getattr(t, "ds_tensor", t) for t in tensors]
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
    """Whether `model` is an FSDP2 unit, holds FSDP1 units (its blocks, under `FSDP1Strategy`) or parameters that
    DeepSpeed's ZeRO stage 3 partitions."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule) or has_fsdp1_units(model) or any(hasattr(p, "ds_id") for p in model.parameters())


def is_zero_3_engine(model: nn.Module) -> bool:
    """Whether `model` (a strategy's model) is a DeepSpeed engine partitioning parameters (ZeRO stage 3)."""
    return hasattr(model, "zero_optimization_stage") and model.zero_optimization_stage() == 3


@contextmanager
def gathered(params: list[nn.Parameter]) -> Iterator[None]:
    """Inside, ZeRO-3-partitioned `params` are whole on every process (every process must enter); others as they are."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
        yield


_HELD = -1
"""A submodule id no module has: while it is among a parameter's active submodules, DeepSpeed never frees it."""


@contextmanager
def held_whole(engine: nn.Module) -> Iterator[None]:
    """Inside, every parameter of a ZeRO-3 engine's module is whole on every process and stays so while parts of the
    module run outside the engine's forward (held-out losses, ICL scoring: DeepSpeed's hooks would otherwise
    gather and free each submodule's parameters in an order that differs between processes). Every process must
    enter; each then holds the whole model until the end."""
    params = [p for p in engine.module.parameters() if hasattr(p, "ds_id")]
    with gathered(params):
        for param in params:
            param.ds_active_sub_modules.add(_HELD)
        try:
            yield
        finally:
            for param in params:
                param.ds_active_sub_modules.discard(_HELD)


def has_fsdp1_units(model: nn.Module) -> bool:
    """Whether parameters of `model` are FSDP1's local views (each process holds only part of each, flattened)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    return any(isinstance(m, FullyShardedDataParallel) for m in model.modules())


def clean_name(name: str) -> str:
    """A parameter's name as in the unwrapped model (FSDP1 inserts its wrapper into the names)."""
    return name.replace(_FSDP1_PREFIX, "")


@contextmanager
def gathered_root(wrapped: nn.Module) -> Iterator[None]:
    """Inside, the root unit's parameters (embedding, final norm, head) are whole on every process, so that the model
    may be run outside the strategy's own forward (held-out losses, ICL scoring); the blocks gather theirs as they run.
    `wrapped` is the strategy's model. Every process must enter; a no-op for an unsharded model."""
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    if is_zero_3_engine(wrapped):
        with held_whole(wrapped):
            yield
        return
    if isinstance(wrapped, FullyShardedDataParallel):
        with FullyShardedDataParallel.summon_full_params(wrapped, recurse=False, writeback=False):
            yield
        return
    root = next((m for m in wrapped.modules() if isinstance(m, FSDPModule)), None)
    if root is None:
        yield
        return
    device = next(root.parameters()).device
    with torch.no_grad():
        root(torch.zeros((1, 1), dtype=torch.long, device=device))  # initialises FSDP's root state if no pass ran yet
    root.unshard()
    try:
        yield
    finally:
        reshard(root)  # free the gathered root until training gathers it again


def full_trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of `model` at full shape, named as in the unwrapped model, on the CPU of global rank 0
    (every process must call this; the others get an empty dict). `model` is the strategy's model (under FSDP1 the
    root unit, under DeepSpeed its engine). Gathered one parameter (FSDP2, ZeRO-3) or one unit (FSDP1) at a time; the
    frozen base is never gathered whole."""
    import torch.distributed as dist

    keep = not dist.is_initialized() or dist.get_rank() == 0
    return {name: full.detach().to("cpu", copy=True) for name, full in _full_trainable(model) if keep}


def _full_trainable(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    if is_zero_3_engine(model):
        for name, param in model.module.named_parameters():
            if param.requires_grad:
                with gathered([param]):
                    yield name, param
        return
    if not has_fsdp1_units(model):
        reshard(model)
        for name, param in model.named_parameters():
            if param.requires_grad:
                yield name, param.full_tensor() if isinstance(param, DTensor) else param
        return
    for unit_name, unit in model.named_modules():
        if isinstance(unit, FullyShardedDataParallel):
            with FullyShardedDataParallel.summon_full_params(unit, recurse=False, writeback=False):
                for name, param in _unit_parameters(unit.module, clean_name(f"{unit_name}.") if unit_name else ""):
                    if param.requires_grad:
                        yield name, param


def _unit_parameters(module: nn.Module, path: str) -> Iterator[tuple[str, nn.Parameter]]:
    """The parameters an FSDP1 unit wrapping `module` holds itself (not those of the units nested in it), in the
    module's order; `path` is the module's name in the unwrapped model, with a trailing dot (empty for the root)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    for name, param in module.named_parameters(recurse=False):
        yield path + name, param
    for name, child in module.named_children():
        if not isinstance(child, FullyShardedDataParallel):
            yield from _unit_parameters(child, f"{path}{name}.")
