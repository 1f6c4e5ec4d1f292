"""`lightning-adapt-lm-eval`: lm-eval's own command line with the `lightning-adapt` model registered.

lm-eval 0.4.13 looks models up only in its registry (its built-in `MODEL_MAPPING`, no entry-point group), so
`lm_eval --model lightning-adapt` works only in a process that imported this package; this command is that process.
"""

import lightning_adapt_lm_eval  # noqa: F401  (registers the model)


def main() -> None:
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
