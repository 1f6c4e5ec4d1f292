"""CUDA check of QLoRA: nf4 QLoRA vs bf16 LoRA on a SmolLM2-135M-shaped model (random weights, random tokens).

Prints tokens/s and peak `torch.cuda.max_memory_allocated` of each, their ratios, then runs every other quant type
and precision a few steps and checks the merged export of the nf4 model against its logits. Needs a CUDA device.

    python benchmarks/cuda_qlora.py [--steps 30] [--batch_size 8] [--seq 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from litgpt import GPT, Config
from litgpt.utils import save_config
from torch.utils.data import DataLoader, Dataset

from lightning_adapt import FineTuning, LoRA, Optimization
from lightning_adapt.testing import make_tiny_checkpoint


class RandomTokens(Dataset):
    def __init__(self, vocab_size: int, length: int, count: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, vocab_size, (count, length + 1), generator=generator)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.data[index], "labels": self.data[index]}


class StepClock(L.Callback):
    """Step end times, and the memory the model holds on the device when training starts."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.model_mib = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.model_mib = torch.cuda.memory_allocated() / 2**20

    def on_train_batch_end(self, trainer, *args) -> None:
        torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def smollm2_shaped_checkpoint(folder: Path) -> Path:
    checkpoint = make_tiny_checkpoint(folder / "SmolLM2-135M-random")
    config = Config.from_name("SmolLM2-135M")
    torch.manual_seed(0)
    model = GPT(config)
    model.apply(model._init_weights)
    torch.save(model.state_dict(), checkpoint / "lit_model.pth")
    save_config(config, checkpoint)
    return checkpoint


def run(checkpoint: Path, quantize: str | None, precision: str, steps: int, args, out: Path) -> tuple[float, float, float, FineTuning]:
    L.seed_everything(0)
    module = FineTuning(checkpoint, lora=LoRA(r=8, targets=["query", "value"]), quantize=quantize, max_seq_length=args.seq,
                        optimization=Optimization(warmup_steps=2), out_dir=out, export=False)
    loader = DataLoader(RandomTokens(49152, args.seq, steps * args.batch_size), batch_size=args.batch_size)
    clock = StepClock()
    trainer = L.Trainer(accelerator="cuda", devices=1, precision=precision, max_steps=steps, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[clock], default_root_dir=out)
    torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, train_dataloaders=loader)
    skip = min(5, steps - 2)
    tokens_per_s = (steps - skip - 1) * args.batch_size * args.seq / (clock.ends[-1] - clock.ends[skip])
    return tokens_per_s, torch.cuda.max_memory_allocated() / 2**20, clock.model_mib, module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = smollm2_shaped_checkpoint(tmp)
        lora_speed, lora_mem, lora_model, _ = run(checkpoint, None, "bf16-true", args.steps, args, tmp / "lora")
        nf4_speed, nf4_mem, nf4_model, nf4 = run(checkpoint, "nf4", "bf16-true", args.steps, args, tmp / "nf4")
        print(f"bf16 LoRA : {lora_speed:10.0f} tokens/s, model {lora_model:7.1f} MiB, peak allocated {lora_mem:8.1f} MiB")
        print(f"nf4 QLoRA : {nf4_speed:10.0f} tokens/s, model {nf4_model:7.1f} MiB, peak allocated {nf4_mem:8.1f} MiB")
        print(f"ratio nf4/bf16: speed {nf4_speed / lora_speed:.3f}, model memory {nf4_model / lora_model:.3f}, "
              f"peak memory {nf4_mem / lora_mem:.3f}")

        final = nf4.export(tmp / "nf4-final")
        merged = GPT(Config.from_file(final / "model_config.yaml"))
        merged.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True))
        merged = merged.to(torch.bfloat16).eval()  # Lightning hands the trained module back on the CPU
        idx = torch.randint(0, 49152, (2, 64))
        with torch.no_grad():
            difference = (merged(idx).float() - nf4.model.eval()(idx).float()).abs().max().item()
        print(f"nf4 merged export vs quantized model with adapter, bf16 logits: max abs diff {difference:.4f}")

        for quantize, precision in [("nf4-dq", "bf16-true"), ("fp4", "bf16-true"), ("fp4-dq", "bf16-true"),
                                    ("int8", "bf16-true"), ("nf4", "bf16-mixed"), ("nf4", "16-mixed"),
                                    ("nf4", "32-true")]:
            try:
                speed, memory, _, module = run(checkpoint, quantize, precision, 8, args, tmp / f"{quantize}-{precision}")
                print(f"{quantize:7s} {precision:10s}: ok, {speed:8.0f} tokens/s, peak {memory:7.1f} MiB, "
                      f"layer {type(module.model.transformer.h[0].attn.qkv.linear).__name__}")
            except Exception as error:  # report every combination, whatever fails
                print(f"{quantize:7s} {precision:10s}: FAILED {type(error).__name__}: {str(error)[:300]}")


if __name__ == "__main__":
    main()
