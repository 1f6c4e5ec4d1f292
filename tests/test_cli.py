import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_adapt.cli import main
from tests.helpers import DDP_CLI_ARGS, finish, launch_cli, write_instruction_file

LORA_CONFIG = str(Path(__file__).parents[1] / "configs" / "finetune" / "lora.yaml")


def finetune_args(tiny_checkpoint, data, root, steps=4):
    return [
        "--config", LORA_CONFIG,
        "--model.checkpoint_dir", str(tiny_checkpoint),
        "--data.init_args.path", str(data),
        "--data.init_args.batch_size", "4",
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]


def test_finetune_then_export_end_to_end(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    main(["finetune", *finetune_args(tiny_checkpoint, data, tmp_path / "run")])
    final = tmp_path / "run" / "final"
    assert (final / "lit_model.pth").is_file() and (final / "lit_model.pth.lora").is_file()
    metrics = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/loss" in metrics
    assert (tmp_path / "run" / "logs" / "version_0" / "config.yaml").is_file()

    ckpt = next((tmp_path / "run" / "logs").rglob("*.ckpt"))
    main(["export", str(ckpt), "--out_dir", str(tmp_path / "exported")])
    exported = torch.load(tmp_path / "exported" / "lit_model.pth", weights_only=True)
    at_fit_end = torch.load(final / "lit_model.pth", weights_only=True)
    assert exported.keys() == at_fit_end.keys()
    assert all(torch.equal(exported[k], at_fit_end[k]) for k in exported)
    assert (tmp_path / "exported" / "prompt_style.yaml").read_text() == (final / "prompt_style.yaml").read_text()


def test_training_commands_add_accounting_unless_the_config_lists_it(tmp_path, tiny_checkpoint):
    from lightning_adapt.record.accounting import Accounting
    from lightning_adapt.cli import training_cli

    args = finetune_args(tiny_checkpoint, write_instruction_file(tmp_path / "train.jsonl"), tmp_path / "run")
    listed = ["--trainer.callbacks+=lightning_adapt.Accounting", "--trainer.callbacks.method=mine"]
    for extra, methods in (([], [None]), (listed, ["mine"])):
        callbacks = training_cli("finetune", args + extra).trainer.callbacks
        assert [callback.method for callback in callbacks if isinstance(callback, Accounting)] == methods


def test_print_config_shows_overrides(tmp_path, tiny_checkpoint, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--config", LORA_CONFIG, "--model.lora.r", "4", "--print_config"])
    printed = capsys.readouterr().out
    assert "r: 4" in printed and "class_path: lightning_adapt.Instructions" in printed


def test_unknown_command_is_refused():
    with pytest.raises(SystemExit, match="unknown command 'finetun'"):
        main(["finetun"])


@pytest.mark.slow
def test_export_runs_in_litgpt_generate(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    main(["finetune", *finetune_args(tiny_checkpoint, data, tmp_path / "run", steps=2)])
    result = subprocess.run(
        [sys.executable, "-m", "litgpt", "generate", str(tmp_path / "run" / "final"), "--prompt", "Which colour",
         "--max_new_tokens", "4", "--num_samples", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Which colour" in result.stdout


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_writes_one_export(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    args = finetune_args(tiny_checkpoint, data, tmp_path / "run")
    args += DDP_CLI_ARGS
    finish(launch_cli(["finetune", *args], tmp_path), timeout=600)  # Lightning's launcher starts the second process
    finals = list((tmp_path / "run").rglob("lit_model.pth"))
    assert finals == [tmp_path / "run" / "final" / "lit_model.pth"]
    rows = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    examples = [float(r.split(",")[header.index("train/examples")]) for r in rows[1:] if r.split(",")[header.index("train/examples")]]
    # two processes, micro-batch 4 each: the global example count grows by 8 per step (Accounting, added by the CLI)
    assert examples[:3] == [0.0, 8.0, 16.0]
