"""`lightning-adapt compare`: ICL, fine-tuning and continual pretraining of one base model, each run measured the same
way (ICLEvaluation + Accounting), then one report; the parser of its YAML and its command line."""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from lightning_adapt.compare.config import Compare
from lightning_adapt.compare.run import dry_run, run_compare
from lightning_adapt.compare.settings import METHOD_SETTINGS, RUN_ONLY
from lightning_adapt.configs import CONFIGS_DIR, resolve_config_args

set_parsing_settings(docstring_parse_attribute_docstrings=True)

PROFILES = CONFIGS_DIR / "compare"
"""The shipped compare configs: `demo.yaml` (the default) and `quick.yaml` (`--quick`)."""
EMPTY_HELP = "_EMPTY_HELP_"
"""What jsonargparse 4.41 gives an undocumented option as its help."""
DEFAULTED = ("checkpoint_dir", "tasks")
"""`Compare` fields without a default of their own: the shipped demo config gives them when no --config is named."""


def compare_parser() -> ArgumentParser:
    """The `lightning-adapt compare` parser: a Compare config (YAML via --config), any key overridable."""
    parser = ArgumentParser(prog="lightning-adapt compare", description=compare_command.__doc__)
    parser.add_argument(
        "--config", action=ActionConfigFile,
        help="A compare YAML: your own, or a shipped one (builtin:compare/demo.yaml, the default; "
        "builtin:compare/quick.yaml; builtin:compare/sweep.yaml).",
    )
    parser.add_argument("--quick", action="store_true", help="Run the short profile (builtin:compare/quick.yaml).")
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


def compare_help() -> str:
    """`compare --help`: the options, none marked required that the default config gives (`DEFAULTED`), then the
    keys inside `--finetune` and `--cpt` (each a mapping, or a list of them), which a Union option's own line hides."""
    parser = compare_parser()
    parser.required_args -= set(DEFAULTED)
    for action in parser._actions:
        if action.dest in DEFAULTED:
            action._required = False  # what jsonargparse's help prints as (required, ...)
            action.help += " The default config gives it when no --config is named."
    sections = [parser.format_help()]
    for section, settings in METHOD_SETTINGS.items():
        module = ArgumentParser()
        module.add_class_arguments(settings.module_class, nested_key=section)
        helps = {action.dest: action.help for action in module._actions}
        helps |= {f"{section}.{key}": text for key, text in RUN_ONLY.items()}
        sections.append(class_options_help(
            settings, section, f"keys of --{section} (one mapping, or a list of them, each with its own name; e.g. "
            f"--{section}.max_steps 80, or in YAML {section}: {{max_steps: 80}})", helps))
    return "\n".join(sections)


def class_options_help(cls: type, nested_key: str, title: str, helps: dict[str, str] | None = None) -> str:
    """The `--help` section, headed `title`, of the options `cls`'s signature gives under `nested_key` (a command's
    help lists the keys inside an option whose own line shows only its type); `helps` gives the text of options
    `cls` documents nowhere, by their full key."""
    parser = ArgumentParser(prog="lightning-adapt")
    parser.add_class_arguments(cls, nested_key=nested_key, fail_untyped=True)
    for action in parser._actions:
        if action.help in (None, "", EMPTY_HELP) and action.dest in (helps or {}):
            action.help = helps[action.dest]
    parser.groups[nested_key].title = title
    parser.groups[nested_key].description = None
    text = parser.format_help()
    return text[text.index(title):]


def with_profile(args: list[str]) -> list[str]:
    """`args` led by the shipped demo config unless they name a --config; `--quick` picks the quick profile. A
    `--config builtin:compare/NAME.yaml` names a shipped config."""
    quick = "--quick" in args
    args = resolve_config_args([arg for arg in args if arg != "--quick"])
    if quick or not any(arg == "--config" or arg.startswith("--config=") for arg in args):
        args = ["--config", str(PROFILES / ("quick.yaml" if quick else "demo.yaml")), *args]
    return args


def compare_command(args: list[str]) -> None:
    """Run ICL, fine-tuning and CPT on one base model and write the comparison report.

    `lightning-adapt compare` runs the shipped demo (builtin:compare/demo.yaml), `--quick` its short profile,
    `--config FILE` any comparison (your own YAML, or builtin:compare/NAME.yaml); further `--key value` arguments
    override the config; `--dry_run` prints the planned runs' estimates instead of running them.
    """
    if "-h" in args or "--help" in args:
        print(compare_help())
        return
    compare = parse_compare(with_profile(args))
    if "--dry_run" in args:
        print(dry_run(compare))
    else:
        run_compare(compare)
