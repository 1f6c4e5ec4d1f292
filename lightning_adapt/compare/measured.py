"""What a compare training run measured, kept in memory as it is written: every metric the run logs (the module,
`ICLEvaluation`, `Accounting`), by step, beside the CSV logger that writes the same to metrics.csv; and the per-query
predictions of each ICL evaluation, beside the predictions files. The report is built from these, not from the files
read back (`verdict.run.measured_run`)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from lightning_adapt.icl.callback import ICLEvaluation
from lightning_adapt.icl.results import ICLResults


class MetricsInMemory(Logger):
    """A Lightning logger that keeps what it is given as key -> {step: value}, the last value logged at a step winning:
    what metrics.csv holds, read back (its "step" and "epoch" columns aside). Rank zero keeps them, as it writes."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, dict[int, float]] = {}

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            if key not in ("step", "epoch"):
                self.metrics.setdefault(key, {})[int(step)] = float(value)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters are in the run's record (accounting.json), not among its metrics."""


class PredictionsInMemory(L.Callback):
    """Keeps the per-query predictions of every evaluation the `evaluations` make, by step (what their predictions
    files hold); it must come after them in the Trainer's callbacks, so that it sees each evaluation's results."""

    def __init__(self, evaluations: list[ICLEvaluation]) -> None:
        self.evaluations = evaluations
        self.predictions: dict[int, list[dict[str, Any]]] = {}
        self._seen: list[ICLResults | None] = [None] * len(evaluations)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(trainer.global_step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(trainer.global_step)  # a subsampling evaluation's last point, scored whole at the end

    def _keep(self, step: int) -> None:
        for index, evaluation in enumerate(self.evaluations):
            if evaluation.results is not None and evaluation.results is not self._seen[index]:
                self._seen[index] = evaluation.results
                self.predictions[step] = evaluation.results.predictions
