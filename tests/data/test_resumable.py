"""Resuming from a mid-epoch checkpoint trains on the same batches as a run that never stopped."""

import csv
import itertools
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_adapt import (
    ContinualPretraining, FineTuning, Instructions, LoRA, Optimization, Replay, Rewarming, TextCorpus,
)
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
    assert sorted(resumed) == list(range(stop + 1, total + 1))  # a loss is logged at the step it completes
    for step in range(stop + 1, total + 1):
        assert resumed[step] == pytest.approx(whole[step], abs=1e-5), (step, resumed, whole)


@pytest.mark.parametrize("stop", [2, 5], ids=["mid-epoch", "end-of-epoch"])
def test_fine_tuning_resumes_on_the_batches_it_would_have_trained(tmp_path, tiny_checkpoint, stop):
    path = write_instruction_file(tmp_path / "train.jsonl", n=24)  # 20 train rows: 5 batches of 4 per epoch

    def make_module():
        return FineTuning(tiny_checkpoint, lora=LoRA(r=4, dropout=0.0), optimization=Optimization(learning_rate=1e-2),
                          general_val=None, export=False)

    resumed_equals_uninterrupted(tmp_path, make_module, lambda: Instructions(str(path), batch_size=4), stop, 8)


def test_continual_pretraining_resumes_in_its_endless_stream(tmp_path, tiny_checkpoint):
    corpus = write_biography_corpus(tmp_path / "bio", n_people=6, paraphrases=2, heldout_paraphrases=1)

    def make_module():
        return ContinualPretraining(tiny_checkpoint, optimization=Rewarming(learning_rate=3e-3), max_seq_length=32,
                                    general_val=None, export=False)

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


def write_sources(folder: Path) -> dict[str, dict]:
    """The same kind of text in every form a streaming corpus reads: TextCorpus arguments per form."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    texts = [f"Record {i}: the river Vell runs past the town of Wrenmouth, {i % 7} miles.\n" * (2 + i % 5)
             for i in range(60)]
    (folder / "text").mkdir()
    for i, text in enumerate(texts):  # whole files, several cut into pieces (see PIECE_CHARS below)
        (folder / "text" / f"doc{i:02d}.txt").write_text(text)
    (folder / "paragraphs.txt").write_text("\n\n".join(texts))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    (folder / "rows.json").write_text(json.dumps([{"text": t} for t in texts]))
    with open(folder / "rows.csv", "w", newline="") as fp:  # quoted fields spanning lines
        writer = csv.writer(fp)
        writer.writerow(["id", "text"])
        writer.writerows([i, t] for i, t in enumerate(texts))
    pq.write_table(pa.table({"text": texts}), folder / "rows.parquet", row_group_size=7)
    return {
        "text files": {"path": str(folder / "text")},
        "paragraphs": {"path": str(folder / "paragraphs.txt"), "documents": "paragraph"},
        "jsonl": {"path": str(folder / "rows.jsonl")},
        "json": {"path": str(folder / "rows.json")},
        "csv": {"path": str(folder / "rows.csv")},
        "parquet": {"path": str(folder / "rows.parquet")},
        "datasets": {"path": "demo/rows"},
    }


@pytest.fixture
def hub_rows(monkeypatch):
    """`datasets.load_dataset("demo/rows", streaming=True)` served offline from rows in memory."""
    import datasets

    def load_dataset(name, split, streaming):
        assert (name, streaming) == ("demo/rows", True)
        rows = [f"Record {i}: the river Vell runs past the town of Wrenmouth.\n" * (2 + i % 5) for i in range(60)]
        return datasets.Dataset.from_dict({"text": rows}).to_iterable_dataset(num_shards=3)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


class CountingTokenizer:
    """The model's tokenizer, counting the texts it encodes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def encode(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer.encode(*args, **kwargs)


@pytest.mark.parametrize("source", ["text files", "paragraphs", "jsonl", "json", "csv", "parquet", "datasets"])
def test_streaming_corpus_resumes_from_saved_cursors_in_bounded_work(tmp_path, tiny_checkpoint, hub_rows, monkeypatch,
                                                                     source):
    """The loader's saved state holds a cursor per stream: resuming at batch 7 or 25 gives the uninterrupted run's
    batches (through a weights_only round trip of the state) and tokenizes at most about one shuffle window, the
    same at both points; without the cursors, resuming re-tokenizes everything before the start."""
    import io

    from litgpt import Tokenizer

    from lightning_adapt.data import documents

    monkeypatch.setattr(documents, "PIECE_CHARS", 150)  # long text files come in several pieces
    arguments = write_sources(tmp_path / "sources")[source]
    replay_text = tmp_path / "general.txt"
    replay_text.write_text("\n\n".join(f"General paragraph {i} about weather and bread." * 3 for i in range(40)))

    def loader(num_workers=0):
        data = TextCorpus(**arguments, block_size=15, batch_size=3, val_fraction=0.1, streaming=True,
                          shuffle_buffer=5, num_workers=num_workers, replay=Replay(str(replay_text), ratio=0.25))
        tokenizer = CountingTokenizer(Tokenizer(tiny_checkpoint))
        data.connect(tokenizer=tokenizer)
        data.setup()
        return data.train_dataloader(), tokenizer

    def uninterrupted(num_workers=0):
        """40 batches, and the loader's state (through a weights_only round trip) after 7 and after 25."""
        whole, _ = loader(num_workers)
        trained = 0
        whole.trained_batches = lambda: trained
        expected, states = [], {}
        for batch in iter(whole):
            expected.append(batch)
            trained = len(expected)
            if trained in (7, 25):
                buffer = io.BytesIO()
                torch.save(whole.state_dict(), buffer)
                buffer.seek(0)
                states[trained] = torch.load(buffer, weights_only=True)
            if trained == 40:
                return expected, states

    def first_batch_work(expected, state, num_workers=0):
        """Resume from `state`: check every later batch, return the texts tokenized up to the first one."""
        resumed, tokenizer = loader(num_workers)
        resumed.load_state_dict(state)
        stream = iter(resumed)
        for batch in expected[state["batches"]:]:
            actual = next(stream)
            assert torch.equal(actual["input_ids"], batch["input_ids"]), state["batches"]
            assert torch.equal(actual["replay"], batch["replay"])
            if batch is expected[state["batches"]]:
                work = tokenizer.calls
        return work

    expected, states = uninterrupted()
    assert all("stream_marks" not in batch for batch in expected)
    assert set(states[25]["streams"]) == {"0:domain", "0:replay"}
    work = {at: first_batch_work(expected, state) for at, state in states.items()}
    unbounded = first_batch_work(expected, {**states[25], "streams": {}})
    assert work[25] <= work[7] + 6 and work[25] <= 16, work
    assert unbounded > 3 * work[25], (unbounded, work)
    if source == "jsonl":  # DataLoader workers: a cursor per worker's shard
        expected, states = uninterrupted(num_workers=2)
        assert set(states[25]["streams"]) == {f"{shard}:{part}" for shard in (0, 1) for part in ("domain", "replay")}
        for state in states.values():
            first_batch_work(expected, state, num_workers=2)


def test_a_stream_cursor_holds_only_for_the_sharding_it_was_saved_with(tmp_path, tiny_checkpoint):
    """A cursor saved with one data shard (one worker, one process) is not used by a stream split into two: that
    stream starts over and passes over the blocks before its start, as without a cursor."""
    from litgpt import Tokenizer

    from lightning_adapt.data.corpus import Blocks

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"doc{i}.txt").write_text(f"Record {i}: the river Vell runs past the town of Wrenmouth. " * 3)
    blocks = Blocks(str(corpus), Tokenizer(tiny_checkpoint), length=16)
    one = blocks.endless(0, 1, shuffle=True, window=4)
    marks = [mark for _, (_, mark) in zip(range(9), one) if mark is not None]
    saved = marks[-1]  # the cursor at block 8 of the single stream
    assert saved["num_shards"] == 1 and saved["blocks"] == 8

    def first(num_shards, cursor):
        return [block.tolist() for (block, _), _ in itertools.islice(
            blocks.endless(0, num_shards, True, 4, start=8, saved=cursor), 3)]

    assert first(2, saved) == first(2, None)
    assert first(1, saved) == first(1, None)  # the same blocks, reached from the cursor
