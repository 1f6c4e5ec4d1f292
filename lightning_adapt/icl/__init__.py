"""In-context learning: task specs (with documents in the prompt and a held-out query split), exact and fast k-shot
scoring, the ``ICLEvaluation`` callback."""

from lightning_adapt.icl.callback import ICLEvaluation
from lightning_adapt.icl.context import Context
from lightning_adapt.icl.evaluate import evaluate_checkpoint, format_table
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.selection import Selection
from lightning_adapt.icl.task import Check, DataSource, Generation, ICLTask, ICLTaskError

__all__ = [
    "Check",
    "Context",
    "DataSource",
    "Generation",
    "ICLEvaluation",
    "ICLResults",
    "ICLTask",
    "ICLTaskError",
    "LMEvalTask",
    "Selection",
    "evaluate_checkpoint",
    "format_table",
]
