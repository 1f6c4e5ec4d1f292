"""Small builders shared by the tests: instruction data files and a quiet CPU Trainer."""

from __future__ import annotations

import contextlib
import functools
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


ROOT = Path(__file__).parents[1]


PEAK_RSS_CLI = """
import atexit, sys

def report_peak():
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"peak RSS: {kib * 1024} bytes", file=sys.stderr)

atexit.register(report_peak)
from lightning_adapt.cli import main
main(sys.argv[1:])
"""


def run_cli_capped(args: list[str], cap_bytes: int, cwd: Path | None = None, data_only: bool = False) -> tuple[int, str, int]:
    """`lightning-adapt *args` in a process whose address space (with `data_only` its data segment) is capped at
    `cap_bytes`, and CPU time at 300 s: its exit code, stderr and peak resident memory in bytes. The peak is the process's own high-water mark
    (/proc/self/status VmHWM, read at exit): `ru_maxrss` of a child also counts the memory of the test process it
    was forked from, before it ran Python anew."""

    def cap() -> None:
        import resource

        limit = resource.RLIMIT_DATA if data_only else resource.RLIMIT_AS
        resource.setrlimit(limit, (cap_bytes, cap_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (300, 300))

    env = subprocess_env(PYTHONWARNINGS="ignore", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_CLI, *args], capture_output=True, text=True, cwd=cwd,
                            env=env, preexec_fn=cap, timeout=600)
    peaks = [int(line.split()[2]) for line in result.stderr.splitlines() if line.startswith("peak RSS: ")]
    assert peaks, f"no peak reported (killed?): rc {result.returncode}\n{result.stderr[-3000:]}"
    return result.returncode, result.stderr, peaks[-1]


def python_command(processes: int = 1) -> list[str]:
    """How a test starts a run of `processes` processes: plain Python, which Lightning's own launcher turns into
    several (it starts the others only once the first has reached `fit`, so their imports, seconds each, run one
    after the other), or for several torchrun, which starts them all at once, as users of torchrun do (`--standalone`:
    a free port on localhost). Lightning's launcher keeps tests of its own (the CLI, QLoRA and ICL under DDP, compare
    under FSDP2)."""
    if processes == 1:
        return [sys.executable]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]


def start(command: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """Start `command` (after `python_command`) in its own process group, with this repository importable."""
    environment = subprocess_env(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                                 PYTHONWARNINGS="ignore", **env)
    return subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def launch_cli(args: list[str], cwd: Path, processes: int = 1, **env: str) -> subprocess.Popen:
    """`python -m lightning_adapt *args` (`processes`: see `python_command`)."""
    return start([*python_command(processes), "-m", "lightning_adapt", *args], cwd, **env)


def kill(process: subprocess.Popen) -> None:
    """SIGKILL a run started by `start`: its process group and every process it started (torchrun starts its
    workers in sessions of their own), as if the machine went down."""
    import psutil

    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        family = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait()


def finish(*processes: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for runs started by `start` and return the first one's stdout; each must succeed. Every process group is
    killed if one outlives `timeout`: a deadlock fails the test instead of hanging it."""
    import pytest

    outputs = []
    for process in processes:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                kill(other)
            pytest.fail(f"a run did not finish in {timeout} s (deadlock?)")
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return outputs[0]


def run_processes(script: str, args: list[str], tmp_path: Path, processes: int = 1, timeout: float = 300,
                  **env: str) -> str:
    """Run `script` (e.g. a DDP Trainer on two CPU devices) with `args` from the repository root, and `env` added to
    its environment, and return its stdout (`processes`: see `python_command`)."""
    path = tmp_path / "launch.py"
    path.write_text(script)
    return finish(start([*python_command(processes), str(path), *args], ROOT, **env), timeout=timeout)


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


@functools.cache
def local_task_manager(folder: Path):
    """lm-eval's `TaskManager` over the task YAMLs in `folder` alone, for the reference runs of `simple_evaluate`:
    the tests' YAMLs stand alone, and indexing lm-eval's own task YAMLs as well takes seconds each time."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False)


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


OWN_INSTRUCTIONS = ["--data.init_args.val_path", "null", "--data.init_args.instruction_template", "null",
                    "--data.init_args.output_template", "null"]
"""The overrides that point a shipped finetune config (trained on the built-in review-sentiment data) at instruction
rows of one's own (`--data.init_args.path FILE` beside them), as the configs' header says."""
