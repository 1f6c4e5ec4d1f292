"""In-context learning: task specs, exact and fast k-shot scoring, the ``ICLEvaluation`` callback."""

from lightning_adapt.icl.callback import ICLEvaluation
from lightning_adapt.icl.evaluate import evaluate_checkpoint, format_table
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.task import DataSource, Generation, ICLTask, ICLTaskError

__all__ = [
    "DataSource",
    "Generation",
    "ICLEvaluation",
    "ICLResults",
    "ICLTask",
    "ICLTaskError",
    "LMEvalTask",
    "evaluate_checkpoint",
    "format_table",
]
