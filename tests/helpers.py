"""Small builders shared by the tests: instruction data files and a quiet CPU Trainer."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger

COLOURS = ["red", "green", "blue", "yellow", "black"]


def write_instruction_file(path: Path, n: int = 48) -> Path:
    """A small learnable task: name the colour assigned to a number."""
    rows = [{"instruction": f"Which colour is number {i}?", "input": "", "output": COLOURS[i % 5]} for i in range(n)]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def quiet_trainer(root: Path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(root / "logs", name="", version=""),
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        check_val_every_n_epoch=None,
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)


# DDP on two CPU processes with a short collective timeout, so that ranks that disagree fail instead of hanging.
DDP_CLI_ARGS = [
    "--trainer.strategy", "lightning.pytorch.strategies.DDPStrategy", "--trainer.strategy.timeout", "0:01:30",
    "--trainer.devices", "2",
]  # fmt: skip
