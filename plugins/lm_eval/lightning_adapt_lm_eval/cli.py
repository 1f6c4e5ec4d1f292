"""`lightning-adapt-lm-eval`: lm-eval's own command line with the `lightning-adapt` model registered.

lm-eval 0.4.13 looks models up only in its registry (its built-in `MODEL_MAPPING`, no entry-point group), so
`lm_eval --model lightning-adapt` works only in a process that imported this package; this command is that process.
"""

from argparse import Namespace

import lightning_adapt_lm_eval  # noqa: F401  (registers the model)

PROG = "lightning-adapt-lm-eval"


def main() -> None:
    """lm-eval's `cli_evaluate`, with the checkpoint folder of `--model lightning-adapt` checked before lm-eval loads
    its tasks, and an error of the user's input shown as one line (as `lightning-adapt` shows it)."""
    from lightning_adapt.cli import reported_errors
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    parser = HarnessCLI()
    args = parser.parse_args()
    with reported_errors(PROG):
        check_model_args(args)
        parser.execute(args)


def check_model_args(args: Namespace) -> None:
    """Refuse the missing or incomplete checkpoint folder of `--model lightning-adapt --model_args checkpoint_dir=...`
    (the built-in SmolLM2 folder is made when missing)."""
    from lightning_adapt.model.loading import resolve_checkpoint_dir

    model_args = getattr(args, "model_args", None)
    ours = getattr(args, "model", None) == "lightning-adapt" and isinstance(model_args, dict)
    if ours and "checkpoint_dir" in model_args:
        resolve_checkpoint_dir(model_args["checkpoint_dir"])


if __name__ == "__main__":
    main()
