"""Small builders shared by the tests: instruction data files and a quiet CPU Trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch
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


LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment for a launched run, without the launch variables an in-process distributed test
    may have left here (a child inheriting MASTER_PORT would try to listen on a port this process holds)."""
    return {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES} | extra


def run_processes(script: str, args: list[str], tmp_path: Path, timeout: float = 300) -> str:
    """Run `script` (a launcher of several processes, e.g. a DDP Trainer) with `args` from the repository root and
    return its stdout; the whole process group is killed if it outlives `timeout` (a deadlock fails the test)."""
    import pytest

    path = tmp_path / "launch.py"
    path.write_text(script)
    root = str(Path(__file__).parents[1])
    env = subprocess_env(PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, str(path), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
        env=env, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # every rank: a deadlock must not outlive the test
        pytest.fail(f"the processes did not finish in {timeout} s (deadlock?)")
    assert process.returncode == 0, stderr[-3000:]
    return stdout


LOCAL_TASK_HEADER = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
fewshot_split: test
"""


def local_task_yaml(name: str, data: Path, body: str) -> str:
    """An lm-eval task YAML named `name` over the local JSONL file `data` (few-shot examples from the same split),
    `body` giving its output type, prompt and metrics."""
    return LOCAL_TASK_HEADER.format(name=name, data=data) + body


def spread_weights(checkpoint_dir: Path, seed: int = 0) -> Path:
    """Replace the tiny checkpoint's near-zero initial weights by ones with unit-scale activations, so that attention
    is far from uniform and a swapped or transposed weight changes the logits by far more than the tolerance."""
    path = checkpoint_dir / "lit_model.pth"
    generator = torch.Generator().manual_seed(seed)
    state = torch.load(path, weights_only=True)
    for key, value in state.items():
        noise = torch.randn(value.shape, generator=generator)
        if key.endswith("norm_1.weight") or key.endswith("norm_2.weight") or key.endswith("ln_f.weight"):
            state[key] = 1 + 0.3 * noise
        elif value.ndim == 2:
            state[key] = 2 * noise / value.shape[1] ** 0.5
        else:
            state[key] = 0.5 * noise
    torch.save(state, path)
    return checkpoint_dir


def assert_no_output(out_dir: Path) -> None:
    """Nothing at `out_dir`, and no staging folder of it left beside it."""
    assert not out_dir.exists()
    if out_dir.parent.exists():
        assert not [p.name for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}.")]
