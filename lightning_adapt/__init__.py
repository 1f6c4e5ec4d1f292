"""lightning-adapt: in-context learning, fine-tuning and continual pretraining of LitGPT models on one timeline."""

from lightning_adapt.record.accounting import Accounting
from lightning_adapt.compare import Compare, run_compare
from lightning_adapt.compare.settings import Search
from lightning_adapt.data.corpus import Replay, TextCorpus
from lightning_adapt.data.instructions import Instructions
from lightning_adapt.data.records import DataError
from lightning_adapt.distributed.deepspeed_zero import DeepSpeedStrategy
from lightning_adapt.estimate import (
    ICLEstimate,
    InsufficientMemoryError,
    MemoryEstimate,
    TrainingEstimate,
    estimate_icl,
    estimate_training,
    format_estimate,
)
from lightning_adapt.formats.base import ExportError
from lightning_adapt.formats.litgpt import export_checkpoint
from lightning_adapt.formats.export import ExportSettings
from lightning_adapt.icl import (
    Check,
    Context,
    Generation,
    ICLEvaluation,
    ICLResults,
    ICLTask,
    LMEvalTask,
    Selection,
    evaluate_checkpoint,
)
from lightning_adapt.techniques import AdapterV2, LoRA, Technique, TechniqueError
from lightning_adapt.methods import (
    AdaptationModule,
    ContinualPretraining,
    FineTuning,
    NoTargetTokensError,
    Optimization,
    Rewarming,
)
from lightning_adapt.methods.export import export_model
from lightning_adapt.model.loading import CheckpointError
from lightning_adapt.verdict.report import build_report
from lightning_adapt.verdict.run import ReportError
from lightning_adapt.distributed.sharding import FSDP1Strategy, FSDP2Strategy, StrategyError

__all__ = [
    "Accounting",
    "AdaptationModule",
    "AdapterV2",
    "Check",
    "CheckpointError",
    "Compare",
    "Context",
    "ContinualPretraining",
    "DataError",
    "DeepSpeedStrategy",
    "ExportError",
    "ExportSettings",
    "FSDP1Strategy",
    "FSDP2Strategy",
    "Generation",
    "FineTuning",
    "ICLEstimate",
    "ICLEvaluation",
    "ICLResults",
    "ICLTask",
    "Instructions",
    "InsufficientMemoryError",
    "LMEvalTask",
    "LoRA",
    "MemoryEstimate",
    "NoTargetTokensError",
    "Optimization",
    "Replay",
    "ReportError",
    "Search",
    "Selection",
    "StrategyError",
    "Rewarming",
    "Technique",
    "TechniqueError",
    "TextCorpus",
    "TrainingEstimate",
    "build_report",
    "estimate_icl",
    "estimate_training",
    "evaluate_checkpoint",
    "export_checkpoint",
    "export_model",
    "format_estimate",
    "run_compare",
]
