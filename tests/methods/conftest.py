from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import run_processes, write_instruction_file
from tests.icl.conftest import reviews, write_jsonl


def write_sharding_data(folder: Path) -> Path:
    """ICL demonstrations and queries, instructions and general text for the two-process runs of test_sharding's
    SCRIPT."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "demos.jsonl", reviews(10, 0))
    write_jsonl(folder / "queries.jsonl", reviews(7, 1))
    write_instruction_file(folder / "train.jsonl", n=32)
    (folder / "general.txt").write_text("The river runs past the town. The town has a mill and a bridge.\n\n" * 20)
    return folder


@pytest.fixture(scope="session")
def script_data(tmp_path_factory) -> Path:
    return write_sharding_data(tmp_path_factory.mktemp("script-data"))


@pytest.fixture(scope="session")
def script_run(tmp_path_factory, script_data) -> Callable[..., Path]:
    """`run(kind, checkpoint, method)`: the folder of test_sharding's SCRIPT run on two processes with that strategy
    kind, model and method, run once per session (the DDP references serve the FSDP and the DeepSpeed tests).
    DeepSpeed kinds run on DeepSpeed's CPU accelerator."""
    from tests.methods.test_sharding import SCRIPT

    done: dict[tuple[str, str, str], Path] = {}

    def run(kind: str, checkpoint: Path, method: str) -> Path:
        key = (kind, str(checkpoint), method)
        if key not in done:
            out = tmp_path_factory.mktemp(f"{kind}-{method}") / "run"
            env = {"DS_ACCELERATOR": "cpu"} if kind.startswith("deepspeed") else {}
            run_processes(SCRIPT, [kind, str(checkpoint), str(script_data), str(out), method], out.parent,
                          processes=2, **env)
            done[key] = out
        return done[key]

    return run
