"""Model memory of LoRA on bf16 weights vs QLoRA (nf4, int8): parameter + buffer bytes and peak RSS while loading.

Each setting loads in a fresh subprocess (so its peak RSS is its own) through `FineTuning.configure_model`, the
path training takes. The baseline is bf16, measured in the same run. Peak RSS on CPU includes the Python/torch
process itself and the pages of the memory-mapped `lit_model.pth` that were read.

    python benchmarks/quant_memory.py [--checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")
SETTINGS = ("bf16", "nf4", "int8")


def measure(checkpoint_dir: str, setting: str) -> dict[str, float]:
    """Load the model as `setting` and count bytes; runs inside the subprocess."""
    import resource

    import torch
    from litgpt.lora import LoRALinear

    from lightning_adapt import FineTuning, LoRA

    torch.set_default_dtype(torch.bfloat16)
    module = FineTuning(checkpoint_dir, lora=LoRA(r=8, targets=["query", "value"]),
                        quantize=None if setting == "bf16" else setting)
    module.configure_model()
    model = module.model
    tensors = list(model.parameters()) + list(model.buffers())
    total = sum(t.numel() * t.element_size() for t in tensors)
    linear = sum(
        m.linear.weight.numel() * m.linear.weight.element_size() + quant_state_bytes(m.linear)
        for name, m in model.named_modules() if isinstance(m, LoRALinear) and name.startswith("transformer.h")
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"total_bytes": total, "linear_bytes": linear, "peak_rss_bytes": peak}


def quant_state_bytes(linear) -> int:
    """Bytes of the quantization constants (absmax, nested statistics; int8 row scales)."""
    weight = linear.weight
    state = getattr(weight, "quant_state", None)
    if state is not None:
        parts = [state.absmax] + ([state.state2.absmax, state.offset] if state.nested else [])
        return sum(t.numel() * t.element_size() for t in parts if hasattr(t, "numel"))
    scales = getattr(weight, "SCB", None)
    if scales is None and hasattr(linear, "state"):
        scales = linear.state.SCB
    return 0 if scales is None else scales.numel() * scales.element_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint_dir", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--_measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure:
        print(json.dumps(measure(args.checkpoint_dir, args._measure)))
        return
    results = {}
    for setting in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--checkpoint_dir", args.checkpoint_dir, "--_measure", setting],
                             capture_output=True, text=True, check=True).stdout
        results[setting] = json.loads(out.strip().splitlines()[-1])
    base = results["bf16"]
    print(f"model: {args.checkpoint_dir}")
    print(f"{'setting':8s} {'linear-layer MB':>16s} {'ratio':>6s} {'whole model MB':>15s} {'ratio':>6s} {'peak RSS MB':>12s} {'ratio':>6s}")
    for setting, r in results.items():
        print(f"{setting:8s} {r['linear_bytes'] / 2**20:16.1f} {r['linear_bytes'] / base['linear_bytes']:6.3f} "
              f"{r['total_bytes'] / 2**20:15.1f} {r['total_bytes'] / base['total_bytes']:6.3f} "
              f"{r['peak_rss_bytes'] / 2**20:12.1f} {r['peak_rss_bytes'] / base['peak_rss_bytes']:6.3f}")


if __name__ == "__main__":
    main()
