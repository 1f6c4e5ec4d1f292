"""What a comparison's YAML says about each run: the fine-tuning and continual-pretraining settings, made from the
training modules' own constructors (every option of `FineTuning` / `ContinualPretraining`, with the module's default)
plus the few that only a comparison has (data, budget, name, a learning-rate and seed search); data-size sweeps; the
biography corpus."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.data.instructions import Instructions
from lightning_adapt.methods.base import AdaptationModule
from lightning_adapt.methods.cpt import ContinualPretraining
from lightning_adapt.methods.finetune import FineTuning
from lightning_adapt.model.quantize import check_quantize
from lightning_adapt.techniques import Technique, chosen_technique

SET_PER_RUN = ("checkpoint_dir", "out_dir")
"""Module options compare sets itself for each run: the base it starts from (the base model, or the CPT run's result
for CPT→FT) and its folder, out_dir/runs/<name>."""
SHARED = ("general_val", "general_val_blocks", "general_val_length", "export")
"""Module options that are one `Compare` field for every run, so that every run is measured alike (the same general
held-out text, the same blocks of the same length) and writes alike."""
RUN_ONLY = {
    "max_steps": "Training budget in optimizer steps.",
    "val_check_interval": "Validate (held-out losses + ICL evaluation) every this many steps; must divide max_steps.",
    "name": "The run's name in the report and under out_dir/runs/ (default: from the method and its technique, "
            "e.g. lora, qlora, full, cpt, cpt-lora).",
    "search": "A search of learning rates and training seeds (`Search`): one run per learning rate and seed, named "
              "<name>-lr<learning rate>-s<seed>; the learning rate is chosen on the selection queries, its seeds give "
              "the score and interval. None: one run. Not with a sweep of the same run; cpt+finetune trains once, at "
              "the first fine-tuning settings' own learning rate.",
}
"""The run settings a module does not have (besides `data`), declared once for both methods."""


def module_options(module_class: type[AdaptationModule]) -> dict[str, inspect.Parameter]:
    """The constructor options of a training module, with their types resolved: its own and those it passes on with
    `**settings` to the classes it extends (AdaptationModule's), each with the default the module gives it, in the
    order of the class that declares them first."""
    chain = []
    for cls in module_class.__mro__:
        if "__init__" in vars(cls):
            chain.append(cls)
            if all(p.kind != p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
                break
    options: dict[str, inspect.Parameter] = {}
    for cls in reversed(chain):
        hints = get_type_hints(cls.__init__)
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                options[name] = parameter.replace(annotation=hints[name])
    return options


@dataclass
class Search:
    """A search of one trained run: one run per learning rate and seed, each with the run's own budget, data and
    every other setting; e.g. ``{learning_rate: [1e-4, 3e-4, 1e-3], seeds: [0, 1, 2]}`` trains 9 runs."""

    learning_rate: list[float] | None = None
    """Peak learning rates to try (each replaces the run's `optimization.learning_rate`); None: the run's own only (a
    search over seeds)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Training seeds: each is added to the comparison's `seed` (the Trainer's seed: initialization, dropout) and to the
    data's `seed` (the order of the training examples or blocks; also the validation split of data without a
    `val_path`)."""


def _default(value: Any) -> Any:
    """A dataclass field holding `value` as its default (a fresh copy per instance for settings objects)."""
    if dataclasses.is_dataclass(value):
        return field(default_factory=lambda: copy.deepcopy(value))
    return field(default=value)


def run_settings(name: str, module_class: type[AdaptationModule], data: type, data_doc: str, max_steps: int,
                 val_check_interval: int, prefix: str) -> type:
    """The settings class of one method's runs: `data`, every option of `module_class` that compare does not set
    itself or share between runs (`SET_PER_RUN`, `SHARED`), with the module's type and default, and `RUN_ONLY`.
    Runs are named after `prefix` and their technique unless given a `name`."""
    options = [(option, p.annotation, _default(p.default)) for option, p in module_options(module_class).items()
               if option not in SET_PER_RUN + SHARED]
    run_only = [("max_steps", int, field(default=max_steps)),
                ("val_check_interval", int, field(default=val_check_interval)),
                ("name", str | None, field(default=None)),
                ("search", Search | None, field(default=None))]
    fields = [("data", data), *options, *run_only]

    def run_name(self: Any) -> str:
        technique = run_technique(self)
        trained = "full" if technique is None else f"q{technique.name}" if self.quantize else technique.name
        return self.name or (trained if not prefix else prefix if trained == "full" else f"{prefix}-{trained}")

    documented = "\n".join(f"    {option}: {doc}" for option, doc in {"data": data_doc, **RUN_ONLY}.items())
    doc = (f"The settings of a {module_class.__name__} run in a comparison: every option of `{module_class.__name__}` "
           f"but {', '.join(SET_PER_RUN + SHARED)}, with its default (see its docstring), and:\n\n{documented}\n")
    settings = dataclasses.make_dataclass(name, fields, namespace={"__doc__": doc, "module_class": module_class,
                                                                   "run_name": property(run_name)})
    settings.__module__ = __name__  # where it is defined, for pickling and messages
    return settings


def run_technique(settings: Any) -> Technique | None:
    """The technique a run's settings choose with `lora` or `technique` (None: every weight trains)."""
    return chosen_technique(settings.lora, settings.technique)


def check_budget(where: str, settings: Any) -> None:
    """Refuse a budget of zero, a validation interval that misses the final weights and quantization without a
    technique (`where` names the settings in the message)."""
    if settings.max_steps < 1 or settings.val_check_interval < 1:
        raise ValueError(
            f"{where}: max_steps={settings.max_steps} and val_check_interval={settings.val_check_interval} must be at "
            "least 1 (a budget of zero trains nothing)."
        )
    try:
        check_quantize(settings.quantize, run_technique(settings))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if settings.max_steps % settings.val_check_interval:
        raise ValueError(
            f"{where}: val_check_interval={settings.val_check_interval} must divide max_steps={settings.max_steps}, "
            "so that the final weights are evaluated."
        )


FineTuneSettings = run_settings(
    "FineTuneSettings", FineTuning, Instructions, "Instruction data (path, template, fields, batch size).",
    max_steps=60, val_check_interval=20, prefix="")
CPTSettings = run_settings(
    "CPTSettings", ContinualPretraining, TextCorpus, "Raw domain text (with `replay` of general text against "
    "forgetting).", max_steps=40, val_check_interval=10, prefix="cpt")
RunSettings = FineTuneSettings | CPTSettings
"""The settings of one training run of a comparison."""
METHOD_SETTINGS = {"finetune": FineTuneSettings, "cpt": CPTSettings}
"""The settings class of each training method's section of `Compare`."""


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
