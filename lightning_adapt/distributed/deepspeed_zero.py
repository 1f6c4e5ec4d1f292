"""DeepSpeed ZeRO stages 2 and 3 (`--trainer.strategy deepspeed_stage_2|deepspeed_stage_3`) for lightning-adapt's
modules: Lightning's `DeepSpeedStrategy` with checkpoints of the trainable weights only, written atomically and
checked to hold data only before DeepSpeed reads them on resume.

A checkpoint is DeepSpeed's own folder (named like a `.ckpt`; one file of model states and one of optimizer states
per process), saved with DeepSpeed's `exclude_frozen_parameters` so the frozen base is never written. Under stage 3
the trainable weights are partitioned, so they are also gathered at full shape into the `state_dict` entry of the
model-states file of process 0; under stage 2 DeepSpeed's own `module` entry holds them whole.
`lightning_adapt.model.training_checkpoints` reads either as the dict a one-file `.ckpt` holds, so that
`lightning-adapt export` reads both.

DeepSpeed runs on CUDA GPUs; on the CPU it is refused before training unless DeepSpeed's own CPU accelerator is asked
for (`DS_ACCELERATOR=cpu`, over gloo), which is how the tests run it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.strategies import DeepSpeedStrategy as LightningDeepSpeedStrategy

from lightning_adapt.core.atomic import atomic_directory, only_ours, read_marker
from lightning_adapt.distributed.sharding import FSDP2_NAME, StrategyError, full_trainable_state
from lightning_adapt.model.loading import CheckpointError
from lightning_adapt.model.training_checkpoints import check_deepspeed_files, check_resumed_by, states_folder

DEEPSPEED_NAMES = {2: "deepspeed_stage_2", 3: "deepspeed_stage_3"}
CHECKPOINT_KIND = "DeepSpeed checkpoint"
TAG = "checkpoint"
"""The tag (sub-folder) Lightning's DeepSpeedStrategy saves every checkpoint under."""


class DeepSpeedStrategy(LightningDeepSpeedStrategy):
    """DeepSpeed ZeRO stage 2 (optimizer state and gradients partitioned) or 3 (parameters too) for lightning-adapt's
    modules. The model is built whole on every process and partitioned when DeepSpeed takes it over (stage 3 does
    not build it under `deepspeed.zero.Init`, because the base weights are loaded into it as it is built).
    Checkpoints hold the trainable weights only (DeepSpeed's `exclude_frozen_parameters`); resume needs the same
    number of processes (DeepSpeed partitions the optimizer state by process).

    Args:
        stage: The ZeRO stage, 2 or 3.
        timeout: How long a collective may wait for the other processes before the run fails.
        **kwargs: Lightning `DeepSpeedStrategy`'s other arguments.
    """

    def __init__(self, stage: int = 2, timeout: timedelta | None = default_pg_timeout, **kwargs: Any) -> None:
        if stage not in DEEPSPEED_NAMES:
            raise StrategyError(f"DeepSpeed stage {stage} is not supported: use stage 2 or 3 "
                                f"(--trainer.strategy {' or '.join(DEEPSPEED_NAMES.values())}).")
        check_deepspeed_installed(DEEPSPEED_NAMES[stage])
        kwargs.setdefault("exclude_frozen_parameters", True)
        super().__init__(stage=stage, timeout=timeout, **kwargs)

    @property
    def on_cuda(self) -> bool:
        return isinstance(self.accelerator, CUDAAccelerator)

    @property
    def root_device(self) -> torch.device:
        # DeepSpeed's engine takes the device's index as its rank on the device; the CPU's has none
        device = super().root_device
        return device if device.type != "cpu" else torch.device("cpu", 0)

    def setup_environment(self) -> None:
        if self.on_cuda:
            return super().setup_environment()
        if os.environ.get("DS_ACCELERATOR") != "cpu":
            raise StrategyError(
                f"DeepSpeed needs CUDA GPUs, but this run is on {type(self.accelerator).__name__}. On the CPU use "
                "--trainer.strategy fsdp2 (sharded) or ddp; DS_ACCELERATOR=cpu runs DeepSpeed's CPU accelerator over "
                "gloo instead (slow; for tests)."
            )
        DDPStrategy.setup_environment(self)  # Lightning's DeepSpeedStrategy refuses every accelerator but CUDA

    def setup_distributed(self) -> None:
        if self.on_cuda:
            return super().setup_distributed()
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def model_sharded_context(self) -> Any:
        return nullcontext()

    def _format_config(self) -> None:
        super()._format_config()
        clip = getattr(getattr(self.lightning_module, "optimization", None), "gradient_clip_val", None)
        if not self.config.get("gradient_clipping") and clip:  # the module's own setting, as without DeepSpeed
            self.config["gradient_clipping"] = float(clip)

    def init_deepspeed(self) -> None:
        with warnings.catch_warnings():  # a lightning-adapt module's clipping is passed to DeepSpeed (above)
            warnings.filterwarnings("ignore", message="Since DeepSpeed handles gradient clipping internally")
            super().init_deepspeed()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """Under stage 3 the trainable weights at full shape on global rank 0 (every process takes part); under stage 2
        the module's own state, whose parameters are whole."""
        if not self.zero_stage_3:
            return super().lightning_module_state_dict()
        return full_trainable_state(self.model)

    def save_checkpoint(self, checkpoint: dict, filepath: str | Path, storage_options: Any | None = None) -> None:
        """DeepSpeed's checkpoint folder at `filepath`, written by every process into a staging folder that becomes
        `filepath` once all have written their part (`atomic_directory`: a kill leaves the previous checkpoint or
        none, and only a checkpoint folder of ours is ever replaced). Global rank 0 stages and swaps."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options.")
        target = Path(self.broadcast(str(filepath)))
        client = {k: v for k, v in checkpoint.items() if k != "optimizer_states" and (k != "state_dict" or self.zero_stage_3)}
        staged = atomic_directory(target, CHECKPOINT_KIND, overwrite=True) if self.is_global_zero else nullcontext()
        with staged as staging:
            staging = self.broadcast(str(staging) if self.is_global_zero else None)
            self.deepspeed_engine.save_checkpoint(staging, client_state=client, tag=TAG,
                                                  exclude_frozen_parameters=self.exclude_frozen_parameters)
            self.barrier()
        self.barrier()

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
        """Resume from a checkpoint folder of a run on as many processes; every file in it is first read as data
        only (DeepSpeed's own loader unpickles in full)."""
        path = check_resumed_by(self.broadcast(str(checkpoint_path)), deepspeed=True)
        check_deepspeed_files(path)
        saved = len(list(states_folder(path).glob("*optim_states.pt")))
        if saved != self.world_size:
            raise CheckpointError(
                f"'{path}' was saved by {saved} processes, and DeepSpeed resumes its partitioned optimizer state only "
                f"on as many (this run has {self.world_size}). Resume with --trainer.devices and --trainer.num_nodes "
                f"giving {saved} processes, or export the checkpoint and train on from the exported folder."
            )
        return super().load_checkpoint(path, weights_only)

    def remove_checkpoint(self, filepath: str | Path) -> None:
        """Remove a checkpoint folder this strategy wrote (`ModelCheckpoint` with `save_top_k`) when it holds nothing
        else; one holding files we did not write is kept, with a warning."""
        if not self.is_global_zero or read_marker(Path(filepath)) != CHECKPOINT_KIND:
            return
        if only_ours(Path(filepath), CHECKPOINT_KIND):
            shutil.rmtree(filepath)
        else:
            warnings.warn(f"Kept the pruned checkpoint '{filepath}': it holds files lightning-adapt did not write.")


def check_deepspeed_installed(strategy: str) -> None:
    """Refuse a DeepSpeed strategy without the deepspeed package, naming the extra that installs it."""
    if importlib.util.find_spec("deepspeed") is None:
        raise ModuleNotFoundError(
            f"--trainer.strategy {strategy} needs DeepSpeed, which is not installed: pip install --no-build-isolation "
            f'"lightning-adapt[deepspeed]" (it builds against the installed torch), or use --trainer.strategy '
            f"{FSDP2_NAME} (sharded) or ddp."
        )


for _stage, _name in DEEPSPEED_NAMES.items():
    StrategyRegistry.register(_name, DeepSpeedStrategy, description=f"DeepSpeed ZeRO stage {_stage}", stage=_stage,
                              override=True)
