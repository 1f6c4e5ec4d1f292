"""`lightning-adapt compare`: ICL, fine-tuning and continual pretraining of one base model, each run measured the same
way (ICLEvaluation + Accounting), then one report. `lightning-adapt report RUN_DIR...` builds it from separate runs."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.data.instructions import Instructions
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.lora import LoRA
from lightning_adapt.methods import ContinualPretraining, FineTuning, Optimization, Rewarming
from lightning_adapt.methods.cpt import GENERAL_TEXT
from lightning_adapt.quantize import check_quantize
from lightning_adapt.report import ANSWER_TOKENS, MARGIN, METRIC
from lightning_adapt.sharding import is_launch_rank_zero

if TYPE_CHECKING:
    from lightning_adapt.report import Run

set_parsing_settings(docstring_parse_attribute_docstrings=True)

Method = Literal["icl", "finetune", "cpt", "cpt+finetune"]
CONTROLLED_TRAINER_FLAGS = ("max_steps", "max_epochs", "val_check_interval", "callbacks", "logger", "default_root_dir")


@dataclass
class FineTuneSettings:
    """The fine-tuning run (and the fine-tuning half of CPT→FT)."""

    data: Instructions
    """Instruction data (path, template, fields, batch size)."""
    lora: LoRA | None = field(default_factory=LoRA)
    """LoRA adapters to train; null trains every weight (full fine-tuning)."""
    quantize: str | None = None
    """Quantize the frozen base weights (QLoRA: nf4, nf4-dq, fp4, fp4-dq, int8); needs `lora`."""
    max_steps: int = 60
    """Training budget in optimizer steps."""
    val_check_interval: int = 20
    """Validate (held-out losses + ICL evaluation) every this many steps; must divide max_steps."""
    optimization: Optimization = field(default_factory=Optimization)
    """The optimizer, learning-rate schedule and gradient clipping (FineTuning's defaults)."""
    max_seq_length: int | None = None
    """Truncate training sequences to this many tokens (default: the model's context)."""

    @property
    def name(self) -> str:
        return "full" if self.lora is None else "qlora" if self.quantize else "lora"


@dataclass
class CPTSettings:
    """The continual-pretraining run."""

    data: TextCorpus
    """Raw domain text (with `replay` of general text against forgetting)."""
    lora: LoRA | None = None
    """LoRA adapters for LoRA-CPT; null trains every weight."""
    quantize: str | None = None
    """Quantize the frozen base weights (QLoRA-CPT: nf4, nf4-dq, fp4, fp4-dq, int8); needs `lora`."""
    max_steps: int = 40
    """Training budget in optimizer steps."""
    val_check_interval: int = 10
    """Validate (held-out losses + ICL evaluation) every this many steps; must divide max_steps."""
    optimization: Optimization = field(default_factory=Rewarming)
    """The optimizer, re-warmed learning-rate schedule and gradient clipping (ContinualPretraining's defaults)."""
    max_seq_length: int | None = None
    """Tokens per packed training block (default: the model's context)."""

    @property
    def name(self) -> str:
        return "cpt" if self.lora is None else "cpt-qlora" if self.quantize else "cpt-lora"


@dataclass
class Biographies:
    """Write the synthetic biography corpus (lightning_adapt.data.biographies) before the runs."""

    out_dir: str = "data/biographies"
    """Folder for corpus/, heldout/, probe.jsonl and people.jsonl (rewritten on every compare, deterministically)."""
    n_people: int = 100
    """Fictional people."""
    paraphrases: int = 3
    """Training biographies per person."""
    heldout_paraphrases: int = 1
    """Further biographies per person, never trained on (domain validation text)."""
    seed: int = 0
    """Seed of the people and their wording."""


@dataclass
class Compare:
    """One base model, three ways to adapt it, each run measured the same way, one report."""

    checkpoint_dir: Path
    """The base LitGPT checkpoint folder (the built-in SmolLM2 folder is made offline on first use)."""
    tasks: list[TaskSpec]
    """ICL tasks, evaluated k-shot on the base model and 0-shot on every trained run at every validation."""
    out_dir: Path = Path("out/compare")
    """Where runs/<method>/ and report/ are written."""
    methods: list[Method] = field(default_factory=lambda: ["icl", "finetune", "cpt"])
    """Runs, in order; cpt+finetune fine-tunes the CPT run's result (CPT→FT) and needs cpt listed."""
    finetune: FineTuneSettings | None = None
    """Fine-tuning settings (needed by finetune and cpt+finetune)."""
    cpt: CPTSettings | None = None
    """Continual-pretraining settings (needed by cpt and cpt+finetune)."""
    general_val: str | None = GENERAL_TEXT
    """General text whose held-out loss shows forgetting in every trained run; null: none."""
    general_tasks: list[TaskSpec | str] = field(default_factory=list)
    """General-ability tasks scored on every trained run at step 0 and every validation, shown as forgetting beside
    the general-text loss (not compared between methods): lm-eval task names (``arc_easy``, ``hellaswag``), task
    YAML paths, ``LMEvalTask``s (``task: ...`` with shots, limit ...) or ``ICLTask``s; each at its own shots and
    seeds."""
    general_val_blocks: int = 4
    """Blocks of general text evaluated at every validation."""
    train_shots: list[int] = field(default_factory=lambda: [0])
    """Shots evaluated on trained runs (the ICL run uses each task's own shots and seeds)."""
    train_seeds: list[int] = field(default_factory=lambda: [0])
    """Demonstration seeds evaluated on trained runs."""
    icl_batch_size: int = 16
    """Sequences per forward pass in ICL evaluation."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Lightning Trainer flags applied to every run (accelerator, devices, strategy, precision, limit_val_batches ...)."""
    seed: int = 42
    """Seed set before every run."""
    export: bool = True
    """Write each trained run's final/ LitGPT checkpoint (CPT always exports when cpt+finetune runs)."""
    metric: str | dict[str, str] = METRIC
    """ICL metric scoring every task, or task -> metric (unlisted tasks: acc)."""
    answer_tokens: float = ANSWER_TOKENS
    """Tokens in a query's answer, for inference FLOPs (1: a label decided by its first token)."""
    margin: float = MARGIN
    """A costlier method must beat a cheaper one by more than this (or ICL's std across seeds) to be recommended."""
    biographies: Biographies | None = None
    """Write the synthetic biography corpus first (the demo's CPT data and knowledge probe)."""

    def __post_init__(self) -> None:
        self.checkpoint_dir, self.out_dir = Path(self.checkpoint_dir), Path(self.out_dir)
        if not self.methods:
            raise ValueError("Compare(methods=[]): list at least one of icl, finetune, cpt, cpt+finetune.")
        repeated = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if repeated:
            raise ValueError(f"Compare(methods={self.methods}): {repeated} listed twice; each method runs once.")
        if "cpt+finetune" in self.methods and "cpt" not in self.methods:
            raise ValueError("Compare: cpt+finetune fine-tunes the cpt run's result, so list cpt too (before it).")
        for section, users in (("finetune", ("finetune", "cpt+finetune")), ("cpt", ("cpt", "cpt+finetune"))):
            listed = [m for m in users if m in self.methods]
            if listed and getattr(self, section) is None:
                raise ValueError(f"Compare: method(s) {listed} need the `{section}` settings.")
        for section in ("finetune", "cpt"):
            settings = getattr(self, section)
            if settings is None:
                continue
            if settings.max_steps < 1 or settings.val_check_interval < 1:
                raise ValueError(
                    f"Compare.{section}: max_steps={settings.max_steps} and val_check_interval="
                    f"{settings.val_check_interval} must be at least 1 (a budget of zero trains nothing)."
                )
            try:
                check_quantize(settings.quantize, settings.lora)
            except ValueError as error:
                raise ValueError(f"Compare.{section}: {error}") from None
            if settings.max_steps % settings.val_check_interval:
                raise ValueError(
                    f"Compare.{section}: val_check_interval={settings.val_check_interval} must divide max_steps="
                    f"{settings.max_steps}, so that the final weights are evaluated."
                )
        controlled = sorted(set(self.trainer) & set(CONTROLLED_TRAINER_FLAGS))
        if controlled:
            raise ValueError(
                f"Compare.trainer sets {controlled}, which compare controls: set budgets in finetune/cpt "
                "(max_steps, val_check_interval); runs log to out_dir/runs/<method>."
            )
        self.general_tasks = [LMEvalTask(task) if isinstance(task, str) else task for task in self.general_tasks]
        clash = sorted({task.name for task in self.tasks} & {task.name for task in self.general_tasks})
        if clash:
            raise ValueError(f"Compare: {clash} named both in tasks and general_tasks; a task is one or the other.")
        if not self.train_shots or not self.train_seeds:
            raise ValueError("Compare: train_shots and train_seeds must not be empty.")


def run_name(compare: Compare, method: str) -> str:
    """The run's name in reports and under out_dir/runs/: icl, lora / full / qlora, cpt / cpt-lora, cpt+lora ..."""
    if method == "icl":
        return "icl"
    if method == "cpt":
        return compare.cpt.name
    return compare.finetune.name if method == "finetune" else f"cpt+{compare.finetune.name}"


def _say(message: str) -> None:
    print(f"[compare] {message}", flush=True)


# --- the runs ------------------------------------------------------------------------------------------------------


def run_icl(compare: Compare, tasks: list[TaskSpec], run_dir: Path) -> Path:
    """The ICL-only run: every task's shots and seeds scored on the base model (the step-0 points), no training,
    recorded by `record_evaluation` as `Accounting` records the training runs."""
    import torch

    from lightning_adapt.accounting import record_evaluation
    from lightning_adapt.icl.evaluate import evaluate_checkpoint
    from lightning_adapt.model import check_checkpoint_dir, load_config
    from lightning_adapt.runs import run_info

    checkpoint_dir = check_checkpoint_dir(compare.checkpoint_dir)
    accelerator = str(compare.trainer.get("accelerator", "auto"))
    device = torch.device("cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    precision = str(compare.trainer.get("precision", "32-true"))
    dtype = {"bf16-true": "bfloat16", "16-true": "float16"}.get(precision, "float32")
    info = run_info("icl", None, load_config(checkpoint_dir), checkpoint_dir, tasks, device=str(device), dtype=dtype)

    def evaluate() -> dict[str, float]:
        return evaluate_checkpoint(checkpoint_dir, tasks, batch_size=compare.icl_batch_size, device=str(device),
                                   dtype=dtype).metrics()

    return record_evaluation(run_dir, evaluate, info, device)


def run_training(compare: Compare, method: str, tasks: list[TaskSpec], run_dir: Path, checkpoint_dir: Path) -> Path:
    """One training run (fine-tuning or CPT) with the same ICLEvaluation and Accounting callbacks as every other."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lightning_adapt.accounting import Accounting
    from lightning_adapt.icl.callback import ICLEvaluation

    cpt = method == "cpt"
    settings = compare.cpt if cpt else compare.finetune
    L.seed_everything(compare.seed, verbose=False)
    module_class = ContinualPretraining if cpt else FineTuning
    module = module_class(
        checkpoint_dir, lora=settings.lora, quantize=settings.quantize, optimization=settings.optimization,
        max_seq_length=settings.max_seq_length, general_val=compare.general_val,
        general_val_blocks=compare.general_val_blocks, out_dir=run_dir,
        export=compare.export or (cpt and "cpt+finetune" in compare.methods),
    )
    icl = [ICLEvaluation(tasks, shots=compare.train_shots, seeds=compare.train_seeds, batch_size=compare.icl_batch_size)]
    if compare.general_tasks:
        icl.append(ICLEvaluation(compare.general_tasks, batch_size=compare.icl_batch_size, general=True))
    flags = {"log_every_n_steps": 1, "enable_checkpointing": False, "enable_model_summary": False,
             "num_sanity_val_steps": 0} | compare.trainer
    logger = CSVLogger(run_dir, name="logs")
    trainer = L.Trainer(
        **flags, max_steps=settings.max_steps, val_check_interval=settings.val_check_interval,
        check_val_every_n_epoch=None, callbacks=[*icl, Accounting(run_name(compare, method))], logger=logger, default_root_dir=run_dir,
    )
    trainer.fit(module, datamodule=replace(settings.data))
    return Path(logger.log_dir)


def run_compare(compare: Compare) -> Path:
    """Run every listed method in its own run directory under `out_dir/runs/`, then write `out_dir/report/`.

    With several processes (`trainer: {devices: 2, strategy: fsdp2}`, or a launcher such as torchrun) every process
    takes part in every training run; only global rank 0 writes the biographies, runs the ICL-only evaluation,
    prints and writes the report (the others return `out_dir/report` without writing it)."""
    from lightning_adapt.data.biographies import write_biography_corpus
    from lightning_adapt.model import resolve_checkpoint_dir
    from lightning_adapt.report import load_run, report_data, write_report

    settings = _plain(compare)
    resolve_checkpoint_dir(compare.checkpoint_dir)
    writer = is_launch_rank_zero()
    if compare.biographies is not None and writer:
        b = compare.biographies
        write_biography_corpus(b.out_dir, b.n_people, b.paraphrases, b.seed, b.heldout_paraphrases)
    tasks = compare.tasks
    runs_dir = compare.out_dir / "runs"
    runs = []
    for method in compare.methods:
        start = time.perf_counter()
        if method == "icl":
            if not writer:
                continue
            log_dir = run_icl(compare, tasks, runs_dir / "icl")
        else:
            base = runs_dir / compare.cpt.name / "final" if method == "cpt+finetune" else compare.checkpoint_dir
            log_dir = run_training(compare, method, tasks, runs_dir / run_name(compare, method), base)
        if writer:
            runs.append(load_run(log_dir))
            _say(_phase_line(method, runs[-1], time.perf_counter() - start))
    if not writer:
        return compare.out_dir / "report"
    report = report_data(runs, compare.metric, compare.answer_tokens, compare.margin, extra={"compare": settings})
    out = write_report(report, compare.out_dir / "report", [run.log_dir for run in runs], overwrite=True,
                       overwrite_hint="overwrite=True")
    _say(f"report: {out / 'report.md'}")
    for line in recommendation_lines(report):
        _say(line)
    return out


def _plain(compare: Compare) -> dict[str, Any]:
    """The configuration as plain data, for report.json."""
    return json.loads(json.dumps(asdict(compare), default=str))


def _phase_line(method: str, run: Run, seconds: float) -> str:
    """One line per phase: what ran, its budget and its last scores."""
    from lightning_adapt.icl.keys import PROMPT_TOKENS, parse_icl_key

    scores = ", ".join(
        f"{icl.task}/{icl.metric}@k{icl.k} {values[max(values)]:.3f}"
        for key, values in sorted(run.metrics.items())
        if (icl := parse_icl_key(key)) and icl.k is not None and not icl.std and icl.metric != PROMPT_TOKENS
    )
    if not run.trains:
        return f"{method}: base model evaluated in {seconds:.1f} s — {scores}"
    return (f"{run.method}: {run.last('train/tokens', 0):,.0f} tokens, {run.last('flops/train', 0):.3g} FLOPs, "
            f"{seconds:.1f} s — last evaluation: {scores}")


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """The recommendation and break-even count per task, one line each (from the data of report.json)."""
    from lightning_adapt.report_plots import verdict

    return [verdict(name, task) for name, task in report["tasks"].items()]


# --- commands ------------------------------------------------------------------------------------------------------


def compare_parser() -> ArgumentParser:
    """The `lightning-adapt compare` parser: a Compare config (YAML via --config), any key overridable."""
    parser = ArgumentParser(prog="lightning-adapt compare", description=Compare.__doc__)
    parser.add_argument(
        "--config", action=ActionConfigFile,
        help="A compare YAML (default: the shipped configs/compare/demo.yaml; --quick: configs/compare/quick.yaml).",
    )
    parser.add_argument("--quick", action="store_true", help="Run the 3-minute profile (configs/compare/quick.yaml).")
    parser.add_class_arguments(Compare, nested_key=None, fail_untyped=True)
    return parser


def parse_compare(args: list[str]) -> Compare:
    """Parse and validate command-line arguments into a `Compare`."""
    parser = compare_parser()
    config = parser.instantiate_classes(parser.parse_args(args)).as_dict()
    config.pop("config", None)
    config.pop("quick", None)
    return Compare(**config)


PROFILES = Path(__file__).parent / "configs" / "compare"
"""The shipped compare configs: `demo.yaml` (the default) and `quick.yaml` (`--quick`)."""


def with_profile(args: list[str]) -> list[str]:
    """`args` led by the shipped demo config unless they name a --config; `--quick` picks the quick profile."""
    quick = "--quick" in args
    args = [arg for arg in args if arg != "--quick"]
    if quick or not any(arg == "--config" or arg.startswith("--config=") for arg in args):
        args = ["--config", str(PROFILES / ("quick.yaml" if quick else "demo.yaml")), *args]
    return args


def compare_command(args: list[str]) -> None:
    """Run ICL, fine-tuning and CPT on one base model and write the comparison report.

    `lightning-adapt compare` runs the shipped demo (configs/compare/demo.yaml), `--quick` its 3-minute profile,
    `--config FILE` any comparison; further `--key value` arguments override the config.
    """
    run_compare(parse_compare(with_profile(args)))


def report_command(args: list[str]) -> None:
    """Build the comparison report from runs launched separately: `report RUN_DIR... --out_dir DIR`."""
    from lightning_adapt.report import build_report, report_with_data

    parser = ArgumentParser(prog="lightning-adapt report", description=report_command.__doc__)
    parser.add_argument("--config", action=ActionConfigFile, help="A YAML with these keys.")
    parser.add_argument("run_dirs", type=Path, nargs="+", help="Run directories (each with accounting.json and metrics.csv).")
    parser.add_function_arguments(build_report, skip={"run_dirs", "extra", "overwrite_hint"}, as_positional=False)
    parsed = parser.parse_args(args)
    out, report = report_with_data(parsed.run_dirs, parsed.out_dir, parsed.metric, parsed.answer_tokens, parsed.margin,
                                   overwrite=parsed.overwrite, overwrite_hint="--overwrite true")
    print(f"Wrote {out / 'report.md'}")
    for line in recommendation_lines(report):
        print(line)
