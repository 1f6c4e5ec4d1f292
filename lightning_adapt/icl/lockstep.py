"""Scoring a sharded (FSDP2 or FSDP1) model: every process runs the same forward passes, in the same order.

With FSDP every transformer block gathers its parameters from all processes when it runs, so the processes must
call the blocks equally often. Each process scores its own share of the requests, which needs a different number
of forward passes (prefix sharing and batching depend on the requests). `lockstep` keeps them together: before a
process runs the blocks it says so (an all-reduce), and a process that has finished its share runs a one-token
pass through the blocks for every pass another process still makes. The root unit (embedding, final norm, head),
which the scorer calls directly, must be gathered around it (`sharding.gathered_root`, as `ICLEvaluation` does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from litgpt import GPT

from lightning_adapt.icl.scoring import run_blocks
from lightning_adapt.distributed.sharding import collective_device, is_sharded


@contextmanager
def lockstep(model: GPT) -> Iterator[None]:
    """Inside, a sharded `model` may be run (whole, or block by block) a different number of times on each process;
    on leaving, every process has made as many passes as the busiest one. A no-op for an unsharded model."""
    if not is_sharded(model) or dist.get_world_size() == 1:
        yield
        return
    hook = model.transformer.h[0].register_forward_pre_hook(_announce_pass, prepend=True)  # before FSDP gathers
    try:
        yield
    finally:
        hook.remove()
    while _still_running(False):
        _idle_pass(model)


def _announce_pass(module: torch.nn.Module, args: tuple) -> None:
    """Before a pass through the blocks: tell the processes that have finished to run one too."""
    _still_running(True)


def _still_running(running: bool) -> bool:
    """Whether any process is about to run a pass (every process must call this equally often)."""
    flag = torch.tensor([int(running)], device=collective_device())
    dist.all_reduce(flag)
    return bool(flag.item())


def _idle_pass(model: GPT) -> None:
    """A pass of one token through every block, without the KV cache: the same parameter gathers as a real pass."""
    device = model.transformer.wte.weight.device
    x = torch.zeros((1, 1, model.config.n_embd), device=device, dtype=model.transformer.wte.weight.dtype)
    run_blocks(model, x, model.cos[:1].unsqueeze(0).to(device), model.sin[:1].unsqueeze(0).to(device))
