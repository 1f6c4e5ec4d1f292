import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_adapt import (
    Accounting, ContinualPretraining, FineTuning, Instructions, LoRA, Optimization, Replay, Rewarming, TextCorpus,
)
from lightning_adapt.cli import main
from lightning_adapt.data.biographies import write_biography_corpus
from tests.helpers import quiet_trainer, write_instruction_file

CONFIG = str(Path(__file__).parents[2] / "configs" / "cpt" / "domain.yaml")


def rows(root):
    with open(next(Path(root).rglob("metrics.csv"))) as fp:
        return list(csv.DictReader(fp))


def logged(root, key):
    """(step, value) of every row that logged `key`."""
    return [(int(row["step"]), float(row[key])) for row in rows(root) if row.get(key)]


@pytest.fixture(scope="module")
def biographies(tmp_path_factory):
    return write_biography_corpus(tmp_path_factory.mktemp("bio"), n_people=16, paraphrases=3, heldout_paraphrases=1)


def test_cpt_lowers_domain_loss_and_logs_forgetting_from_step_zero(tmp_path, tiny_checkpoint, biographies):
    L.seed_everything(0)
    module = ContinualPretraining(tiny_checkpoint, optimization=Rewarming(learning_rate=3e-3, warmup_steps=0.1),
                                  max_seq_length=48)
    data = TextCorpus(str(biographies["corpus"]), val_path=str(biographies["heldout"]), batch_size=8,
                      replay=Replay("builtin:general_text.txt", ratio=0.25))
    trainer = quiet_trainer(tmp_path, max_steps=24, val_check_interval=12, callbacks=[Accounting()])
    trainer.fit(module, datamodule=data)

    domain = logged(tmp_path, "val/domain_loss")
    general = logged(tmp_path, "val/general_loss")
    assert [step for step, _ in domain] == [step for step, _ in general] == [0, 12, 24]
    assert domain[-1][1] < domain[0][1] - 1.5, domain  # unseen paraphrases of the trained facts
    assert logged(tmp_path, "val/domain_ppl")[0][1] == pytest.approx(torch.tensor(domain[0][1]).exp().item(), rel=1e-4)
    assert [value for _, value in logged(tmp_path, "val/loss")] == [value for _, value in domain[1:]]
    assert logged(tmp_path, "train/tokens")[:2] == [(0, 0.0), (1, 8 * 48.0)]  # the inputs of max_seq_length + 1
    replayed = logged(tmp_path, "train/replay_blocks")[-1][1]
    assert abs(replayed - 0.25 * 24 * 8) <= 6  # exact per 50 blocks: 192 blocks end inside a window
    assert module.train_tokens == 24 * 8 * 48
    assert (tmp_path / "final" / "lit_model.pth").is_file()


def test_cpt_is_full_parameter_by_default_and_lora_cpt_trains_adapters_only(tmp_path, tiny_checkpoint, biographies):
    full = ContinualPretraining(tiny_checkpoint)
    full.configure_model()
    assert all(p.requires_grad for p in full.model.parameters())
    assert full.optimization.final_lr == pytest.approx(full.hparams.optimization["learning_rate"] / 10)

    L.seed_everything(0)
    module = ContinualPretraining(tiny_checkpoint, lora=LoRA(r=4, targets=["query", "value"]), max_seq_length=32,
                                  general_val=None, export=False)
    data = TextCorpus(str(biographies["corpus"]), batch_size=4)
    quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(module, datamodule=data)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_learning_rate_rewarms_then_redecays_to_min_lr(tmp_path, tiny_checkpoint, biographies):
    module = ContinualPretraining(tiny_checkpoint, optimization=Rewarming(learning_rate=1e-3, warmup_steps=0.25),
                                  max_seq_length=32, general_val=None, export=False)
    lrs = []

    class RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    data = TextCorpus(str(biographies["corpus"]), batch_size=2)
    quiet_trainer(tmp_path, max_steps=12, callbacks=[RecordLR()], limit_val_batches=0).fit(module, datamodule=data)
    assert len(lrs) == 12
    assert lrs[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])  # re-warm over 25% of 12 steps
    assert lrs[-1] == pytest.approx(1e-4)  # cosine re-decay ends at min_lr = learning_rate / 10
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:]))


def test_finetuning_logs_general_loss_at_step_zero_and_after_validation(tmp_path, tiny_checkpoint):
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), optimization=Optimization(learning_rate=1e-2, warmup_steps=1),
                        general_val="builtin:general_text.txt", general_val_blocks=2, export=False)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8)
    trainer = quiet_trainer(tmp_path, max_steps=6, val_check_interval=3)
    trainer.fit(module, datamodule=data)
    general = logged(tmp_path, "val/general_loss")
    assert [step for step, _ in general] == [0, 3, 6]
    assert [step for step, _ in logged(tmp_path, "val/domain_loss")] == [0, 3, 6]
    assert logged(tmp_path, "val/general_ppl")[0][1] == pytest.approx(torch.tensor(general[0][1]).exp().item(), rel=1e-4)
    assert "val/general_loss" in trainer.callback_metrics


def test_heldout_evaluation_at_step_zero_leaves_training_unchanged(tmp_path, tiny_checkpoint):
    def train_losses(root, general_val, val_batches):
        root.mkdir()
        L.seed_everything(0)
        module = FineTuning(tiny_checkpoint, lora=LoRA(r=4, dropout=0.5),
                            optimization=Optimization(learning_rate=1e-2, warmup_steps=1),
                            general_val=general_val, export=False)
        data = Instructions(str(write_instruction_file(root / "train.jsonl")), batch_size=8)
        trainer = quiet_trainer(root, max_steps=3, limit_val_batches=val_batches, val_check_interval=3)
        trainer.fit(module, datamodule=data)
        assert module.training
        return [value for _, value in logged(root, "train/loss")], logged(root, "val/domain_loss")

    with_eval, domain = train_losses(tmp_path / "a", "builtin:general_text.txt", 1)
    without_eval, none = train_losses(tmp_path / "b", None, 0)
    assert domain[0][0] == 0 and not none
    assert with_eval == without_eval  # same dropout masks: the evaluation ran in eval mode on a forked RNG


def test_bare_token_batches_of_litgpt_pretraining_modules_train(tmp_path, tiny_checkpoint):
    blocks = torch.randint(0, 300, (16, 33), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    module = ContinualPretraining(tiny_checkpoint, max_seq_length=32, general_val=None, export=False)
    trainer = quiet_trainer(tmp_path, max_steps=4, val_check_interval=2, limit_val_batches=2)
    trainer.fit(module, train_dataloaders=DataLoader(blocks, batch_size=4), val_dataloaders=DataLoader(blocks, batch_size=4))
    assert module.train_tokens == 4 * 4 * 32  # blocks of 33 tokens: 32 inputs each
    assert [step for step, _ in logged(tmp_path, "val/domain_loss")] == [0, 2, 4]


def test_litgpt_text_files_data_module(tmp_path, tiny_checkpoint):
    pytest.importorskip("litdata")
    from litgpt.data import TextFiles

    (tmp_path / "texts").mkdir()
    for i in range(3):
        (tmp_path / "texts" / f"{i}.txt").write_text("The river carries sand to the delta. " * 30 + f"Text {i}.")
    module = ContinualPretraining(tiny_checkpoint, max_seq_length=32, general_val=None, export=False)
    data = TextFiles(tmp_path / "texts", num_workers=0)
    module.connect_datamodule(data)  # TextFiles tokenizes in prepare_data, which Lightning runs before setup
    trainer = quiet_trainer(tmp_path, max_steps=3, val_check_interval=3, limit_val_batches=2)
    trainer.fit(module, datamodule=data)
    assert module.train_tokens == 3 * 32
    assert "val/domain_loss" in trainer.callback_metrics


def test_block_size_beyond_the_model_context_fails_before_training(tmp_path, tiny_checkpoint, biographies):
    module = ContinualPretraining(tiny_checkpoint, max_seq_length=64, general_val=None)
    data = TextCorpus(str(biographies["corpus"]), block_size=128)
    with pytest.raises(ValueError, match=r"block_size=128\) is larger than the model's context.*64"):
        quiet_trainer(tmp_path, max_steps=2).fit(module, datamodule=data)
    assert module.train_tokens == 0


def test_cpt_command_runs_the_shipped_config(tmp_path, tiny_checkpoint, biographies, capsys):
    args = [
        "--config", CONFIG,
        "--model.checkpoint_dir", str(tiny_checkpoint),
        "--model.max_seq_length", "32",
        "--data.init_args.path", str(biographies["corpus"]),
        "--data.init_args.val_path", str(biographies["heldout"]),
        "--data.init_args.streaming", "true",
        "--data.init_args.batch_size", "4",
        "--trainer.max_steps", "4",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ]
    main(["cpt", *args])
    assert (tmp_path / "run" / "final" / "lit_model.pth").is_file()
    assert [step for step, _ in logged(tmp_path / "run", "val/general_loss")] == [0, 2, 4]
    with pytest.raises(SystemExit):
        main(["cpt", *args, "--data.init_args.replay.ratio", "0.2", "--print_config"])
    printed = capsys.readouterr().out
    assert "ratio: 0.2" in printed and "class_path: lightning_adapt.TextCorpus" in printed
