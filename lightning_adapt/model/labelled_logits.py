"""The LM head on the labelled positions only: the logits a next-token loss reads, and no others."""

from __future__ import annotations

import torch
from litgpt import GPT


def labelled_logits(
    model: GPT, input_ids: torch.Tensor, targets: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """LitGPT's own `GPT.forward` on `input_ids` (B, T), with the LM head (and the final logit softcapping, which
    LitGPT applies to its output elementwise) run only at the positions whose target in `targets` (B, T) is not
    `ignore_index`. Returns the logits (N, vocab) and the targets (N,) of those N positions, row by row.

    The saving: the head's FLOPs and the logits' memory scale with the labelled positions instead of all B·T (a
    response of 2 tokens after a prompt of 30 runs the head on 2 positions, not 32; SmolLM2-135M's head is about a
    fifth of its forward FLOPs). When every position is labelled (continued pretraining, general text) nothing is
    gathered. The rows are picked by a forward pre-hook on `model.lm_head`, removed when the forward returns, so it
    serves any model whose head is `lm_head` (LoRA on the head, QLoRA bases, activation checkpointing, FSDP and
    DeepSpeed keep the module and its parameter names)."""
    labelled = targets != ignore_index
    if bool(labelled.all()):
        logits = model(input_ids)
        return logits.reshape(-1, logits.size(-1)), targets.reshape(-1)

    def gather(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (args[0][labelled], *args[1:])

    handle = model.lm_head.register_forward_pre_hook(gather)
    try:
        logits = model(input_ids)
    finally:
        handle.remove()
    return logits, targets[labelled]
