"""`compile: true`: the transformer blocks of a LitGPT model compiled with `torch.compile` for training steps."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

COMPILE_FAILURES: tuple[type[Exception], ...] = (
    torch._dynamo.exc.TorchDynamoException,
    torch._inductor.exc.InductorError,
)
"""What `torch.compile` raises when it cannot compile a block (no C++ compiler, an unsupported operation, ...)."""


class CompileError(RuntimeError):
    """`compile: true` was asked for and `torch.compile` is unavailable or failed, with no fallback allowed."""


class CompileFallbackWarning(UserWarning):
    """`torch.compile` failed and the run goes on uncompiled, as `compile_fallback: true` allows."""


def check_compile(fallback: bool) -> bool:
    """Whether `torch.compile` can be tried here: False (with a warning) where it is unavailable and `fallback` allows
    running uncompiled; a `CompileError` where it is unavailable and it does not."""
    if torch._dynamo.is_dynamo_supported():
        return True
    reason = f"torch.compile is not supported on this Python or platform (torch {torch.__version__})"
    if not fallback:
        raise CompileError(f"compile: true, but {reason}. Set compile: false, or compile_fallback: true to run uncompiled.")
    warnings.warn(f"compile: true, but {reason}; training uncompiled (compile_fallback: true).", CompileFallbackWarning)
    return False


def compile_blocks(model: nn.Module, fallback: bool) -> None:
    """Compile every transformer block's forward for the steps that compute gradients (training); evaluation (no
    gradients: held-out losses, ICL scoring and generation, whose shapes change with every prompt and use the KV
    cache) runs the blocks eagerly. Blocks are compiled in place (`block.forward`), so parameter names, classes and
    the hooks of FSDP2 and activation checkpointing stay as they are; blocks share one compiled graph (their code is
    the same). A compilation that fails on the first step raises `CompileError` naming the cause, or with `fallback`
    warns and runs every block eagerly from then on."""
    if not check_compile(fallback):
        return
    switch = _Fallback(fallback)
    for block in model.transformer.h:
        block.forward = _compiled_when_training(block.forward, switch)


class _Fallback:
    """Shared by the blocks of one model: whether compiling failed and the run went on eagerly."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.eager = False

    def failed(self, error: Exception) -> None:
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not self.allowed:
            raise CompileError(
                f"compile: true, but torch.compile failed on a transformer block: {cause}. Set compile: false, or "
                "compile_fallback: true to continue uncompiled."
            ) from error
        warnings.warn(f"torch.compile failed ({cause}); training uncompiled (compile_fallback: true).",
                      CompileFallbackWarning)
        self.eager = True


def _compiled_when_training(forward: Callable[..., Any], switch: _Fallback) -> Callable[..., Any]:
    compiled = torch.compile(forward)

    def run(*args: Any, **kwargs: Any) -> Any:
        if switch.eager or not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except COMPILE_FAILURES as error:
            switch.failed(error)
            return forward(*args, **kwargs)

    return run
