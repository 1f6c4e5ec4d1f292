"""A console that shows our phases, progress bars and the verdict: filters for the lines Lightning and PyTorch print
that say nothing to a user of ours, each matched by its exact text (and category), never by a blanket ignore.

`quiet_console()` installs them for the whole process (the CLI calls it first); `quiet_probe()` also hides, while
entered, the lines only a Trainer of the estimate's probe prints. `progress_bar()` is the Trainer's own progress bar
without Lightning 2.6's "Epoch 0/-2" when epochs are unbounded (a run budgeted in steps)."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
"""Where Lightning's `rank_zero_info` lines are logged (each package points lightning_utilities' at its own)."""
CUDA_LOGGER = "lightning.pytorch.accelerators.cuda"
"""Where Lightning logs the CUDA devices each process sees."""
TRAINER_LINES = (
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
    "💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels]",
    "GPU available: ",
    "TPU available: ",
    "LOCAL_RANK: ",
    "`Trainer.fit` stopped: ",
    *(f"`Trainer({flag}={one})` was configured so " for one in ("1", "1.0") for flag in (
        "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches", "val_check_interval")),
)
"""Starts of the lines every Trainer logs when it sets up and stops (the litlogger and litmodels advertisements,
the devices seen, a limit of one batch restated, why fit ended): said once per run, they bury our own lines."""
DEPRECATIONS = (
    (FutureWarning, "`isinstance(treespec, LeafSpec)` is deprecated"),
)
"""Deprecation warnings raised inside Lightning's and PyTorch's own code, which a user cannot act on:
(category, start of the message)."""
PROBE_WARNINGS = (
    (UserWarning, "You passed in a `val_dataloader` but have no `validation_step`"),
)
"""Warnings of the Trainer that draws a run's micro-batches for the estimate (it computes nothing, validates
nothing): (category, start of the message)."""


class _DropLines(logging.Filter):
    """Drops log records whose message starts with one of `starts`."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


_TRAINER_FILTER = _DropLines(TRAINER_LINES)


def _ignore(rules: tuple[tuple[type[Warning], str], ...]) -> None:
    for category, start in rules:
        warnings.filterwarnings("ignore", message=re.escape(start), category=category)


def _trainer_loggers() -> list[logging.Logger]:
    return [logging.getLogger(name) for name in (*RANK_ZERO_LOGGERS, CUDA_LOGGER)]


def quiet_console() -> None:
    """Hide, for the rest of the process, the Trainer's setup and stop lines (`TRAINER_LINES`) and the deprecation
    warnings of Lightning's and PyTorch's own code (`DEPRECATIONS`). Calling it again changes nothing."""
    for logger in _trainer_loggers():
        logger.addFilter(_TRAINER_FILTER)  # the same filter object is added once
    _ignore(DEPRECATIONS)


@contextmanager
def quiet_probe(categories: tuple[type[Warning], ...] = ()) -> Iterator[None]:
    """While entered: what `quiet_console` hides, the warnings of a Trainer that only draws batches
    (`PROBE_WARNINGS`) and any warning of `categories` (a run's own warnings, which the run itself gives when it
    starts); on exit the console is as it was (quiet if `quiet_console` made it so)."""
    added = [logger for logger in _trainer_loggers() if _TRAINER_FILTER not in logger.filters]
    try:
        with warnings.catch_warnings():
            quiet_console()
            _ignore(PROBE_WARNINGS)
            for category in categories:
                warnings.filterwarnings("ignore", category=category)
            yield
    finally:
        for logger in added:
            logger.removeFilter(_TRAINER_FILTER)


class StepRichProgressBar(RichProgressBar):
    """Lightning's rich progress bar; with unbounded epochs (max_epochs=-1, a budget in steps) the training bar says
    "Epoch 0", not "Epoch 0/-2" (Lightning 2.6; fixed upstream by Lightning-AI/pytorch-lightning#21924)."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = super()._get_train_description(current_epoch)
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            description = description.replace(f"/{self.trainer.max_epochs - 1}", "", 1)
        return description


def progress_bar() -> ProgressBar:
    """The progress bar a Trainer shows by default (rich when installed, else tqdm), as `StepRichProgressBar`."""
    return StepRichProgressBar() if _RICH_AVAILABLE else TQDMProgressBar()
