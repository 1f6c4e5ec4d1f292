"""`lightning-adapt compare`: ICL, fine-tuning and continual pretraining of one base model, each run measured the same
way (ICLEvaluation + Accounting), then one report. `lightning-adapt report RUN_DIR...` builds it from separate runs."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from lightning_adapt.core.atomic import check_output_dir
from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.data.instructions import Instructions
from lightning_adapt.data.records import DataError
from lightning_adapt.formats.export import ExportSettings, export_settings
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.techniques.lora import LoRA
from lightning_adapt.methods import ContinualPretraining, FineTuning, Optimization, Rewarming
from lightning_adapt.methods.cpt import GENERAL_TEXT
from lightning_adapt.model.quantize import check_quantize
from lightning_adapt.verdict.report import ANSWER_TOKENS, MARGIN, METRIC
from lightning_adapt.distributed.sharding import is_launch_rank_zero

if TYPE_CHECKING:
    from lightning_adapt.verdict.report import Run

set_parsing_settings(docstring_parse_attribute_docstrings=True)

METHODS = ("icl", "finetune", "cpt", "cpt+finetune")
"""What `Compare.methods` lists (a plain `list[str]`, checked here: jsonargparse 4.41 refuses a value outside a
`Literal` of strings as "Cannot take a Union of no types")."""
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
    name: str | None = None
    """The run's name in the report and under out_dir/runs/ (default: lora, qlora or full)."""

    @property
    def run_name(self) -> str:
        return self.name or ("full" if self.lora is None else "qlora" if self.quantize else "lora")


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
    name: str | None = None
    """The run's name in the report and under out_dir/runs/ (default: cpt, cpt-lora or cpt-qlora)."""

    @property
    def run_name(self) -> str:
        return self.name or ("cpt" if self.lora is None else "cpt-qlora" if self.quantize else "cpt-lora")


@dataclass
class SweepSizes:
    """A data-size sweep of one trained run: one run per size, each on a seeded subset of the run's training data,
    nested (the 16 examples are among the 64), every size with the run's own budget of optimizer steps."""

    examples: list[int] | None = None
    """Training examples per run (fine-tuning runs: `Instructions.max_examples`), increasing."""
    tokens: list[int] | None = None
    """Training tokens per run (CPT runs: `TextCorpus.max_tokens`), increasing."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Subset seeds: each draws its own nested subsets (and offsets the training seed), for error bars over seeds."""


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a comparison, as `run_compare` will launch it."""

    name: str
    """Its name in the report and its folder under out_dir/runs/."""
    method: Literal["finetune", "cpt", "cpt+finetune"]
    settings: FineTuneSettings | CPTSettings
    """Its settings, the data subset of a sweep size applied."""
    seed: int
    """Seed set before the run."""
    base: str | None = None
    """The run whose final/ checkpoint it starts from (CPT→FT); None: the base model."""
    sweep: dict[str, Any] | None = None
    """For a sweep size: {"of": the swept run's name, "examples" or "tokens": the size, "seed": the subset seed}."""

    @property
    def cpt(self) -> bool:
        return self.method == "cpt"


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
    methods: list[str] = field(default_factory=lambda: ["icl", "finetune", "cpt"])
    """Runs, in order, among icl, finetune, cpt and cpt+finetune; cpt+finetune fine-tunes the CPT run's result (CPT→FT)
    and needs cpt listed."""
    finetune: FineTuneSettings | list[FineTuneSettings] | None = None
    """Fine-tuning settings (needed by finetune and cpt+finetune), or a list of variants run side by side (e.g. LoRA,
    QLoRA with `quantize: nf4`, full fine-tuning with `lora: null`), each with its own `name`."""
    cpt: CPTSettings | list[CPTSettings] | None = None
    """Continual-pretraining settings (needed by cpt and cpt+finetune), or a list of variants (e.g. full and LoRA
    CPT). cpt+finetune fine-tunes the first CPT run's result with the first fine-tuning settings."""
    sweep: dict[str, SweepSizes] = field(default_factory=dict)
    """Data-size sweeps: a trained run's name (lora, full, cpt ...) or a method (finetune, cpt: all its runs) ->
    sizes, e.g. ``{finetune: {examples: [8, 32, 128]}, cpt: {tokens: [50000, 200000]}}``. Each size replaces the
    run by one run named ``<run>-n<examples>`` / ``<run>-t<tokens>`` (``-s<seed>`` with several seeds)."""
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
    export: bool | ExportSettings = True
    """What each trained run writes when it ends: True its final/ LitGPT checkpoint, `{formats: [litgpt, hf, gguf]}`
    also final-hf/ and final-gguf/ (see `ExportSettings`), False nothing; a CPT run that cpt+finetune continues
    always writes final/."""
    metric: str | dict[str, str] = METRIC
    """ICL metric scoring every task, or task -> metric (unlisted tasks: acc)."""
    answer_tokens: float = ANSWER_TOKENS
    """Tokens in a query's answer, for inference FLOPs (1: a label decided by its first token)."""
    margin: float = MARGIN
    """A costlier method must beat a cheaper one by more than this (or ICL's std across seeds) to be recommended."""
    biographies: Biographies | None = None
    """Write the synthetic biography corpus first (the demo's CPT data and knowledge probe)."""
    estimate: bool = True
    """Estimate every training run just before it starts (a probe of 2 warm-up + 3 timed real steps, see
    `lightning-adapt estimate`; one process only), keep it in the run's accounting.json, and show predicted vs
    measured in the report."""

    def __post_init__(self) -> None:
        self.checkpoint_dir, self.out_dir = Path(self.checkpoint_dir), Path(self.out_dir)
        if not self.methods:
            raise ValueError(f"Compare(methods=[]): list at least one of {', '.join(METHODS)}.")
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown:
            raise ValueError(f"Compare.methods: unknown method(s) {unknown}; the methods are {', '.join(METHODS)}.")
        repeated = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if repeated:
            raise ValueError(
                f"Compare(methods={self.methods}): {repeated} listed twice; each method runs once (list variants of a "
                "method under its settings, e.g. `finetune: [{name: lora, ...}, {name: full, lora: null, ...}]`)."
            )
        if "cpt+finetune" in self.methods and "cpt" not in self.methods:
            raise ValueError("Compare: cpt+finetune fine-tunes the cpt run's result, so list cpt too (before it).")
        for section, users in (("finetune", ("finetune", "cpt+finetune")), ("cpt", ("cpt", "cpt+finetune"))):
            settings = getattr(self, section)
            if isinstance(settings, list) and not settings:
                raise ValueError(f"Compare.{section} is an empty list: give settings, or leave it out.")
            listed = [m for m in users if m in self.methods]
            if listed and settings is None:
                raise ValueError(f"Compare: method(s) {listed} need the `{section}` settings.")
        for section in ("finetune", "cpt"):
            for index, settings in enumerate(self.variants(section)):
                check_budget(f"Compare.{section}" + (f"[{index}]" if isinstance(getattr(self, section), list) else ""),
                             settings)
        check_sweep(self)
        names = [settings.run_name for section in ("finetune", "cpt") for settings in self.variants(section)]
        planned = [run.name for run in planned_runs(self)]
        clashing = sorted({name for group in (names, planned) for name in group if group.count(name) > 1}
                          | ({"icl"} & set(names + planned)))
        if clashing:
            raise ValueError(
                f"Compare: run name(s) {clashing} given to more than one run (or 'icl', the ICL-only run's name); give "
                "each fine-tuning / CPT variant its own `name`."
            )
        odd = sorted({name for name in names + planned if not re.fullmatch(r"[\w.+-]+", name)})
        if odd:
            raise ValueError(f"Compare: run name(s) {odd} must be folder names: letters, digits and . _ + - only.")
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
        formats = export_settings(self.export).formats if self.export else []
        full = sorted(run.name for run in planned_runs(self) if run.settings.lora is None)
        if "peft" in formats and full:
            raise ValueError(f"Compare.export: formats has peft, a LoRA adapter, but run(s) {full} train every weight; "
                             "remove peft (hf holds every run's whole model).")

    def variants(self, section: Literal["finetune", "cpt"]) -> list[FineTuneSettings] | list[CPTSettings]:
        """The fine-tuning or CPT settings as a list (one entry unless variants are listed; none when unset)."""
        settings = getattr(self, section)
        return [] if settings is None else settings if isinstance(settings, list) else [settings]


def check_budget(where: str, settings: FineTuneSettings | CPTSettings) -> None:
    """Refuse a budget of zero, a validation interval that misses the final weights and QLoRA without LoRA."""
    if settings.max_steps < 1 or settings.val_check_interval < 1:
        raise ValueError(
            f"{where}: max_steps={settings.max_steps} and val_check_interval={settings.val_check_interval} must be at "
            "least 1 (a budget of zero trains nothing)."
        )
    try:
        check_quantize(settings.quantize, settings.lora)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if settings.max_steps % settings.val_check_interval:
        raise ValueError(
            f"{where}: val_check_interval={settings.val_check_interval} must divide max_steps={settings.max_steps}, "
            "so that the final weights are evaluated."
        )


def check_sweep(compare: Compare) -> None:
    """Refuse sweeps of runs that are not planned, sizes that do not increase, and a size of the wrong kind."""
    runs = {settings.run_name: section for section in ("finetune", "cpt") if section in compare.methods
            for settings in compare.variants(section)}
    unit = {"finetune": "examples", "cpt": "tokens"}
    for key, sizes in compare.sweep.items():
        section = runs.get(key) or (key if key in unit and key in compare.methods else None)
        if section is None:
            raise ValueError(
                f"Compare.sweep names '{key}', which is neither a planned run ({', '.join(runs) or 'none'}) nor a "
                "listed method (finetune, cpt)."
            )
        if key in unit and any(runs[name] == key and name != key and name in compare.sweep for name in runs):
            raise ValueError(f"Compare.sweep names both '{key}' and one of its runs; sweep each run once.")
        wanted, other = unit[section], unit["cpt" if section == "finetune" else "finetune"]
        values = getattr(sizes, wanted)
        if getattr(sizes, other) is not None:
            raise ValueError(
                f"Compare.sweep.{key}: {section} runs are swept by `{wanted}` (a list of sizes), not `{other}`."
            )
        if not values:
            raise ValueError(
                f"Compare.sweep.{key}.{wanted} is {'empty' if values == [] else 'not given'}: list the sizes to train "
                f"on, increasing (e.g. {wanted}: [16, 64, 256]), or remove {key} from sweep."
            )
        if any(v < 1 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"Compare.sweep.{key}.{wanted}={values}: sizes must be positive and increasing.")
        if not sizes.seeds or len(set(sizes.seeds)) < len(sizes.seeds):
            raise ValueError(f"Compare.sweep.{key}.seeds={sizes.seeds}: give one or more different seeds.")
    if "cpt+finetune" in compare.methods and _sweep_of(compare, compare.variants("cpt")[0].run_name, "cpt"):
        raise ValueError(
            "Compare: cpt+finetune fine-tunes the first CPT run's result, which is swept; sweep another CPT variant "
            "or drop cpt+finetune."
        )


def _sweep_of(compare: Compare, name: str, method: str) -> SweepSizes | None:
    return compare.sweep.get(name) or compare.sweep.get(method)


def planned_runs(compare: Compare) -> list[PlannedRun]:
    """The training runs `run_compare` launches, in order: each fine-tuning and CPT variant (one run per size and
    seed when swept), and CPT→FT. Every size of a sweep trains for the run's `max_steps` optimizer steps (small
    subsets see more epochs): the same number of updates and the same learning-rate schedule for every size, so the
    curve shows what more data buys at equal training compute."""
    planned = []
    for method in compare.methods:
        if method == "cpt+finetune":
            first_cpt, first_ft = compare.variants("cpt")[0], compare.variants("finetune")[0]
            planned.append(PlannedRun(f"{first_cpt.run_name}+{first_ft.run_name}", method, first_ft, compare.seed,
                                      base=first_cpt.run_name))
        elif method != "icl":
            planned += [run for settings in compare.variants(method) for run in _sized(compare, method, settings)]
    return planned


def _sized(compare: Compare, method: Literal["finetune", "cpt"], settings: FineTuneSettings | CPTSettings
           ) -> list[PlannedRun]:
    """The run of `settings`, or one run per size and seed of its sweep."""
    sweep = _sweep_of(compare, settings.run_name, method)
    if sweep is None:
        return [PlannedRun(settings.run_name, method, settings, compare.seed)]
    unit, field_name, tag = ("examples", "max_examples", "n") if method == "finetune" else ("tokens", "max_tokens", "t")
    runs = []
    for seed in sweep.seeds:
        for size in getattr(sweep, unit):
            name = f"{settings.run_name}-{tag}{size}" + (f"-s{seed}" if len(sweep.seeds) > 1 else "")
            data = replace(settings.data, **{field_name: size, "subset_seed": seed})
            runs.append(PlannedRun(name, method, replace(settings, data=data), compare.seed + seed,
                                   sweep={"of": settings.run_name, unit: size, "seed": seed}))
    return runs


def check_sweep_data(compare: Compare) -> None:
    """Refuse, before any run, a sweep size larger than the data: the largest size of each swept run is drawn once."""
    largest: dict[str, PlannedRun] = {}
    for run in planned_runs(compare):
        if run.sweep is not None:
            largest[run.sweep["of"]] = run  # sizes increase, so the last one is the largest
    for run in largest.values():
        data = replace(run.settings.data)
        try:
            if run.cpt:
                from lightning_adapt.model.loading import load_config, load_tokenizer

                length = run.settings.max_seq_length or load_config(compare.checkpoint_dir).block_size
                data.connect(load_tokenizer(compare.checkpoint_dir), max_seq_length=length)
                data.setup()
            else:
                data.read_splits()
        except (DataError, ValueError) as error:
            raise ValueError(f"Compare.sweep.{run.sweep['of']}: {error}") from None


def check_lm_eval_tasks(compare: Compare) -> None:
    """Load every lm-eval task of `tasks` and `general_tasks` once before any run, so that one lm-eval cannot give (an
    unknown name, a dataset not available offline, an output type we cannot score) is refused before the ICL-only
    run and the training runs, not when a run first evaluates it."""
    for task in [*compare.tasks, *compare.general_tasks]:
        if isinstance(task, LMEvalTask):
            task.load()


def _say(message: str) -> None:
    print(f"[compare] {message}", flush=True)


# --- the runs ------------------------------------------------------------------------------------------------------


def run_icl(compare: Compare, tasks: list[TaskSpec], run_dir: Path) -> Path:
    """The ICL-only run: every task's shots and seeds scored on the base model (the step-0 points), no training,
    recorded by `record_evaluation` (metrics and per-query predictions) as `Accounting` and `ICLEvaluation` record
    the training runs."""
    import torch

    from lightning_adapt.record.accounting import record_evaluation
    from lightning_adapt.icl.evaluate import evaluate_checkpoint
    from lightning_adapt.model.loading import check_checkpoint_dir, load_config
    from lightning_adapt.record.runs import run_info

    checkpoint_dir = check_checkpoint_dir(compare.checkpoint_dir)
    accelerator = str(compare.trainer.get("accelerator", "auto"))
    device = torch.device("cuda" if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu")
    precision = str(compare.trainer.get("precision", "32-true"))
    dtype = {"bf16-true": "bfloat16", "16-true": "float16"}.get(precision, "float32")
    info = run_info("icl", None, load_config(checkpoint_dir), checkpoint_dir, tasks, device=str(device), dtype=dtype)

    def evaluate() -> tuple[dict[str, float], list[dict[str, Any]]]:
        results = evaluate_checkpoint(checkpoint_dir, tasks, batch_size=compare.icl_batch_size, device=str(device),
                                      dtype=dtype)
        return results.metrics(), results.predictions

    return record_evaluation(run_dir, evaluate, info, device)


def build_run(compare: Compare, run: PlannedRun, checkpoint_dir: Path, run_dir: Path) -> tuple[Any, Any]:
    """The LightningModule and data module of a planned run, as `run_training` trains them."""
    settings = run.settings
    module_class = ContinualPretraining if run.cpt else FineTuning
    continued = {planned.base for planned in planned_runs(compare)}
    module = module_class(
        checkpoint_dir, lora=settings.lora, quantize=settings.quantize, optimization=settings.optimization,
        max_seq_length=settings.max_seq_length, general_val=compare.general_val,
        general_val_blocks=compare.general_val_blocks, out_dir=run_dir, export=run_export(compare.export, run.name in continued),
    )
    return module, replace(settings.data)


def run_export(export: bool | ExportSettings, continued: bool) -> bool | ExportSettings:
    """A run's fit-end export: compare's `export`, with final/ added when a later run continues from it."""
    settings = export_settings(export)
    if not continued or (settings is not None and "litgpt" in settings.formats):
        return export
    return True if settings is None else replace(settings, formats=["litgpt", *settings.formats])


def trainer_flags(compare: Compare, run: PlannedRun) -> dict[str, Any]:
    """The Trainer arguments of a planned run, callbacks and logger aside."""
    return {"log_every_n_steps": 1, "enable_checkpointing": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0} | compare.trainer | {
        "max_steps": run.settings.max_steps, "val_check_interval": run.settings.val_check_interval,
        "check_val_every_n_epoch": None}


def one_process(compare: Compare) -> bool:
    """Whether the runs train in a single process (the estimate's probe predicts one)."""
    import os

    import torch

    devices, nodes = str(compare.trainer.get("devices", "auto")), compare.trainer.get("num_nodes", 1)
    if devices in ("auto", "-1"):  # Lightning's auto: every GPU, else one CPU process
        cpu = str(compare.trainer.get("accelerator", "auto")) == "cpu" or not torch.cuda.is_available()
        devices = "1" if cpu or torch.cuda.device_count() == 1 else devices
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return devices in ("1", "[0]") and int(nodes) == 1 and not launched


def estimate_planned(compare: Compare, run: PlannedRun, checkpoint_dir: Path, run_dir: Path) -> Any:
    """The `TrainingEstimate` of a planned run: a probe of a few real steps (`lightning_adapt.estimate`)."""
    from lightning_adapt.estimate import estimate_training

    module, data = build_run(compare, run, checkpoint_dir, run_dir)
    return estimate_training(module, data, trainer_flags(compare, run), run.settings.max_steps)


def run_training(compare: Compare, run: PlannedRun, tasks: list[TaskSpec], run_dir: Path, checkpoint_dir: Path) -> Path:
    """One training run (fine-tuning or CPT) with the same ICLEvaluation and Accounting callbacks as every other;
    with `compare.estimate` (one process), its estimate first, kept in its accounting.json."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lightning_adapt.record.accounting import Accounting
    from lightning_adapt.icl.callback import ICLEvaluation

    details = {"sweep": run.sweep} if run.sweep else {}
    if compare.estimate and one_process(compare):
        details["estimate"] = estimate_planned(compare, run, checkpoint_dir, run_dir).to_dict()
    L.seed_everything(run.seed, verbose=False)
    module, data = build_run(compare, run, checkpoint_dir, run_dir)
    icl = [ICLEvaluation(tasks, shots=compare.train_shots, seeds=compare.train_seeds, batch_size=compare.icl_batch_size)]
    if compare.general_tasks:
        icl.append(ICLEvaluation(compare.general_tasks, batch_size=compare.icl_batch_size, general=True))
    logger = CSVLogger(run_dir, name="logs")
    trainer = L.Trainer(**trainer_flags(compare, run), callbacks=[*icl, Accounting(run.name, details=details)],
                        logger=logger, default_root_dir=run_dir)
    trainer.fit(module, datamodule=data)
    return Path(logger.log_dir)


def write_biographies(compare: Compare) -> None:
    """Write the synthetic biography corpus the runs read, when the comparison has one."""
    from lightning_adapt.data.biographies import write_biography_corpus

    if compare.biographies is not None:
        b = compare.biographies
        write_biography_corpus(b.out_dir, b.n_people, b.paraphrases, b.seed, b.heldout_paraphrases)


def dry_run(compare: Compare) -> str:
    """`compare --dry_run`: the planned runs and, for each, its estimate (a probe of a few real steps, nothing
    written but the biography corpus the runs read), and the ICL tasks' prompt tokens and FLOPs per query. CPT→FT is
    estimated on the base model (the CPT result it starts from has the same shapes and does not exist yet)."""
    from lightning_adapt.estimate import estimate_icl, format_estimate
    from lightning_adapt.model.loading import resolve_checkpoint_dir

    checkpoint_dir = resolve_checkpoint_dir(compare.checkpoint_dir)
    if not one_process(compare):
        raise ValueError("compare --dry_run estimates one process: run it with --trainer.devices 1 (each DDP or FSDP2 "
                         "process trains its share; FLOPs and tokens add up over processes).")
    check_lm_eval_tasks(compare)
    write_biographies(compare)
    check_sweep_data(compare)
    blocks = []
    for run in planned_runs(compare):
        size = "" if run.sweep is None else f", {', '.join(f'{k} {v}' for k, v in run.sweep.items() if k != 'of')}"
        start = "" if run.base is None else f", starts from {run.base}'s result (estimated on the base model)"
        estimate = estimate_planned(compare, run, checkpoint_dir, compare.out_dir / "runs" / run.name)
        blocks.append(f"== {run.name} ({run.method}{size}{start})\n{format_estimate(estimate)}")
    if "icl" in compare.methods:
        blocks.append("== icl\n" + format_estimate(None, estimate_icl(compare.tasks, checkpoint_dir, compare.answer_tokens)))
    return "\n\n".join(blocks)


def run_compare(compare: Compare) -> Path:
    """Run the ICL-only evaluation and every planned training run (`planned_runs`), each in its own run directory
    under `out_dir/runs/`, then write `out_dir/report/`.

    With several processes (`trainer: {devices: 2, strategy: fsdp2}`, or a launcher such as torchrun) every process
    takes part in every training run; only global rank 0 writes the biographies, runs the ICL-only evaluation,
    prints and writes the report (the others return `out_dir/report` without writing it)."""
    from lightning_adapt.model.loading import resolve_checkpoint_dir
    from lightning_adapt.verdict.report import REPORT_KIND, load_run, report_data, write_report

    settings = _plain(compare)
    resolve_checkpoint_dir(compare.checkpoint_dir)
    check_lm_eval_tasks(compare)
    writer = is_launch_rank_zero()
    if writer:
        check_output_dir(compare.out_dir / "report", REPORT_KIND, overwrite=True)
        write_biographies(compare)
    check_sweep_data(compare)
    tasks = compare.tasks
    runs_dir = compare.out_dir / "runs"
    runs, planned = [], planned_runs(compare)
    for method in compare.methods:
        for run in [None] if method == "icl" else [run for run in planned if run.method == method]:
            start = time.perf_counter()
            if run is None:
                if not writer:
                    continue
                log_dir = run_icl(compare, tasks, runs_dir / "icl")
            else:
                base = compare.checkpoint_dir if run.base is None else runs_dir / run.base / "final"
                log_dir = run_training(compare, run, tasks, runs_dir / run.name, base)
            if writer:
                runs.append(load_run(log_dir))
                _say(_phase_line(runs[-1], time.perf_counter() - start))
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


def _phase_line(run: Run, seconds: float) -> str:
    """One line per phase: what ran, its budget and its last scores."""
    from lightning_adapt.icl.keys import PROMPT_TOKENS, parse_icl_key

    scores = ", ".join(
        f"{icl.task}/{icl.metric}@k{icl.k} {values[max(values)]:.3f}"
        for key, values in sorted(run.metrics.items())
        if (icl := parse_icl_key(key)) and icl.k is not None and not icl.std and icl.metric != PROMPT_TOKENS
    )
    if not run.trains:
        return f"{run.method}: base model evaluated in {seconds:.1f} s — {scores}"
    return (f"{run.method}: {run.last('train/tokens', 0):,.0f} tokens, {run.last('flops/train', 0):.3g} FLOPs, "
            f"{seconds:.1f} s — last evaluation: {scores}")


def recommendation_lines(report: dict[str, Any]) -> list[str]:
    """The recommendation and break-even count per task, one line each (from the data of report.json)."""
    from lightning_adapt.verdict.plots import verdict

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
    parser.add_argument("--dry_run", action="store_true",
                        help="Print the planned runs and their estimates (memory, FLOPs, time); train nothing.")
    parser.add_class_arguments(Compare, nested_key=None, fail_untyped=True)
    return parser


def parse_compare(args: list[str]) -> Compare:
    """Parse and validate command-line arguments into a `Compare`."""
    parser = compare_parser()
    config = parser.instantiate_classes(parser.parse_args(args)).as_dict()
    for option in ("config", "quick", "dry_run"):
        config.pop(option, None)
    return Compare(**config)


PROFILES = Path(__file__).parents[1] / "configs" / "compare"
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
    `--config FILE` any comparison; further `--key value` arguments override the config; `--dry_run` prints the
    planned runs' estimates instead of running them.
    """
    compare = parse_compare(with_profile(args))
    if "--dry_run" in args:
        print(dry_run(compare))
    else:
        run_compare(compare)


def report_command(args: list[str]) -> None:
    """Build the comparison report from runs launched separately: `report RUN_DIR... --out_dir DIR`."""
    from lightning_adapt.verdict.report import build_report, report_with_data

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
