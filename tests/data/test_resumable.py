"""Resuming from a mid-epoch checkpoint trains on the same batches as a run that never stopped."""

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_adapt import ContinualPretraining, FineTuning, Instructions, LoRA, Replay, TextCorpus
from lightning_adapt.data.biographies import write_biography_corpus
from lightning_adapt.data.resumable import ResumableDataLoader, shuffled_batches
from tests.helpers import quiet_trainer, write_instruction_file


def losses(root: Path) -> dict[int, float]:
    with open(root / "logs" / "metrics.csv") as fp:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(fp) if r.get("train/loss")}


def fit(root, make_module, make_data, max_steps, save_every=None, ckpt_path=None):
    L.seed_everything(0)
    callbacks = [ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=save_every, save_top_k=-1)] if save_every else []
    trainer = quiet_trainer(root, max_steps=max_steps, limit_val_batches=0, callbacks=callbacks,
                            enable_checkpointing=bool(save_every))
    trainer.fit(make_module(), datamodule=make_data(), ckpt_path=ckpt_path)
    return losses(root)


def resumed_equals_uninterrupted(tmp_path, make_module, make_data, stop, total):
    """Resume from the step-`stop` checkpoint of a `total`-step run (same schedule); the losses must agree."""
    whole = fit(tmp_path / "whole", make_module, make_data, total, save_every=stop)
    (ckpt,) = (tmp_path / "whole" / "ckpt").glob(f"*-step={stop}.ckpt")
    resumed = fit(tmp_path / "resumed", make_module, make_data, total, ckpt_path=ckpt)
    assert sorted(resumed) == list(range(stop, total))
    for step in range(stop, total):
        assert resumed[step] == pytest.approx(whole[step], abs=1e-5), (step, resumed, whole)


@pytest.mark.parametrize("stop", [2, 5], ids=["mid-epoch", "end-of-epoch"])
def test_fine_tuning_resumes_on_the_batches_it_would_have_trained(tmp_path, tiny_checkpoint, stop):
    path = write_instruction_file(tmp_path / "train.jsonl", n=24)  # 20 train rows: 5 batches of 4 per epoch

    def make_module():
        return FineTuning(tiny_checkpoint, lora=LoRA(r=4, dropout=0.0), learning_rate=1e-2, general_val=None,
                          export=False)

    resumed_equals_uninterrupted(tmp_path, make_module, lambda: Instructions(str(path), batch_size=4), stop, 8)


def test_continual_pretraining_resumes_in_its_endless_stream(tmp_path, tiny_checkpoint):
    corpus = write_biography_corpus(tmp_path / "bio", n_people=6, paraphrases=2, heldout_paraphrases=1)

    def make_module():
        return ContinualPretraining(tiny_checkpoint, learning_rate=3e-3, max_seq_length=32, general_val=None,
                                    export=False)

    def make_data():
        return TextCorpus(str(corpus["corpus"]), val_path=str(corpus["heldout"]), batch_size=4,
                          replay=Replay("builtin:replay_text.txt", ratio=0.25))

    resumed_equals_uninterrupted(tmp_path, make_module, make_data, 3, 6)


class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n, self.reads = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        self.reads += 1
        return index


@pytest.mark.parametrize("trained", [3, 7, 10])
def test_resuming_map_style_data_skips_trained_batches_without_reading_them(trained):
    """The cost of resuming does not grow with the step: trained batches are passed over as indices."""

    def loader(dataset):
        generator = torch.Generator().manual_seed(0)
        return ResumableDataLoader(dataset, batch_sampler=shuffled_batches(dataset, 4, generator), generator=generator,
                                   trained_batches=lambda: trained)

    whole = loader(CountingDataset(40))
    first_epoch = [batch.tolist() for batch in whole]
    second_epoch = [batch.tolist() for batch in whole]
    dataset = CountingDataset(40)
    resumed = loader(dataset)
    resumed.load_state_dict({"rng": torch.Generator().manual_seed(0).get_state(), "batches": trained})
    rest = [batch.tolist() for batch in resumed]
    if trained < len(first_epoch):
        assert rest == first_epoch[trained:]
        assert dataset.reads == 40 - 4 * trained
    else:  # saved at the end of the epoch: the next epoch follows, and the trained one is not read at all
        assert rest == second_epoch
        assert dataset.reads == 40


@pytest.mark.parametrize("streaming", [False, True], ids=["in-memory", "streaming"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_text_corpus_resumes_its_replay_stream_past_the_trained_batches(tmp_path, tiny_checkpoint, streaming, num_workers):
    """In memory the start is found by arithmetic (nothing before it is produced); streaming re-produces it."""
    from litgpt import Tokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"doc{i}.txt").write_text(f"Record {i}: the river Vell runs past the town of Wrenmouth. " * (2 + i % 5))

    def loader():
        data = TextCorpus(str(corpus), block_size=15, batch_size=3, val_fraction=0.1, streaming=streaming,
                          num_workers=num_workers, replay=Replay("builtin:general_text.txt", ratio=0.25))
        data.connect(tokenizer=Tokenizer(tiny_checkpoint))
        data.setup()
        return data.train_dataloader()

    whole = iter(loader())
    expected = [next(whole) for _ in range(40)]
    for trained in (7, 25):
        resumed = loader()
        resumed.load_state_dict({"rng": None, "batches": trained})
        stream = iter(resumed)
        for batch in expected[trained:]:
            actual = next(stream)
            assert torch.equal(actual["input_ids"], batch["input_ids"]) and torch.equal(actual["replay"], batch["replay"])
