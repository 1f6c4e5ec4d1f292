"""`Compare`: one comparison as its YAML declares it — the base model, the ICL tasks, the runs' settings, what every
run shares and how the verdict is drawn — checked when it is made, before anything runs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lightning_adapt.compare.plan import TRAINED, PlannedRun, check_search, check_sweep, planned_runs
from lightning_adapt.compare.settings import (
    Biographies,
    CPTSettings,
    FineTuneSettings,
    RunSettings,
    SweepSizes,
    check_budget,
    module_options,
    run_technique,
)
from lightning_adapt.formats.export import ExportSettings, export_settings
from lightning_adapt.formats.registry import format_class
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.scoring import BATCH_SIZE
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.methods.cpt import ContinualPretraining
from lightning_adapt.verdict.rules import ANSWER_TOKENS, MARGIN

METHODS = ("icl", "finetune", "cpt", "cpt+finetune")
"""What `Compare.methods` lists (a plain `list[str]`, checked here: jsonargparse 4.41 refuses a value outside a
`Literal` of strings as "Cannot take a Union of no types")."""
CONTROLLED_TRAINER_FLAGS = ("max_steps", "max_epochs", "val_check_interval", "callbacks", "logger", "default_root_dir")
SHARED_DEFAULTS = {name: option.default for name, option in module_options(ContinualPretraining).items()}
"""The defaults of the module options every run shares (`settings.SHARED`): ContinualPretraining's, so that every
trained run, fine-tuning too, has its forgetting measured on the built-in general text."""
CPT_DOCUMENTS = "cpt"
"""What a task's `context.documents` says to retrieve from the first CPT settings' corpus (their `data.path`)."""


@dataclass
class Compare:
    """One base model, three ways to adapt it, each run measured the same way, one report."""

    checkpoint_dir: Path
    """The base LitGPT checkpoint folder (the built-in SmolLM2 folder is made offline on first use)."""
    tasks: list[TaskSpec]
    """ICL tasks, evaluated k-shot on the base model and 0-shot on every trained run at every validation. A task's
    `context: {documents: cpt}` retrieves from the first CPT settings' corpus (their `data.path`)."""
    out_dir: Path = Path("out/compare")
    """Where runs/<method>/ and report/ are written."""
    methods: list[str] = field(default_factory=lambda: ["icl", "finetune", "cpt"])
    """Runs, in order, among icl, finetune, cpt and cpt+finetune; cpt+finetune fine-tunes the CPT run's result (CPT→FT)
    and needs cpt listed."""
    finetune: FineTuneSettings | list[FineTuneSettings] | None = None
    """Fine-tuning settings (needed by finetune and cpt+finetune), or a list of variants run side by side (e.g. LoRA,
    QLoRA with `quantize: nf4`, full fine-tuning with `lora: null`), each with its own `name`: every option of
    `FineTuning` with its default, and data, max_steps, val_check_interval, name, search (learning rates and seeds,
    one run each)."""
    cpt: CPTSettings | list[CPTSettings] | None = None
    """Continual-pretraining settings (needed by cpt and cpt+finetune), or a list of variants (e.g. full and LoRA
    CPT): every option of `ContinualPretraining` with its default, and data, max_steps, val_check_interval, name,
    search. cpt+finetune fine-tunes the first CPT run's result with the first fine-tuning settings."""
    sweep: dict[str, SweepSizes] = field(default_factory=dict)
    """Data-size sweeps: a trained run's name (lora, full, cpt ...) or a method (finetune, cpt: all its runs) ->
    sizes, e.g. ``{finetune: {examples: [8, 32, 128]}, cpt: {tokens: [50000, 200000]}}``. Each size replaces the
    run by one run named ``<run>-n<examples>`` / ``<run>-t<tokens>`` (``-s<seed>`` with several seeds)."""
    general_val: str | None = SHARED_DEFAULTS["general_val"]
    """General text whose held-out loss shows forgetting in every trained run; null: none (the modules'
    `general_val`, one for every run)."""
    general_tasks: list[TaskSpec | str] = field(default_factory=list)
    """General-ability tasks scored on every trained run at step 0 and every validation, shown as forgetting beside
    the general-text loss (not compared between methods): lm-eval task names (``arc_easy``, ``hellaswag``), task
    YAML paths, ``LMEvalTask``s (``task: ...`` with shots, limit ...) or ``ICLTask``s; each at its own shots and
    seeds."""
    general_val_blocks: int = SHARED_DEFAULTS["general_val_blocks"]
    """Blocks of general text evaluated at every validation (the modules' `general_val_blocks`, one for every run)."""
    general_val_length: int | None = SHARED_DEFAULTS["general_val_length"]
    """Tokens per block of general text, one length for every run whatever its max_seq_length (the modules'
    `general_val_length`; None: 256, or the model's context if shorter)."""
    train_shots: list[int] = field(default_factory=lambda: [0])
    """Shots evaluated on trained runs (the ICL run uses each task's own shots and seeds)."""
    train_seeds: list[int] = field(default_factory=lambda: [0])
    """Demonstration seeds evaluated on trained runs."""
    train_top_k: list[int] | None = None
    """Numbers of retrieved documents scored on trained runs for tasks with a context (None: each task's own
    top_k)."""
    icl_batch_size: int = BATCH_SIZE
    """Sequences per forward pass in ICL evaluation (`ICLEvaluation`'s `batch_size`)."""
    icl_subsample: int | None = None
    """An evaluation budget for the trained runs (`ICLEvaluation`'s `subsample`): the evaluations between step 0 and
    the last score this many of each task's queries (a seeded subset, the same in every run); step 0 and the last
    evaluation score all of them, and every choice is made on those. None: every query at every evaluation."""
    trainer: dict[str, Any] = field(default_factory=dict)
    """Lightning Trainer flags applied to every run (accelerator, devices, strategy, precision, limit_val_batches ...)."""
    seed: int = 42
    """Seed set before every run."""
    export: bool | ExportSettings = SHARED_DEFAULTS["export"]
    """What each trained run writes when it ends (the modules' `export`, one for every run): True its final/ LitGPT
    checkpoint, `{formats: [litgpt, hf, gguf]}` also final-hf/ and final-gguf/ (see `ExportSettings`), False nothing;
    a CPT run that cpt+finetune continues always writes final/."""
    metric: str | dict[str, str] | None = None
    """ICL metric scoring every task, or task -> metric (None, or a task the mapping leaves out: acc where the task
    logs it, else the first it logs of checks, exact_match, contains, chrf, rougeL, response_logprob). Every metric
    is higher-is-better and the `margin` is in its units (response_logprob: nats per token, below 0)."""
    answer_tokens: float = ANSWER_TOKENS
    """Tokens in a query's answer, for inference FLOPs (1: a label decided by its first token)."""
    margin: float = MARGIN
    """A costlier method must beat a cheaper one by more than this, and the 95% interval of their paired difference on
    the same test queries must lie above 0, to be recommended."""
    biographies: Biographies | None = None
    """Write the synthetic biography corpus first (the demo's CPT data and knowledge probe)."""
    estimate: bool = True
    """Estimate every training run just before it starts (a probe of 2 warm-up + 3 timed real steps, see
    `lightning-adapt estimate`; one process only), keep it in the run's accounting.json, and show predicted vs
    measured in the report."""

    def __post_init__(self) -> None:
        self.checkpoint_dir, self.out_dir = Path(self.checkpoint_dir), Path(self.out_dir)
        self.general_tasks = [LMEvalTask(task) if isinstance(task, str) else task for task in self.general_tasks]
        check_methods(self)
        self.tasks = with_cpt_documents(self.tasks, self.variants("cpt"), "Compare.tasks")
        self.general_tasks = with_cpt_documents(self.general_tasks, self.variants("cpt"), "Compare.general_tasks")
        for section in TRAINED:
            listed = isinstance(getattr(self, section), list)
            for index, settings in enumerate(self.variants(section)):
                where = f"Compare.{section}" + (f"[{index}]" if listed else "")
                check_budget(where, settings)
                continued = section == "cpt" and index == 0 and "cpt+finetune" in self.methods
                check_search(where, section, settings, self.sweep, continued)
        check_sweep(self.methods, {section: self.variants(section) for section in TRAINED}, self.sweep)
        check_run_names(self)
        check_shared(self)

    def variants(self, section: str) -> list[RunSettings]:
        """The fine-tuning or CPT settings as a list (one entry unless variants are listed; none when unset)."""
        settings = getattr(self, section)
        return [] if settings is None else settings if isinstance(settings, list) else [settings]

    def planned_runs(self) -> list[PlannedRun]:
        """The training runs `run_compare` launches, in order (`plan.planned_runs`)."""
        variants = {section: self.variants(section) for section in TRAINED}
        return planned_runs(self.methods, variants, self.sweep, self.seed)


def check_methods(compare: Compare) -> None:
    """Refuse no method, an unknown or repeated one, CPT→FT without CPT, and a method without its settings."""
    if not compare.methods:
        raise ValueError(f"Compare(methods=[]): list at least one of {', '.join(METHODS)}.")
    unknown = [method for method in compare.methods if method not in METHODS]
    if unknown:
        raise ValueError(f"Compare.methods: unknown method(s) {unknown}; the methods are {', '.join(METHODS)}.")
    repeated = sorted({m for m in compare.methods if compare.methods.count(m) > 1})
    if repeated:
        raise ValueError(
            f"Compare(methods={compare.methods}): {repeated} listed twice; each method runs once (list variants of a "
            "method under its settings, e.g. `finetune: [{name: lora, ...}, {name: full, lora: null, ...}]`)."
        )
    if "cpt+finetune" in compare.methods and "cpt" not in compare.methods:
        raise ValueError("Compare: cpt+finetune fine-tunes the cpt run's result, so list cpt too (before it).")
    for section in TRAINED:
        settings = getattr(compare, section)
        if isinstance(settings, list) and not settings:
            raise ValueError(f"Compare.{section} is an empty list: give settings, or leave it out.")
        listed = [m for m in (section, "cpt+finetune") if m in compare.methods]
        if listed and settings is None:
            raise ValueError(f"Compare: method(s) {listed} need the `{section}` settings.")


def with_cpt_documents(tasks: list[TaskSpec], cpt: list[RunSettings], where: str) -> list[TaskSpec]:
    """`tasks` with `context.documents: cpt` replaced by the first CPT settings' `data.path` (`where` names the list
    in messages); a task without a context (an lm-eval task) as it is."""
    resolved = []
    for index, task in enumerate(tasks):
        context = getattr(task, "context", None)
        if context is not None and context.documents == CPT_DOCUMENTS:
            if not cpt:
                raise ValueError(
                    f"{where}[{index}] ({task.name}): context.documents is `cpt`, the first CPT run's corpus, but the "
                    "comparison has no `cpt` settings; give `cpt` settings, or name the documents (a .txt file, a "
                    "folder, a records file, builtin:NAME or a datasets name)."
                )
            task = replace(task, context=replace(context, documents=cpt[0].data.path))
        resolved.append(task)
    return resolved


def check_run_names(compare: Compare) -> None:
    """Refuse a run name given twice (or 'icl', the ICL-only run's) and one that is no folder name; a search's name
    (that of the runs it replaces) is a name in the report too."""
    names = [settings.run_name for section in TRAINED for settings in compare.variants(section)]
    runs = compare.planned_runs()
    planned = [run.name for run in runs] + list(dict.fromkeys(run.search["of"] for run in runs if run.search))
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


def check_shared(compare: Compare) -> None:
    """Refuse Trainer flags compare sets itself, a task both compared and general, no shots or seeds for trained
    runs, an ICL subsample of no queries, and an export format a run's technique cannot be written in (e.g. PEFT for
    a run that trains every weight)."""
    controlled = sorted(set(compare.trainer) & set(CONTROLLED_TRAINER_FLAGS))
    if controlled:
        raise ValueError(
            f"Compare.trainer sets {controlled}, which compare controls: set budgets in finetune/cpt "
            "(max_steps, val_check_interval); runs log to out_dir/runs/<method>."
        )
    clash = sorted({task.name for task in compare.tasks} & {task.name for task in compare.general_tasks})
    if clash:
        raise ValueError(f"Compare: {clash} named both in tasks and general_tasks; a task is one or the other.")
    if not compare.train_shots or not compare.train_seeds:
        raise ValueError("Compare: train_shots and train_seeds must not be empty.")
    if compare.icl_subsample is not None and compare.icl_subsample < 1:
        raise ValueError(
            f"Compare.icl_subsample={compare.icl_subsample}: give the number of queries per task (>= 1) the trained "
            "runs' intermediate evaluations score, or leave it out (null) to score every query at every evaluation."
        )
    if compare.train_top_k is not None and (not compare.train_top_k or min(compare.train_top_k) < 0):
        raise ValueError(
            f"Compare.train_top_k={compare.train_top_k}: list numbers of documents, 0 or more (0: none), or leave it "
            "out to score each task's own top_k."
        )
    formats = export_settings(compare.export).formats if compare.export else []
    for run in compare.planned_runs():
        for name in formats:
            try:
                format_class(name).check_technique(run_technique(run.settings))
            except ValueError as error:
                raise ValueError(f"Compare.export: run {run.name}: {error}") from None
