"""General-text evaluation: one block length whatever a run's max_seq_length, bounded by default; and the warning of
a warmup that lasts the whole run."""

import warnings

import lightning as L
import pytest
import torch

from lightning_adapt import ContinualPretraining, FineTuning, Instructions, LoRA, Optimization, TextCorpus
from lightning_adapt.methods.base import GENERAL_VAL_LENGTH
from lightning_adapt.methods.optimization import WarmupWarning
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config
from tests.helpers import quiet_trainer, write_instruction_file
from tests.methods.test_cpt import logged

GENERAL = "builtin:general_text.txt"


def test_runs_at_different_max_seq_length_measure_the_same_general_loss_before_training(tmp_path, tiny_checkpoint):
    (tmp_path / "corpus.txt").write_text("The river runs past the town. The town has a mill and a bridge.\n\n" * 40)
    finetune = FineTuning(tiny_checkpoint, lora=LoRA(r=4), max_seq_length=48, general_val=GENERAL,
                          general_val_blocks=2, export=False)
    cpt = ContinualPretraining(tiny_checkpoint, max_seq_length=16, general_val_blocks=2, export=False)
    runs = [(finetune, Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)),
            (cpt, TextCorpus(str(tmp_path / "corpus.txt"), val_path=str(tmp_path / "corpus.txt"), batch_size=4))]
    before = []
    for index, (module, data) in enumerate(runs):
        assert module.general_val_length == GENERAL_VAL_LENGTH == module.hparams.general_val_length  # recorded
        root = tmp_path / f"run{index}"
        quiet_trainer(root, max_steps=1, val_check_interval=1, limit_val_batches=1).fit(module, datamodule=data)
        assert module.general_batch["input_ids"].shape == (2, GENERAL_VAL_LENGTH + 1)
        before.append(logged(root, "val/general_loss")[0])
    assert before[0][0] == before[1][0] == 0
    assert before[0][1] == pytest.approx(before[1][1], rel=1e-5)  # the same weights on the same blocks


def test_general_val_length_is_the_block_length_and_is_checked_against_the_context(tmp_path, tiny_checkpoint):
    module = FineTuning(tiny_checkpoint, max_seq_length=32, general_val=GENERAL, general_val_length=16, export=False)
    assert module.general_val_length == 16 and module.max_seq_length == 32
    with pytest.raises(ValueError, match=r"general_val_length=300 must lie in \[2, 256\]"):
        FineTuning(tiny_checkpoint, general_val=GENERAL, general_val_length=300)
    long_context = make_tiny_checkpoint(tmp_path / "long", config=tiny_config(block_size=1024))
    module = ContinualPretraining(long_context, export=False)
    assert module.max_seq_length == 1024 and module.general_val_length == GENERAL_VAL_LENGTH  # bounded by default
    short_context = make_tiny_checkpoint(tmp_path / "short", config=tiny_config(block_size=64))
    assert ContinualPretraining(short_context, export=False).general_val_length == 64


def parameters() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(3))]


def test_a_warmup_as_long_as_the_run_is_warned_about():
    with pytest.warns(WarmupWarning, match=r"warmup_steps=10 is as long as the run's 10 optimizer step\(s\) or longer"):
        Optimization(warmup_steps=10).configure(parameters(), total_steps=10)
    with pytest.warns(WarmupWarning, match="never reaching learning_rate=0.0003"):
        Optimization(warmup_steps=0.99).configure(parameters(), total_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", WarmupWarning)
        Optimization(warmup_steps=9).configure(parameters(), total_steps=10)
        Optimization(warmup_steps=0.5).configure(parameters(), total_steps=10)


def test_a_run_warns_of_its_warmup_when_it_starts(tmp_path, tiny_checkpoint):
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), optimization=Optimization(warmup_steps=5), export=False)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl", n=16)), batch_size=8)
    with pytest.warns(WarmupWarning, match="the run's 2 optimizer step"):
        quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0).fit(module, datamodule=data)
