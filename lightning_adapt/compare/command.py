"""`lightning-adapt compare`: ICL, fine-tuning and continual pretraining of one base model, each run measured the same
way (ICLEvaluation + Accounting), then one report; the parser of its YAML and its command line."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

from lightning_adapt.compare.config import Compare
from lightning_adapt.compare.run import dry_run, run_compare

set_parsing_settings(docstring_parse_attribute_docstrings=True)

PROFILES = Path(__file__).parents[1] / "configs" / "compare"
"""The shipped compare configs: `demo.yaml` (the default) and `quick.yaml` (`--quick`)."""


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
