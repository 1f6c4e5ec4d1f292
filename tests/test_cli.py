import shlex
import subprocess
import sys

import pytest
import torch

from lightning_adapt.cli import COMMANDS, main
from lightning_adapt.compare.command import compare_command
from tests.helpers import DDP_CLI_ARGS, finish, launch_cli, write_instruction_file, OWN_INSTRUCTIONS

LORA_CONFIG = "builtin:finetune/lora.yaml"


def finetune_args(tiny_checkpoint, data, root, steps=4):
    return [
        "--config", LORA_CONFIG,
        "--model.checkpoint_dir", str(tiny_checkpoint),
        "--data.init_args.path", str(data), *OWN_INSTRUCTIONS,
        "--data.init_args.batch_size", "4",
        "--trainer.max_steps", str(steps),
        "--trainer.val_check_interval", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
    ]


def printed_command(printed: str, program: str) -> list[str]:
    """The first printed command line that runs `program`, as its words."""
    return shlex.split(next(line for line in printed.splitlines() if line.strip().startswith(program)))


def test_finetune_then_export_end_to_end(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a folder outside the checkout: the shipped config is named, not found on disk
    data = write_instruction_file(tmp_path / "train.jsonl")
    main(["finetune", *finetune_args(tiny_checkpoint, data, tmp_path / "run")])
    final = tmp_path / "run" / "final"
    printed = capsys.readouterr().out
    outputs = printed[printed.index("Outputs:"):]
    assert f"{final}: LitGPT checkpoint" in outputs
    assert f"{tmp_path / 'run' / 'logs' / 'version_0'}: metrics.csv and config.yaml" in outputs
    assert f"{tmp_path / 'run' / 'logs' / 'version_0' / 'checkpoints'}: .ckpt checkpoints" in outputs
    for program in ("litgpt generate", "litgpt chat"):
        assert printed_command(outputs, program)[2] == str(final)  # run by test_export_runs_in_litgpt_generate
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


def test_version_and_the_top_level_help_say_each_command_in_a_whole_sentence(capsys):
    main(["--version"])
    assert capsys.readouterr().out.startswith("lightning-adapt 0.1.0 (litgpt 0.5.13, lightning ")
    main(["--help"])
    printed = capsys.readouterr().out
    for name in COMMANDS:
        line = next(line for line in printed.splitlines() if line.startswith(f"  {name} "))
        assert line.endswith("."), line  # not cut mid-sentence
    assert "builtin:finetune/lora.yaml" in printed and "--version" in printed


@pytest.mark.parametrize("args", [["estimate", "--help"], ["estimate", "-h"], ["convert", "hf", "--help"]])
def test_help_of_commands_exits_0(args, capsys):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: lightning-adapt {' '.join(args[:-1])}")


def test_finetune_help_shows_our_options_first_and_the_common_trainer_flags(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["cpt", "--help"])
    assert exited.value.code == 0
    short = capsys.readouterr().out
    sections = [short.index(heading) for heading in ("\nmodel: ", "keys of lightning_adapt.TextCorpus",
                                                     "Lightning Trainer, the common flags")]
    assert sections == sorted(sections)
    assert "--data.init_args.replay" in short and "--trainer.devices" in short
    assert "--trainer.barebones" not in short and "A DataModule standardizes" not in short
    assert "builtin:cpt/domain.yaml" in short and "--help=full" in short
    with pytest.raises(SystemExit):
        main(["cpt", "--help=full"])
    full = capsys.readouterr().out
    assert "--trainer.barebones" in full and len(full.splitlines()) > len(short.splitlines()) + 100


def test_compare_help_needs_no_required_option_and_lists_the_keys_of_each_run(capsys):
    compare_command(["--help"])
    printed = capsys.readouterr().out
    usage = printed[:printed.index("\n\n")]
    assert "[--checkpoint_dir CHECKPOINT_DIR]" in usage and "[--tasks TASKS]" in usage
    assert "(required, type: <class 'Path'>)" not in printed
    assert "--finetune.max_steps MAX_STEPS\n                        Training budget in optimizer steps." in printed
    for key in ("--finetune.search", "--finetune.lora", "--cpt.data", "--cpt.optimization.learning_rate"):
        assert key in printed


@pytest.mark.slow
def test_export_runs_in_litgpt_generate(tmp_path, tiny_checkpoint, capsys):
    data = write_instruction_file(tmp_path / "train.jsonl")
    main(["finetune", *finetune_args(tiny_checkpoint, data, tmp_path / "run", steps=2)])
    printed = capsys.readouterr().out
    chat = printed_command(printed, "litgpt chat")
    checked = subprocess.run([sys.executable, "-m", *chat, "--print_config"], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr[-2000:]  # a valid command line of the installed litgpt
    command = printed_command(printed, "litgpt generate")  # the command the run printed
    command[command.index("--prompt") + 1] = "Which colour"
    result = subprocess.run(
        [sys.executable, "-m", *command, "--max_new_tokens", "4", "--num_samples", "1"],
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
    # two processes, micro-batch 4 each: the global example count grows by 8 per step (Accounting, added by the CLI),
    # but by 4 at the step of each process's last, shorter micro-batch (22 examples each), which length grouping
    # shuffles to the same step on both processes (same generator, as many micro-batches)
    steps = [b - a for a, b in zip(examples, examples[1:])]
    assert examples[0] == 0.0 and len(steps) >= 3 and set(steps) <= {4.0, 8.0} and steps.count(4.0) <= 1
