"""Resume means resume: a training subprocess killed with SIGKILL after a checkpoint, relaunched with
`--ckpt_path last`, logs the same losses as an uninterrupted run (dropout, replay, streaming and DDP included)."""

import csv
import random
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import torch

from lightning_adapt.cli import main
from lightning_adapt.methods.checkpoints import RNG_KEY
from lightning_adapt.methods.checkpoints import load_module
from tests.helpers import DDP_CLI_ARGS, finish, kill, launch_cli, write_instruction_file, OWN_INSTRUCTIONS

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "lightning_adapt" / "configs"
STEPS = 24
CHECKPOINT_EVERY = [
    "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
    "--trainer.callbacks.every_n_train_steps=2", "--trainer.callbacks.save_top_k=-1",
]  # fmt: skip


def common(root: Path) -> list[str]:
    return [
        "--trainer.max_steps", str(STEPS), "--trainer.val_check_interval", "8", "--trainer.limit_val_batches", "2",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root), "--model.export", "false", *CHECKPOINT_EVERY,
    ]  # fmt: skip


def finetune_args(checkpoint: Path, data: Path, config: str) -> list[str]:
    return [
        "finetune", "--config", str(CONFIGS / "finetune" / config), "--model.checkpoint_dir", str(checkpoint),
        "--model.max_seq_length", "64", "--model.optimization.warmup_steps", "4",
        "--model.optimization.learning_rate", "0.003",
        "--data.init_args.path", str(data), *OWN_INSTRUCTIONS, "--data.init_args.batch_size", "4",
    ]  # fmt: skip


def cpt_args(checkpoint: Path, corpus: Path, streaming: bool) -> list[str]:
    return [
        "cpt", "--config", str(CONFIGS / "cpt" / "domain.yaml"), "--model.checkpoint_dir", str(checkpoint),
        "--model.max_seq_length", "32", "--model.optimization.warmup_steps", "4",
        "--model.optimization.learning_rate", "0.003",
        "--data.init_args.path", str(corpus), "--data.init_args.val_path", "null", "--data.init_args.val_fraction",
        "0.2", "--data.init_args.replay.ratio", "0.25", "--data.init_args.streaming", str(streaming).lower(),
        "--data.init_args.batch_size", "4",
    ]  # fmt: skip


def write_corpus(folder: Path) -> Path:
    folder.mkdir()
    for i in range(20):
        (folder / f"doc{i}.txt").write_text(f"Record {i}: the river Vell runs past the town of Wrenmouth. " * 6)
    return folder


def complete_checkpoints(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.ckpt") if zipfile.is_zipfile(p)]


def kill_after_checkpoint(process: subprocess.Popen, root: Path, at_least: int) -> None:
    """SIGKILL the whole process group once `at_least` complete checkpoints exist."""
    deadline = time.monotonic() + 600
    while len(complete_checkpoints(root)) < at_least:
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    kill(process)
    assert process.returncode == -signal.SIGKILL


def losses(root: Path, version: int) -> dict[int, float]:
    with open(root / "logs" / f"version_{version}" / "metrics.csv") as fp:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(fp) if r.get("train/loss")}


def assert_resumes_exactly(tmp_path: Path, args: list[str], seed: int, processes: int = 1) -> None:
    """A run killed after a random number of checkpoints and resumed from the last logs the losses of one that ran
    straight through (in this process when it needs only one: the resumed run starts in a fresh one all the same)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    if processes == 1:
        main([*args, *common(straight)])
    else:
        finish(launch_cli([*args, *common(straight)], tmp_path, processes))
    expected = losses(straight, 0)
    assert len(expected) == STEPS

    process = launch_cli([*args, *common(killed)], tmp_path, processes)
    kill_after_checkpoint(process, killed, at_least=random.Random(seed).randint(2, 5))
    finish(launch_cli([*args, *common(killed), "--ckpt_path", "last"], tmp_path, processes), timeout=600)
    resumed = losses(killed, 1)
    first = min(resumed)
    assert 3 <= first <= STEPS and max(resumed) == STEPS  # a loss is logged at the step it completes
    assert resumed == pytest.approx({step: expected[step] for step in resumed}, abs=1e-6, rel=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0])
def test_lora_with_dropout_resumes_exactly_after_sigkill(tmp_path, tiny_checkpoint, seed):
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)
    assert_resumes_exactly(tmp_path, finetune_args(tiny_checkpoint, data, "lora.yaml"), seed)


@pytest.mark.slow
def test_full_finetuning_resumes_exactly_after_sigkill(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)
    assert_resumes_exactly(tmp_path, finetune_args(tiny_checkpoint, data, "full.yaml"), seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("streaming", [False, True])
def test_cpt_with_replay_resumes_exactly_after_sigkill(tmp_path, tiny_checkpoint, streaming):
    corpus = write_corpus(tmp_path / "corpus")
    assert_resumes_exactly(tmp_path, cpt_args(tiny_checkpoint, corpus, streaming), seed=2 + streaming)


@pytest.mark.slow
def test_lora_under_ddp_resumes_exactly_after_sigkill(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)
    args = [*finetune_args(tiny_checkpoint, data, "lora.yaml"), *DDP_CLI_ARGS]
    assert_resumes_exactly(tmp_path, args, seed=4, processes=2)


def test_checkpoints_hold_the_rng_states_of_every_process(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    main([*finetune_args(tiny_checkpoint, data, "lora.yaml"), *common(tmp_path / "run"), "--trainer.max_steps", "2"])
    checkpoint = torch.load(complete_checkpoints(tmp_path / "run")[0], weights_only=True)
    (state,) = checkpoint[RNG_KEY]
    assert set(state) >= {"torch", "numpy", "python"}


def test_checkpoints_with_flat_optimizer_settings_still_load(tmp_path, tiny_checkpoint):
    """.ckpt files written before `Optimization` hold its fields at the top level of their settings."""
    data = write_instruction_file(tmp_path / "train.jsonl")
    main([*finetune_args(tiny_checkpoint, data, "lora.yaml"), *common(tmp_path / "run"), "--trainer.max_steps", "2"])
    checkpoint = torch.load(complete_checkpoints(tmp_path / "run")[0], weights_only=True)
    settings = checkpoint["hyper_parameters"]
    optimization = settings.pop("optimization")
    checkpoint["hyper_parameters"] = {**settings, **optimization}
    module = load_module(tmp_path / "old.ckpt", checkpoint)
    assert module.hparams["optimization"] == optimization and module.optimization.learning_rate == 0.003


def test_resume_last_with_no_checkpoint_is_refused_before_training(tmp_path, tiny_checkpoint, capsys):
    data = write_instruction_file(tmp_path / "train.jsonl")
    args = [*finetune_args(tiny_checkpoint, data, "lora.yaml"), *common(tmp_path / "empty"), "--ckpt_path", "last"]
    with pytest.raises(SystemExit, match="no complete checkpoint under .*empty.*nothing to resume"):
        main(args)
    assert not list((tmp_path / "empty").rglob("metrics.csv"))


def test_resume_from_a_truncated_checkpoint_names_the_file(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    truncated = tmp_path / "step=4.ckpt"
    truncated.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    args = [*finetune_args(tiny_checkpoint, data, "lora.yaml"), *common(tmp_path / "run"), "--ckpt_path", str(truncated)]
    with pytest.raises(SystemExit, match=r"step=4.ckpt' is not a complete PyTorch checkpoint \(truncated"):
        main(args)


@pytest.mark.slow
def test_streaming_cpt_under_ddp_resumes_exactly_from_every_ranks_cursors(tmp_path, tiny_checkpoint):
    corpus = write_corpus(tmp_path / "corpus")
    args = [*cpt_args(tiny_checkpoint, corpus, streaming=True), "--data.init_args.shuffle_buffer", "3", *DDP_CLI_ARGS]
    assert_resumes_exactly(tmp_path, args, seed=5, processes=2)
    saved = torch.load(complete_checkpoints(tmp_path / "straight")[-1], weights_only=True)
    (state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert set(state["streams"]) == {f"{rank}:{part}" for rank in (0, 1) for part in ("domain", "replay")}


@pytest.mark.slow
def test_resuming_from_a_checkpoint_written_at_a_validation_step_continues_exactly(tmp_path, tiny_checkpoint):
    """Starting the validation DataLoader draws from the RNGs after the checkpoint of that step was written; the
    uninterrupted run must not depend on it, or runs resumed there (LoRA dropout) drift from it."""
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)
    args = finetune_args(tiny_checkpoint, data, "lora.yaml")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main([*args, *common(straight)])
    at_validation = straight / "logs" / "version_0" / "checkpoints" / "epoch=0-step=8.ckpt"
    finish(launch_cli([*args, *common(resumed), "--ckpt_path", str(at_validation)], tmp_path))
    expected, again = losses(straight, 0), losses(resumed, 0)
    assert sorted(again) == list(range(9, STEPS + 1))
    assert again == pytest.approx({step: expected[step] for step in again}, abs=1e-6, rel=0)
