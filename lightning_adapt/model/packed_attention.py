"""Attention kept within each example of a packed row, in LitGPT's own forward pass.

LitGPT's `GPT.forward` gives every block the RoPE cos/sin of positions 0..T-1 and no mask (causal attention over the
whole row). `packed_attention` swaps those block inputs, with forward pre-hooks on the blocks, for the cos/sin at each
token's position within its example and a boolean mask that lets a token attend to the earlier tokens of its own
example only; everything else in the forward pass is LitGPT's.

Which attention kernel runs: with an explicit mask, `scaled_dot_product_attention` cannot use the `is_causal` shortcut.
On the CPU it still runs the fused flash-attention CPU kernel (`_scaled_dot_product_flash_attention_for_cpu` and its
backward; checked with torch 2.13's profiler), which accepts a mask. On CUDA the flash kernel refuses any mask (torch's
`sdp_utils` check `check_for_attn_mask`), so SDPA takes the memory-efficient (CUTLASS) kernel, which does accept one
— when it serves the shapes (a head size that is a multiple of 8), else the math fallback. The mask costs
B x T x T booleans per micro-batch. Models with attention logit softcapping (which LitGPT computes without SDPA) get
the same mask as an additive float one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from litgpt import Config
from torch import nn


class NotPackableError(ValueError):
    """The model's attention cannot be confined to each example of a packed row by `packed_attention`."""


def check_packable(config: Config) -> None:
    """Refuse a model `packed_attention` cannot serve: sliding-window attention (LitGPT replaces the mask with its
    window in those layers) and per-layer RoPE indices (`rope_indices`)."""
    sliding = config.sliding_window_size is not None and any(config.sliding_window_indices or ())
    if sliding:
        raise NotPackableError(
            f"{config.name} uses sliding-window attention (sliding_window_size={config.sliding_window_size}), which "
            "LitGPT applies in place of any mask, so packed examples would see each other: use "
            "Instructions(batching='grouped') for this model."
        )
    if config.rope_indices is not None:
        raise NotPackableError(
            f"{config.name} gives its layers different RoPE dimensions (rope_indices), which packing does not "
            "support: use Instructions(batching='grouped') for this model."
        )


def segment_mask(segments: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) booleans: True where query i may attend key j, i.e. j <= i in the same segment (padding, segment
    0, attends causally among itself, so no row of the mask is empty)."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    return ((segments.unsqueeze(-1) == segments.unsqueeze(-2)) & causal).unsqueeze(1)


@contextmanager
def packed_attention(model: nn.Module, positions: torch.Tensor, segments: torch.Tensor) -> Iterator[None]:
    """While inside, each forward pass of `model` (a LitGPT `GPT`, LoRA's included) on input of shape (B, T) treats
    every segment of a row as its own sequence: its tokens take RoPE at `positions` and attend only to the earlier
    tokens of their segment. `positions` and `segments` (both (B, T), like the model's input: the caller slices a
    packed batch's `[:, :-1]`) come from `data.batching.packed_collate`. The hooks are removed on leaving."""
    check_packable(model.config)
    if positions.shape != segments.shape or positions.dim() != 2:
        raise ValueError(f"packed_attention: positions {tuple(positions.shape)} and segments "
                         f"{tuple(segments.shape)} must both be (batch, tokens), the shape of the model's input.")
    cos, sin = model.cos[positions], model.sin[positions]
    allowed = segment_mask(segments)
    softcapped = model.config.attention_logit_softcapping is not None

    def substitute(block: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        x, _, _, _, *rest = args
        if x.shape[:2] != positions.shape:
            raise ValueError(f"packed_attention: the model reads input of shape {tuple(x.shape[:2])}, but positions "
                             f"and segments are {tuple(positions.shape)}: slice them as the input ([:, :-1]).")
        if rest and rest[0] is not None:
            raise ValueError("packed_attention is for training forward passes; it does not work with a KV cache.")
        mask = allowed
        if softcapped:  # LitGPT adds the mask to the scores itself
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(
                ~allowed, torch.finfo(x.dtype).min)
        return (x, cos, sin, mask, *rest), kwargs

    handles = [block.register_forward_pre_hook(substitute, with_kwargs=True, prepend=True)
               for block in model.transformer.h]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
