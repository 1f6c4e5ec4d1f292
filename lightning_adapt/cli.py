"""The `lightning-adapt` command: LitGPT-style YAML launches parsed by LightningCLI / jsonargparse."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

from jsonargparse import ArgumentParser, set_parsing_settings
from lightning import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI

from lightning_adapt.compare.command import class_options_help, compare_command, compare_parser
from lightning_adapt.configs import builtin_config_names, resolve_config_args
from lightning_adapt.core.plugins import convert as convert_checkpoint
from lightning_adapt.core.plugins import download as download_model
from lightning_adapt.core.quiet import progress_bar, quiet_console
from lightning_adapt.data.corpus import TextCorpus
from lightning_adapt.data.instructions import Instructions
from lightning_adapt.estimate import estimate_icl, estimate_training, format_estimate
from lightning_adapt.formats.registry import format_class, format_names
from lightning_adapt.icl.callback import ICLEvaluation
from lightning_adapt.icl.evaluate import evaluate_checkpoint, format_table
from lightning_adapt.methods import ContinualPretraining, FineTuning
from lightning_adapt.methods.base import AdaptationModule
from lightning_adapt.methods.checkpoints import check_resumable
from lightning_adapt.methods.export import export_model
from lightning_adapt.methods.outputs import try_commands
from lightning_adapt.model.from_hf import convert_from_hf
from lightning_adapt.model.training_checkpoints import check_checkpoint, newest_checkpoint
from lightning_adapt.record.accounting import Accounting
from lightning_adapt.verdict.command import report_command

set_parsing_settings(docstring_parse_attribute_docstrings=True)

HELP_FLAGS = ("-h", "--help")
FULL_HELP = "--help=full"
"""A training command's help with every Lightning Trainer flag (`--help` shows the common ones)."""
COMMON_TRAINER_FLAGS = (
    "accelerator", "devices", "strategy", "num_nodes", "precision", "max_steps", "val_check_interval",
    "limit_val_batches", "accumulate_grad_batches", "default_root_dir",
)
"""The Trainer flags a training command's short help shows: where and how long a run trains, and what it logs."""


def adaptation_cli_class(instantiate: bool = True, short_help: bool = False) -> type:
    class AdaptationCLI(LightningCLI):
        """LightningCLI whose default logger is a CSVLogger inside `trainer.default_root_dir`, and whose Trainer has
        an `Accounting` callback (added when the config lists none), so that every run has its run record, and a
        progress bar that counts steps."""

        def before_instantiate_classes(self) -> None:
            trainer = self.config.trainer
            if trainer.logger in (None, True):
                trainer.logger = {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": trainer.default_root_dir, "name": "logs"},
                }

        def add_arguments_to_parser(self, parser: ArgumentParser) -> None:
            parser.add_argument(
                "--ckpt_path", type=str | None, default=None,
                help="Resume from this .ckpt, or 'last': the newest complete checkpoint under trainer.default_root_dir.",
            )

        def parse_arguments(self, parser: ArgumentParser, args: Any) -> None:
            if short_help:
                print(training_help(parser))
                raise SystemExit(0)
            super().parse_arguments(parser, args)

        def instantiate_classes(self) -> None:
            if instantiate:
                super().instantiate_classes()

        def instantiate_trainer(self, **kwargs: Any) -> Trainer:
            callbacks = self.config_init.trainer.callbacks or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            added = [] if any(isinstance(callback, Accounting) for callback in callbacks) else [Accounting()]
            if self.config_init.trainer.get("enable_progress_bar", True) is not False and not any(
                    isinstance(callback, ProgressBar) for callback in callbacks):
                added.append(progress_bar())  # Lightning's own bar without its "Epoch 0/-2" under max_steps
            if added:
                kwargs["callbacks"] = [*callbacks, *added]
            return super().instantiate_trainer(**kwargs)

    return AdaptationCLI


def training_modules() -> dict[str, type]:
    """The module class each training command trains."""
    return {"finetune": FineTuning, "cpt": ContinualPretraining}


DATA_CLASSES = {"finetune": Instructions, "cpt": TextCorpus}
"""The data module the shipped configs of each training command use, whose keys its short help lists."""


def training_cli(command: str, args: list[str], instantiate: bool = True) -> object:
    """Parse `--config`, `--model.*`, `--data.*` and `--trainer.*` for the module of `command` (`--help`: the short
    help, `--help=full`: Lightning's, with every Trainer flag)."""
    module_class = training_modules()[command]
    short_help = any(arg in HELP_FLAGS for arg in args)
    args = ["--help" if arg == FULL_HELP else arg for arg in resolve_config_args(args)]
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return adaptation_cli_class(instantiate, short_help)(
        module_class,
        LightningDataModule,
        subclass_mode_data=True,
        args=args,
        run=False,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": f"out/{command}", "log_every_n_steps": 1},
        parser_kwargs={"prog": f"lightning-adapt {command}", "description": COMMANDS[command].__doc__},
    )


def training_help(parser: ArgumentParser) -> str:
    """A training command's `--help`: our module's options first, then its data module's keys, then the common
    Trainer flags (`COMMON_TRAINER_FLAGS`); `--help=full` lists every Trainer flag."""
    command = parser.prog.split()[-1]
    data_class = DATA_CLASSES[command]
    parser.usage = (f"{parser.prog} --config FILE [--model.KEY VALUE] [--data.init_args.KEY VALUE] "
                    "[--trainer.FLAG VALUE] [--ckpt_path PATH|last] [--print_config]")
    names = [name for name in builtin_config_names() if name.split(":")[1].startswith(f"{command}/")]
    parser.epilog = (f"Shipped configs: {', '.join(names)}. {FULL_HELP}: every Lightning Trainer flag; --print_config: "
                     "every value a run would use, as YAML.")
    trainer, model, data = (parser.groups[key] for key in ("trainer", "model", "data"))
    for action in trainer._group_actions:
        if action.dest.removeprefix("trainer.") not in COMMON_TRAINER_FLAGS:
            action.help = argparse.SUPPRESS
    trainer.title = f"Lightning Trainer, the common flags ({FULL_HELP} lists all, e.g. --trainer.logger, --trainer.callbacks)"
    model.title = f"model: {parser.groups['model'].title.split(':')[0]} ({training_modules()[command].__name__}'s options)"
    data.title = "data: a LightningDataModule, class_path + init_args (ours or LitGPT's; --data.help CLASS: its keys)"
    parser._action_groups.remove(trainer)
    parser._action_groups.append(trainer)
    data_keys = class_options_help(data_class, "data.init_args", f"keys of lightning_adapt.{data_class.__name__}, "
                                   "the shipped configs' data module (--data.init_args.KEY VALUE)")
    help_text = parser.format_help()
    trainer_start = help_text.index(trainer.title)
    return help_text[:trainer_start] + data_keys + "\n" + help_text[trainer_start:]


def fit(command: str, args: list[str]) -> None:
    """Parse, then train; `--ckpt_path PATH|last` resumes (checked before anything is built). Ends with where the
    run's outputs are and the command that tries its model."""
    cli = training_cli(command, args)
    ckpt_path = cli.config.get("ckpt_path")
    if ckpt_path is not None:
        ckpt_path = resume_path(ckpt_path, Path(cli.trainer.default_root_dir))
        check_resumable(ckpt_path, cli.model)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    outputs = run_outputs(cli.model, cli.trainer)  # on every process: Trainer.log_dir is a collective broadcast
    if cli.trainer.is_global_zero:
        print(outputs)


def run_outputs(module: AdaptationModule, trainer: Trainer) -> str:
    """Where a finished run's outputs are (logs, checkpoints, each exported folder) and the LitGPT command that
    tries the exported model."""
    lines = ["", "Outputs:"]
    if trainer.log_dir is not None:
        lines.append(f"  {trainer.log_dir}: metrics.csv and config.yaml")
    checkpoints = trainer.checkpoint_callback
    if checkpoints is not None and checkpoints.dirpath is not None:
        lines.append(f"  {checkpoints.dirpath}: .ckpt checkpoints (resume: --ckpt_path last; another format: "
                     "lightning-adapt export CKPT --out_dir DIR)")
    exported = module.export_dirs()
    for name, folder in exported.items():
        lines.append(f"  {folder}: {format_class(name).description}")
    if "litgpt" in exported:
        lines += ["Try it:", *(f"  {command}" for command in try_commands(exported["litgpt"], module.technique))]
    else:
        lines.append("No final/ LitGPT folder (export does not list litgpt): lightning-adapt export CKPT --out_dir "
                     "DIR writes one from a checkpoint.")
    return "\n".join(lines)


def finetune(args: list[str]) -> None:
    """Fine-tune a LitGPT checkpoint (full, LoRA, QLoRA, Adapter V2): `finetune --config builtin:finetune/lora.yaml`.

    Every key of the YAML is an option of FineTuning (model), of a data module (data) or of Lightning's Trainer
    (trainer), and any of them can be given on the command line."""
    fit("finetune", args)


def cpt(args: list[str]) -> None:
    """Continue pretraining a LitGPT checkpoint on raw text: `cpt --config builtin:cpt/domain.yaml`.

    Every key of the YAML is an option of ContinualPretraining (model), of a data module (data) or of Lightning's
    Trainer (trainer), and any of them can be given on the command line."""
    fit("cpt", args)


def estimate_parser() -> ArgumentParser:
    """`lightning-adapt estimate --help`: its own options; the rest are the estimated command's."""
    parser = ArgumentParser(prog="lightning-adapt estimate", description=estimate.__doc__,
                            usage="lightning-adapt estimate [finetune|cpt|compare] --config FILE [--force] [OPTIONS]",
                            epilog="OPTIONS: any option of the estimated command, e.g. --trainer.max_steps 50 "
                            "(lightning-adapt finetune --help lists them).")
    parser.add_argument("command", nargs="?", choices=[*training_modules(), "compare"],
                        help="The command whose run is estimated (default: the one the config's first line names).")
    parser.add_argument("--config", help="The run's YAML: your own, or a shipped one (builtin:finetune/lora.yaml, ...).")
    parser.add_argument("--force", action="store_true", help="Probe even when the steps are predicted not to fit in "
                        "memory.")
    return parser


def estimate(args: list[str]) -> None:
    """Predict a run's parameters, memory, FLOPs and time before training: `estimate --config FILE` (writes nothing).

    A short probe of real training steps (see `lightning_adapt.estimate`); the config is a `finetune` or `cpt` one,
    or a `compare` one (every planned run, as `compare --dry_run`). The probe is refused when its steps are predicted
    not to fit in memory; `--force` runs it anyway."""
    if any(arg in HELP_FLAGS for arg in args[:1]):
        estimate_parser().parse_args(["--help"])
    force = "--force" in args
    command, args = estimated_command([arg for arg in args if arg != "--force"])
    if command == "compare":
        compare_command([*args, "--dry_run"])
        return
    cli = training_cli(command, args, instantiate=False)
    init = cli.parser.instantiate_classes(cli.config)
    flags = dict(vars(init.trainer))
    callbacks = flags.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    tasks = [task for callback in callbacks if isinstance(callback, ICLEvaluation) for task in callback.evaluated_tasks]
    training = estimate_training(init.model, init.data, flags, int(flags.get("max_steps") or -1), force=force)
    print(format_estimate(training, estimate_icl(tasks, init.model.checkpoint_dir) if tasks else []))


def estimated_command(args: list[str]) -> tuple[str, list[str]]:
    """The training command `estimate` parses its arguments for: named first (`estimate cpt --config FILE`), else the
    one the config's first line names."""
    estimable = (*training_modules(), "compare")
    if args[:1] and args[0] in estimable:
        return args[0], args[1:]
    configs = [value for flag, value in zip(args, args[1:]) if flag == "--config"]
    configs += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    if configs and not Path(configs[0]).is_file():
        raise FileNotFoundError(f"--config {configs[0]}: no such file.")
    command = config_command(configs[0]) if configs else None
    if command not in estimable:
        raise ValueError(
            "name the command to estimate, `lightning-adapt estimate finetune|cpt|compare --config FILE`, or start "
            "FILE with the line that runs it (`# lightning-adapt finetune --config FILE`)."
        )
    return command, args


def resume_path(ckpt_path: str, root: Path) -> Path:
    """The `.ckpt` to resume from: `ckpt_path` itself, or for 'last' the newest complete checkpoint under `root`
    (every launch logs to a new version folder, so Lightning's own 'last' would find nothing and start afresh)."""
    if ckpt_path != "last":
        return check_checkpoint(ckpt_path)
    found = newest_checkpoint(root)
    if found is None:
        raise FileNotFoundError(
            f"--ckpt_path last: no complete checkpoint under '{root}' (trainer.default_root_dir), so there is nothing "
            "to resume. Point --trainer.default_root_dir at the interrupted run's folder, or drop --ckpt_path to start "
            "a new run."
        )
    return found


def icl_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lightning-adapt icl", description=icl.__doc__)
    parser.add_argument("--config", action="config", help="A YAML with the keys below.")
    parser.add_function_arguments(evaluate_checkpoint)
    return parser


def icl(args: list[str]) -> None:
    """Evaluate k-shot prompts on a checkpoint, no training: `icl --config builtin:icl/sentiment.yaml`."""
    parser = icl_parser()
    config = parser.instantiate_classes(parser.parse_args(args))
    config.pop("config", None)
    results = evaluate_checkpoint(**vars(config))
    print(format_table(results))


def compare(args: list[str]) -> None:
    """ICL, fine-tuning and CPT on one timeline, then the report: `compare [--quick | --config FILE]`."""
    compare_command(args)


def report(args: list[str]) -> None:
    """Build the comparison report from separately launched runs: `report RUN_DIR... --out_dir DIR`."""
    report_command(args)


def config_command(path: str | Path) -> str | None:
    """The command a config's first line names (`# lightning-adapt COMMAND --config ...`), or None."""
    lines = Path(path).read_text().splitlines()
    words = lines[0].split() if lines else []
    return words[2] if words[:2] == ["#", "lightning-adapt"] and "--config" in words[3:] else None


def check_config(path: str | Path) -> object:
    """Parse a shipped YAML with the command its first line names (`# lightning-adapt COMMAND --config ...`)."""
    command = config_command(path)
    if command is None:
        raise ValueError(f"{path}: the first line must be the command that runs it: '# lightning-adapt COMMAND --config {path}'.")
    if command in training_modules():
        return training_cli(command, ["--config", str(path)], instantiate=False).config
    if command == "icl":
        return icl_parser().parse_args(["--config", str(path)])
    if command == "compare":
        return compare_parser().parse_args(["--config", str(path)])
    raise ValueError(f"{path}: no config parser for command '{command}'.")


def export(args: list[str]) -> None:
    """Write a trained model (a .ckpt or final/) in a format: `export CKPT --out_dir DIR [--format hf|peft|gguf]`.

    By default a LitGPT checkpoint folder; `--format hf|peft|gguf`: a Hugging Face model, a PEFT adapter or a
    llama.cpp GGUF file. The LitGPT folder holds the merged weights and, for LoRA, the adapter (an Adapter V2 model, which has no plain
    form, whole and only in this format); the other formats also read a LitGPT checkpoint folder such as a run's
    `final/`, or a Hugging Face model folder."""
    parser = ArgumentParser(prog="lightning-adapt export", description=export.__doc__)
    parser.add_argument(
        "ckpt_path", type=Path,
        help="A .ckpt written while training with lightning-adapt (a file, or a folder under DeepSpeed), or a folder "
        "of another format: a LitGPT checkpoint folder (e.g. a run's final/) or a Hugging Face model.",
    )
    parser.add_argument(
        "--format", type=str, default="litgpt",
        help=f"One of {', '.join(format_names())}: a LitGPT checkpoint folder, a transformers model (LoRA merged; "
        "AutoModelForCausalLM.from_pretrained loads it), a LoRA run's adapter alone in PEFT's format, or one GGUF "
        "file for llama.cpp (LoRA merged; needs the GGUF plugin: pip install ./plugins/gguf).",
    )
    parser.add_argument(
        "--outtype", type=Optional[str], default=None,
        help="--format gguf only: the type of the 2-D weights: f16 (default), q8_0, bf16 or f32 (norms and biases "
        "stay f32, as in llama.cpp).",
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="The folder to write.")
    parser.add_argument(
        "--overwrite", type=bool, default=False,
        help="Replace an earlier export of the same format in out_dir (never anything else).",
    )
    parsed = parser.parse_args(args)
    options = {} if parsed.outtype is None else {"outtype": parsed.outtype}
    out = export_model(parsed.ckpt_path, parsed.out_dir, parsed.format, parsed.overwrite, "--overwrite true", **options)
    print(f"Wrote {format_class(parsed.format).description} to {out}")


def convert(args: list[str]) -> None:
    """Make a LitGPT checkpoint folder of a transformers model folder or a GGUF file: `convert hf FOLDER --out DIR`.

    `convert hf FOLDER --out DIR [--model_name NAME]`: a folder `save_pretrained` wrote, of a model LitGPT knows
    (converted by LitGPT's own converter; `convert hf --help`). `convert gguf FILE --out DIR`: a llama.cpp GGUF file
    (needs the GGUF plugin: pip install ./plugins/gguf)."""
    if args[:1] == ["hf"]:
        parser = ArgumentParser(prog="lightning-adapt convert hf", description=convert_from_hf.__doc__)
        parser.add_function_arguments(convert_from_hf, as_positional=True)
        out = convert_from_hf(**parser.parse_args(args[1:]).as_dict())
    else:
        parser = ArgumentParser(prog="lightning-adapt convert", description=convert.__doc__)
        parser.add_function_arguments(convert_checkpoint, as_positional=True)
        out = convert_checkpoint(**parser.parse_args(args).as_dict())
    print(f"Wrote LitGPT checkpoint to {out}")
    print(f"Try it: {try_commands(out)[0]}")


def download(args: list[str]) -> None:
    """Make a built-in model's LitGPT checkpoint offline: `download smollm2-135m-instruct`."""
    parser = ArgumentParser(prog="lightning-adapt download", description=download.__doc__)
    parser.add_function_arguments(download_model, as_positional=True)
    print(f"Checkpoint ready: {download_model(**parser.parse_args(args).as_dict())}")


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "finetune": finetune,
    "cpt": cpt,
    "estimate": estimate,
    "icl": icl,
    "compare": compare,
    "report": report,
    "export": export,
    "convert": convert,
    "download": download,
}


TRACEBACK_VARIABLE = "LIGHTNING_ADAPT_TRACEBACK"


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ModuleNotFoundError)
"""Exceptions a user's input causes (a path, a file's content, a setting, a plugin not installed), shown as their
message alone. Our own DataError, OutputError, ReportError and ICLTaskError are ValueErrors, CheckpointError a
FileNotFoundError."""


def main(argv: list[str] | None = None) -> None:
    """`lightning-adapt COMMAND [options]`; a `--config builtin:COMMAND/NAME.yaml` names a shipped config."""
    quiet_console()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        print(versions())
        return
    if not argv or argv[0] in HELP_FLAGS or argv[0] not in COMMANDS:
        print(top_level_help())
        if argv and argv[0] not in HELP_FLAGS:
            raise SystemExit(f"lightning-adapt: unknown command '{argv[0]}'")
        return
    with reported_errors(f"lightning-adapt {argv[0]}"):
        COMMANDS[argv[0]](resolve_config_args(argv[1:]))


def versions() -> str:
    """`lightning-adapt --version`: ours, and the versions of what a run's numbers depend on."""
    return f"lightning-adapt {version('lightning-adapt')} (" + ", ".join(
        f"{name} {version(name)}" for name in ("litgpt", "lightning", "torch", "jsonargparse")) + ")"


def top_level_help() -> str:
    """`lightning-adapt --help`: each command's one-sentence summary (the first line of its docstring)."""
    lines = [f"  {name:10s} {command.__doc__.splitlines()[0]}" for name, command in COMMANDS.items()]
    return ("usage: lightning-adapt COMMAND [options]\n\ncommands:\n" + "\n".join(lines)
            + "\n\n" + textwrap.fill(f"Shipped configs (--config NAME, from any folder): "
                                     f"{', '.join(builtin_config_names())}.", width=118)
            + "\nOptions of a command: lightning-adapt COMMAND --help. Versions: lightning-adapt --version.")


@contextmanager
def reported_errors(prog: str) -> Iterator[None]:
    """Inside, an error a user's input causes (`USER_ERRORS`) ends the program with `PROG: error: MESSAGE` alone
    (exit status 1): the reason a class gave itself where jsonargparse wrapped it (`own_error`). With
    LIGHTNING_ADAPT_TRACEBACK=1 it is raised as it is."""
    try:
        yield
    except USER_ERRORS as error:
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        raise SystemExit(
            f"{prog}: error: {own_error(error)}\n(set {TRACEBACK_VARIABLE}=1 to see the traceback)"
        ) from None


def own_error(error: BaseException) -> BaseException:
    """The user error behind `error` that a class raised itself (in its `__init__` or `__post_init__`) where
    jsonargparse, instantiating it, wrapped it into an error of its own: a Union's "Does not validate against any of
    the Union subtypes" keeps every subtype's error only in its text, beside the given value. `error` itself when it
    is no such wrapper or wraps no error of a class."""
    pending, seen = [error], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, USER_ERRORS) and not _raised_in_jsonargparse(current):
            return current
        pending += [e for e in (current.__cause__, current.__context__, *_union_errors(current)) if e is not None]
    return error


def _raised_in_jsonargparse(error: BaseException) -> bool:
    """Whether jsonargparse's own code raised `error` (its innermost frame is jsonargparse's)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is None or frame.tb_frame.f_globals.get("__name__", "").startswith("jsonargparse")


def _union_errors(error: BaseException) -> list[BaseException]:
    """The error of each subtype behind a jsonargparse Union error (kept only by the frame that raised it)."""
    found, frame = [], error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_name == "raise_union_unexpected_value":
            found += [e for e in frame.tb_frame.f_locals.get("exceptions", []) if isinstance(e, BaseException)]
        frame = frame.tb_next
    return found


if __name__ == "__main__":
    main()
