"""QLoRA: the frozen base linear layers of a LoRA (or Adapter V2) model as bitsandbytes 4-bit or 8-bit layers, on
any device.

Lightning's `BitsandbytesPrecision` only accepts CUDA; bitsandbytes itself also runs its 4-bit and 8-bit layers
on CPU. Here each base weight is read from the memory-mapped `lit_model.pth` and quantized as it is moved to the
device, one layer at a time, so the full-precision model is never held on the device.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from litgpt import GPT
from torch import nn

from lightning_adapt.techniques import Technique, technique_of


class _Int8CastNotice(logging.Filter):
    """Drop the notice bitsandbytes logs on every 8-bit matmul (float32 inputs are cast to float16; see README)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast" not in record.getMessage()


def _quiet_int8_notice() -> None:
    bnb_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _Int8CastNotice) for f in bnb_logger.filters):
        bnb_logger.addFilter(_Int8CastNotice())


QUANT_TYPES = ("nf4", "nf4-dq", "fp4", "fp4-dq", "int8")


def check_quantize(quantize: str | None, technique: Technique | None) -> None:
    """Refuse a quantization setting that cannot work, before anything is loaded."""
    if quantize is None:
        return
    if quantize not in QUANT_TYPES:
        raise ValueError(f"quantize='{quantize}' is not supported. Choose one of {', '.join(QUANT_TYPES)} (or None).")
    if technique is None:
        raise ValueError(
            f"quantize='{quantize}' needs LoRA: quantized base weights are frozen, so full fine-tuning would train "
            "nothing. Pass lora=LoRA(...) (QLoRA) or another technique, or quantize=None for full fine-tuning."
        )
    if technique.layer_class is None:
        raise ValueError(f"quantize='{quantize}': {technique.name} models cannot be quantized; use quantize=None.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ImportError(f"quantize='{quantize}' needs bitsandbytes: pip install bitsandbytes ({error}).") from error


def quantized_linear(weight: torch.Tensor, bias: torch.Tensor | None, quantize: str, device: torch.device,
                     compute_dtype: torch.dtype) -> nn.Module:
    """A bitsandbytes layer holding `weight` quantized on `device` (the weight is quantized by the move)."""
    import bitsandbytes as bnb

    out_features, in_features = weight.shape
    if quantize == "int8":
        layer = bnb.nn.Linear8bitLt(in_features, out_features, bias=bias is not None, has_fp16_weights=False,
                                    threshold=6.0, device="meta")
        layer.weight = bnb.nn.Int8Params(weight.to(compute_dtype), requires_grad=False, has_fp16_weights=False)
    else:
        quant_type, double_quant = quantize.removesuffix("-dq"), quantize.endswith("-dq")
        layer = bnb.nn.Linear4bit(in_features, out_features, bias=bias is not None, quant_type=quant_type,
                                  compress_statistics=double_quant, compute_dtype=compute_dtype, device="meta")
        layer.weight = bnb.nn.Params4bit(weight.to(compute_dtype), requires_grad=False, quant_type=quant_type,
                                         compress_statistics=double_quant)
        # On CPUs with AVX512-BF16, bitsandbytes (>= 0.48) repacks a 4-bit weight for a bf16 inference kernel the
        # first time the layer runs in eval mode without grad, and keeps that packing: its numbers then differ from
        # the training path, and later training steps backpropagate through a kernel without autograd (silently
        # wrong gradients, or a crash where the layer has a bias). Validation and ICL scoring must see the model
        # that trains, so the layer always takes the dequantizing path.
        layer.support_avx512bf16_for_cpu = False
    if bias is not None:
        layer.bias = nn.Parameter(bias.to(compute_dtype), requires_grad=False)
    return layer.to(device)


def dequantized_weight(linear: nn.Module) -> torch.Tensor:
    """The full-precision weight of a plain, 4-bit or 8-bit linear layer."""
    weight = linear.weight
    if "bitsandbytes" not in sys.modules:  # no layer is one of its layers: a plain export need not import it
        return weight.detach()
    import bitsandbytes as bnb

    if isinstance(weight, bnb.nn.Params4bit):
        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state)
    if isinstance(weight, bnb.nn.Int8Params):
        scales = weight.SCB if weight.SCB is not None else linear.state.SCB
        return weight.data.float() * scales.float().unsqueeze(1) / 127.0
    return weight.detach()


def load_quantized_weights(model: GPT, state: dict[str, torch.Tensor], weights_path: Path, quantize: str,
                           device: torch.device, dtype: torch.dtype) -> None:
    """Fill `model` (built on the meta device) with the weights in `state` (read from `weights_path`), quantizing
    every base linear layer; the parameters the technique adds are left for `loading.init_adapters`.

    The `.linear` layers of the technique's layers (`Technique.layer_class`, e.g. LoRA's) in the transformer blocks
    become bitsandbytes layers; embeddings, norms and the output head are taken as they are (the caller moves them
    to `dtype`).
    """
    if quantize == "int8":
        _quiet_int8_notice()
    layer_class = technique_of(model.config).layer_class
    for name, module in model.transformer.h.named_modules(prefix="transformer.h"):
        if isinstance(module, layer_class):
            bias = state.pop(f"{name}.bias", None)
            module.linear = quantized_linear(state.pop(f"{name}.weight"), bias, quantize, device, dtype)
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.unexpected_keys:
        raise KeyError(f"Weights '{weights_path}' hold keys the model does not have: {result.unexpected_keys[:5]}")


def quantized_parameters(model: nn.Module) -> set[nn.Parameter]:
    """The weights and biases of the bitsandbytes layers: frozen, and kept whole on every process under sharding."""
    if "bitsandbytes" not in sys.modules:  # no model holds its layers: not worth importing it to find none
        return set()
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt))]
    return {p for layer in layers for p in layer.parameters(recurse=False)}


def logical_numel(param: torch.Tensor) -> int:
    """The parameter's number of weights: a 4-bit weight's unpacked shape (its storage holds two per byte), a
    ZeRO-3-partitioned one's whole shape (its tensor is an empty placeholder)."""
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None:
        return int(quant_state.shape.numel())
    return int(getattr(param, "ds_numel", param.numel()))
