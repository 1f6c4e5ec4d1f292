"""The GPU checks of sharding, DeepSpeed and bf16 training, in one run on one device (issue #17).

    python scripts/gpu_checks.py --out DIR [--accelerator cuda]

DIR must be new, empty or one this script wrote (a rerun goes on from the runs it finished); nothing else is touched.

Every run trains the tiny GPT-NeoX-style model of `lightning_adapt.testing` (biases in every linear layer, odd
shapes) for 6 steps on the built-in sentiment instructions (CPT: on the built-in general text), validates and scores
ICL (review sentiment, k = 0 and 2, 2 seeds) at steps 0, 3 and 6, and saves a checkpoint at steps 3 and 6. Each run
is a fresh process. The checks, one line each (PASS/FAIL, what was measured, the bound):

1. FSDP2 and FSDP1 at world size 1 in bf16-true, LoRA and QLoRA nf4: losses and ICL scores as DDP's (unsharded).
2. DeepSpeed stages 2 and 3 at devices=1 in bf16-true (LoRA; stage 3 also full fine-tuning): trains, its checkpoint
   folder holds the trainable weights only, resuming from step 3 gives the straight run's losses and weights, and
   `lightning-adapt export` of the folder equals `final/`.
3. bf16-true and bf16-mixed for LoRA, full fine-tuning, QLoRA nf4 and full CPT: trains, the weights are held in the
   precision's dtype, and ICLEvaluation scores with bf16 logits; ICL alone (`evaluate_checkpoint` in bfloat16)
   scores the base model as the bf16-true LoRA run did at step 0.

Exits 1 if a check fails. `--accelerator cpu` runs the same checks on the CPU (DeepSpeed through its CPU
accelerator), to try the script without a GPU; bf16 numerics there are not the GPU's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

STEPS = 6
LOSSES = ("train/loss", "val/domain_loss", "val/general_loss")
SCORES = ("icl/sent/acc@k0", "icl/sent/acc@k2")
# bf16 holds 8 significant bits: a loss near 6 is resolved to 1/32. Equal runs may still differ by a rounding or two
# (kernels chosen per layout); an ICL accuracy by one query's flipped tie in 16 (2 seeds x 8 queries).
LOSS_BOUND = 0.05
SCORE_BOUND = 1 / 16 + 1e-6
WEIGHT_BOUND = 1e-6  # the same weights: an export of them, a resume that replays the same steps
BF16_WEIGHT_BOUND = 1e-2  # weights of two runs in bf16: a few roundings at the weights' magnitude (< 1)


MARKER = ".gpu-checks"  # marks an --out folder this script made: it writes only into such folders or empty ones


def check_out_folder(out: Path) -> None:
    """Refuse an --out that is a file or a folder holding files this script did not write (never replaced); mark
    the folder as ours (a rerun into it goes on from the runs it finished)."""
    if out.exists() and not out.is_dir():
        sys.exit(f"--out {out} is a file: choose a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        sys.exit(f"--out {out} holds files that scripts/gpu_checks.py did not write; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def sentiment_task(queries: str):
    """The ICL task every run scores: review sentiment at k = 0 and 2 with 2 demonstration seeds."""
    from lightning_adapt import ICLTask

    return ICLTask(name="sent", queries=queries, demos="builtin:sentiment/demos.jsonl",
                   template="Review: {text}\nSentiment:", target="label", choices=["Positive", "Negative"],
                   balanced=True, shots=[0, 2], seeds=[0, 1])


def run_training(spec: dict) -> None:
    """One training run (in this process): `spec` names the strategy kind, method, precision, folders and resume."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.strategies import DDPStrategy

    from lightning_adapt import (Accounting, ContinualPretraining, DeepSpeedStrategy, FineTuning, FSDP1Strategy,
                                 FSDP2Strategy, ICLEvaluation, Instructions, LoRA, Optimization, TextCorpus)

    class ScoringDtypes(ICLEvaluation):
        """ICLEvaluation that also records the dtype of the logits it scores (the LM head's outputs)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.dtypes: set[str] = set()

        def _evaluate(self, trainer, pl_module) -> None:
            handle = pl_module.model.lm_head.register_forward_hook(lambda m, i, o: self.dtypes.add(str(o.dtype)))
            try:
                super()._evaluate(trainer, pl_module)
            finally:
                handle.remove()

    kind, method, out = spec["kind"], spec["method"], Path(spec["out"])
    strategies = {"single": lambda: "auto", "ddp": DDPStrategy, "fsdp2": FSDP2Strategy, "fsdp1": FSDP1Strategy,
                  "deepspeed2": lambda: DeepSpeedStrategy(stage=2), "deepspeed3": lambda: DeepSpeedStrategy(stage=3)}
    L.seed_everything(3)
    lora = LoRA(r=4, targets=["query", "value", "mlp"]) if method in ("lora", "nf4") else None
    optimization = Optimization(learning_rate=1e-2 if lora else 1e-3, warmup_steps=1)  # moves bf16 losses in 6 steps
    common = dict(optimization=optimization, max_seq_length=256, general_val="builtin:general_text.txt",
                  general_val_blocks=2, out_dir=out)
    if method == "cpt":
        module = ContinualPretraining(spec["checkpoint"], **common)
        data = TextCorpus("builtin:general_text.txt", documents="paragraph", batch_size=2, val_fraction=0.2)
    else:
        module = FineTuning(spec["checkpoint"], lora=lora, quantize="nf4" if method == "nf4" else None, **common)
        data = Instructions("builtin:sentiment/train.jsonl", val_path="builtin:sentiment/validation.jsonl",
                            instruction_template="Review: {text}\nSentiment:", output_template=" {label}",
                            prompt_style="default", batch_size=2)
    icl = ScoringDtypes([sentiment_task(spec["queries"])], batch_size=4)
    trainer = L.Trainer(accelerator=spec["accelerator"], devices=1, strategy=strategies[kind](),
                        precision=spec["precision"], max_steps=STEPS, val_check_interval=3, limit_val_batches=2,
                        num_sanity_val_steps=0, logger=CSVLogger(out, name="", version=""),
                        callbacks=[icl, Accounting(), ModelCheckpoint(every_n_train_steps=3, save_top_k=-1)],
                        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=out)
    trainer.fit(module, datamodule=data, ckpt_path=spec.get("resume"))
    held = {str(p.dtype) for p in module.model.parameters() if p.is_floating_point() and p.requires_grad}
    (out / "dtypes.json").write_text(json.dumps({"scoring": sorted(icl.dtypes), "trainable": sorted(held)}))


def metrics(run: Path) -> dict[str, dict[int, float]]:
    """Every logged metric of a run, by name and step (the report's reader)."""
    from lightning_adapt.verdict.run import load_run

    return load_run(run).metrics


class Checks:
    """Runs the training processes and collects one PASS/FAIL line per check."""

    def __init__(self, out: Path, accelerator: str, checkpoint: Path, queries: Path) -> None:
        self.out, self.accelerator, self.checkpoint, self.queries = out, accelerator, checkpoint, queries
        self.lines: list[str] = []
        self.failed = 0

    def train(self, kind: str, method: str, precision: str, resume: Path | None = None) -> Path | None:
        """The run's folder, trained once per (kind, method, precision, resume); None if its process failed."""
        name = f"{kind}-{method}-{precision}" + ("-resumed" if resume else "")
        out = self.out / name
        if not (out / "dtypes.json").exists():
            spec = dict(kind=kind, method=method, precision=precision, out=str(out), checkpoint=str(self.checkpoint),
                        queries=str(self.queries), accelerator=self.accelerator, resume=resume and str(resume))
            env = {**os.environ, "DS_ACCELERATOR": "cpu"} if self.accelerator == "cpu" else os.environ
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.txt", "w") as log:
                command = [sys.executable, __file__, "--out", str(out), "--_run", json.dumps(spec)]
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            if done.returncode != 0:
                self.check(f"{name} runs", False, f"exit code {done.returncode}; see {out / 'log.txt'}")
                return None
        return out

    def check(self, what: str, ok: bool, measured: str) -> None:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {what}: {measured}")
        self.failed += not ok
        print(self.lines[-1], flush=True)

    def same_timeline(self, what: str, run: Path, reference: Path, steps: range = range(STEPS + 1)) -> None:
        found, expected = metrics(run), metrics(reference)
        for names, bound in ((LOSSES, LOSS_BOUND), (SCORES, SCORE_BOUND)):
            pairs = [(found[n].get(s), expected[n][s]) for n in names for s in expected[n] if s in steps]
            missing = sum(a is None for a, _ in pairs)
            worst = max((abs(a - b) for a, b in pairs if a is not None), default=math.nan)
            self.check(f"{what}: {'losses' if names is LOSSES else 'ICL accuracies'}", not missing and worst <= bound,
                       f"max |difference| {worst:.4g} over {len(pairs)} values (bound {bound:.3g})"
                       + (f", {missing} missing" if missing else ""))

    def trains(self, what: str, run: Path, dtype: str) -> None:
        found = metrics(run)
        finite = all(math.isfinite(v) for n in LOSSES for v in found[n].values())
        first, last = found["val/domain_loss"][0], found["val/domain_loss"][STEPS]
        self.check(f"{what}: trains", finite and last < first,
                   f"val/domain_loss {first:.4f} -> {last:.4f}, every loss finite: {finite}")
        dtypes = json.loads((run / "dtypes.json").read_text())
        self.check(f"{what}: dtypes", dtypes["scoring"] == ["torch.bfloat16"] and dtypes["trainable"] == [dtype],
                   f"ICL logits {dtypes['scoring']}, trainable weights {dtypes['trainable']} (expected {dtype})")

    def same_weights(self, what: str, a: Path, b: Path, bound: float = WEIGHT_BOUND) -> None:
        first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        first, second = first.get("model", first), second.get("model", second)
        worst = max(((x.float() - second[n].float()).abs().max().item() for n, x in first.items() if n in second),
                    default=math.nan)
        dtypes = sorted({str(x.dtype) for x in [*first.values(), *second.values()]})
        self.check(what, first.keys() == second.keys() and worst <= bound,
                   f"{len(first)} tensors ({', '.join(dtypes)}), same names: {first.keys() == second.keys()}, "
                   f"max |difference| {worst:.3g} (bound {bound:.3g})")

    def sharded(self) -> None:
        for method in ("lora", "nf4"):
            ddp = self.train("ddp", method, "bf16-true")  # unsharded, with the same (distributed) sampler
            for kind in ("fsdp2", "fsdp1"):
                run = self.train(kind, method, "bf16-true")
                if ddp and run:
                    what = f"{kind} {method} bf16-true at world size 1 vs DDP"
                    self.same_timeline(what, run, ddp)
                    self.same_weights(f"{what}: final/", run / "final" / "lit_model.pth",
                                      ddp / "final" / "lit_model.pth", BF16_WEIGHT_BOUND)

    def deepspeed(self) -> None:
        from lightning_adapt.cli import main as cli

        for kind, method in (("deepspeed2", "lora"), ("deepspeed3", "lora"), ("deepspeed3", "full")):
            what = f"{kind} {method} bf16-true"
            run = self.train(kind, method, "bf16-true")
            if run is None:
                continue
            self.trains(what, run, "torch.bfloat16")
            folder = run / "checkpoints" / f"epoch=0-step={STEPS}.ckpt"
            held, frozen = set(), 0  # DeepSpeed's own files: its module entries and frozen fragments
            for states in folder.glob("checkpoint/*model_states.pt"):
                entry = torch.load(states, weights_only=True)
                held |= set(entry["module"])
                frozen += len(entry.get("frozen_param_fragments") or {})
            trainable_only = bool(held) and not frozen and (method == "full" or all("lora_" in n for n in held))
            self.check(f"{what}: checkpoint holds the trainable weights only", trainable_only,
                       f"{len(held)} module tensors, {frozen} frozen fragments in {folder.name}")
            exported = run / "exported"
            cli(["export", str(folder), "--out_dir", str(exported)])
            self.same_weights(f"{what}: export of the checkpoint folder == final/", exported / "lit_model.pth",
                              run / "final" / "lit_model.pth")
            resumed = self.train(kind, method, "bf16-true", resume=run / "checkpoints" / "epoch=0-step=3.ckpt")
            if resumed:
                self.same_timeline(f"{what}: resumed from step 3 vs straight", resumed, run, range(4, STEPS + 1))
                self.same_weights(f"{what}: resumed final/ == straight final/", resumed / "final" / "lit_model.pth",
                                  run / "final" / "lit_model.pth")

    def precisions(self) -> None:
        from lightning_adapt import evaluate_checkpoint

        for precision, dtype in (("bf16-true", "torch.bfloat16"), ("bf16-mixed", "torch.float32")):
            for method in ("lora", "full", "nf4", "cpt"):
                run = self.train("single", method, precision)
                if run:
                    self.trains(f"single {method} {precision}", run, dtype)
        run = self.train("single", "lora", "bf16-true")
        if run:
            device = "cuda" if self.accelerator == "cuda" else "cpu"
            alone = evaluate_checkpoint(self.checkpoint, [sentiment_task(str(self.queries))], device=device,
                                        dtype="bfloat16", progress=False)
            step0 = {name: values[0] for name, values in metrics(run).items() if name in SCORES}
            scores = {name: alone.metrics()[name] for name in step0}
            same = scores.keys() == set(SCORES) and all(abs(scores[n] - step0[n]) < 1e-9 for n in scores)
            self.check("ICL alone in bfloat16 == the bf16-true run's step-0 scores", same,
                       f"{scores} vs {step0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and checks.txt")
    parser.add_argument("--accelerator", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--only", nargs="+", choices=("sharded", "deepspeed", "precisions"),
                        default=["sharded", "deepspeed", "precisions"])
    parser.add_argument("--_run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._run:
        return run_training(json.loads(args._run))

    if args.accelerator == "cuda" and not torch.cuda.is_available():
        sys.exit("No CUDA device: run on a GPU machine, or try the checks on the CPU with --accelerator cpu")
    check_out_folder(args.out)
    from lightning_adapt.data.records import read_records
    from lightning_adapt.testing import make_tiny_checkpoint, tiny_biased_config

    checkpoint = args.out / "tiny-neox"
    if not (checkpoint / "lit_model.pth").exists():
        make_tiny_checkpoint(checkpoint, config=tiny_biased_config(block_size=512))
    queries = args.out / "queries.jsonl"
    queries.write_text("".join(json.dumps(r.data) + "\n" for r in read_records("builtin:sentiment/test.jsonl")[:8]))
    device = torch.cuda.get_device_name() if args.accelerator == "cuda" else "CPU"
    header = f"device: {device}, torch {torch.__version__}"
    print(header, flush=True)
    checks = Checks(args.out, args.accelerator, checkpoint, queries)
    for part in args.only:
        getattr(checks, part)()
    (args.out / "checks.txt").write_text("\n".join([header, *checks.lines]) + "\n")
    print(f"{len(checks.lines) - checks.failed} passed, {checks.failed} failed")
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
