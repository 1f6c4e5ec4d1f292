"""Length-grouped and packed micro-batches of `Instructions`: every example once per epoch, seeded, resumable."""

import json

import pytest
import torch
from lightning.fabric.utilities.data import _replace_dunder_methods, _update_dataloader
from litgpt import Tokenizer
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from lightning_adapt import DataError, Instructions
from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.batching import GROUP_BATCHES, GroupedBatchSampler, grouped_batches, next_fit
from lightning_adapt.data.resumable import ResumableDataLoader
from tests.helpers import write_instruction_file

LENGTHS = [(7 * i) % 23 + 2 for i in range(150)]  # 150 examples of 2..24 tokens


def loader(lengths, seed, batch_size=4, trained=None):
    generator = torch.Generator().manual_seed(seed)
    return ResumableDataLoader(range(len(lengths)), batch_sampler=grouped_batches(lengths, batch_size, generator),
                               generator=generator, collate_fn=list, trained_batches=lambda: trained)


def epochs(data: DataLoader, n: int) -> list[list[list[int]]]:
    return [[batch for batch in data] for _ in range(n)]


def test_grouped_batches_hold_every_example_once_per_epoch_in_a_seeded_order():
    first, second = epochs(loader(LENGTHS, seed=1), 2)
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(len(LENGTHS)))
        assert len(epoch) == len(BatchSampler(range(len(LENGTHS)), 4, drop_last=False))
    assert first != second
    assert epochs(loader(LENGTHS, seed=1), 2) == [first, second]
    assert epochs(loader(LENGTHS, seed=2), 1)[0] != first


def test_each_group_is_sorted_by_length_before_it_is_cut_into_micro_batches():
    """Within one group (batch_size * GROUP_BATCHES examples) the micro-batches are consecutive runs of the
    length-sorted group, so a micro-batch pads at most to the next length up in its group."""
    lengths = LENGTHS[: 4 * GROUP_BATCHES]
    (epoch,) = epochs(loader(lengths, seed=3), 1)
    spans = sorted((min(lengths[i] for i in batch), max(lengths[i] for i in batch)) for batch in epoch)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    padded = sum(4 * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch) for batch in epoch)
    shuffled = sum(4 * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch)
                   for batch in BatchSampler(torch.randperm(len(lengths)).tolist(), 4, False))
    assert padded < shuffled / 4


@pytest.mark.parametrize("trained", [0, 5, 37, 38])
def test_grouped_batches_resume_on_the_tail_of_the_uninterrupted_epoch(trained):
    whole = loader(LENGTHS, seed=4)
    first, second = epochs(whole, 2)
    resumed = loader(LENGTHS, seed=4)
    resumed.load_state_dict({"rng": torch.Generator().manual_seed(4).get_state(), "batches": trained})
    rest = [batch for batch in resumed]
    assert rest == (first[trained:] if trained < len(first) else second)  # 38: saved at the end of the epoch


def test_lightning_puts_a_distributed_sampler_into_the_grouped_sampler():
    """Under DDP Lightning re-creates the batch sampler from its init arguments around a `DistributedSampler`: each
    process then groups its own share, with the same number of micro-batches."""
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        data = loader(LENGTHS, seed=5)
    shares = []
    for rank in (0, 1):
        sampler = DistributedSampler(data.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        rebuilt = _update_dataloader(data, sampler)
        assert isinstance(rebuilt.batch_sampler, GroupedBatchSampler)
        assert rebuilt.batch_sampler.sampler is sampler and rebuilt.batch_sampler.lengths is LENGTHS
        shares.append([i for batch in rebuilt for i in batch])
    assert len(shares[0]) == len(shares[1]) == len(LENGTHS) // 2
    assert sorted(shares[0] + shares[1]) == list(range(len(LENGTHS)))


def instructions(path, tiny_checkpoint, max_seq_length=128, **options) -> Instructions:
    data = Instructions(str(path), **options)
    data.connect(Tokenizer(tiny_checkpoint), max_seq_length=max_seq_length)
    data.setup()
    return data


def write_varied(path, n=40):
    rows = [{"instruction": "Colour? " * (1 + i % 4) + f"{i}", "output": "red" * (1 + i % 3)}
            for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_instructions_group_by_length_by_default_and_refuse_unknown_batchings(tmp_path, tiny_checkpoint):
    data = instructions(write_varied(tmp_path / "d.jsonl"), tiny_checkpoint, batch_size=4)
    assert data.batching == "grouped"
    assert isinstance(data.train_dataloader().batch_sampler, GroupedBatchSampler)
    with pytest.raises(ValueError, match=r"Instructions\(batching='sorted'\): choose one of random, grouped, packed"):
        Instructions("d.jsonl", batching="sorted")
    with pytest.raises(ValueError, match=r"pack_length=64.*batching='packed'"):
        Instructions("d.jsonl", pack_length=64)


def test_packed_rows_hold_every_example_once_with_its_own_positions_and_labels(tmp_path, tiny_checkpoint):
    data = instructions(write_varied(tmp_path / "d.jsonl"), tiny_checkpoint, batch_size=2, batching="packed",
                        pack_length=64, mask_prompt=False)
    items = {item["index"]: item for item in data.train_dataset}
    train = data.train_dataloader()
    epochs = [list(train) for _ in range(2)]
    assert len(epochs[0]) == len(epochs[1]) == len(train)
    for epoch in epochs:
        assert sorted(i for batch in epoch for i in batch["index"].tolist()) == sorted(items)
    assert [b["index"].tolist() for b in epochs[0]] != [b["index"].tolist() for b in epochs[1]]
    for batch in epochs[0]:
        assert batch["input_ids"].shape[1] == 64 and batch["input_ids"].shape[0] <= 2
        counts = batch["token_counts"]["raw_plus_prompt_template"].flatten().tolist()
        assert counts == [len(items[i]["input_ids"]) for i in batch["index"].tolist()]
        examples = iter(batch["index"].tolist())
        for row in range(len(batch["input_ids"])):
            segments = batch["segments"][row]
            for segment in range(1, int(segments.max()) + 1):
                where = segments == segment
                item = items[next(examples)]
                assert torch.equal(batch["input_ids"][row][where], item["input_ids"])
                assert torch.equal(batch["positions"][row][where], torch.arange(len(item["input_ids"])))
                labels = batch["labels"][row][where]
                assert labels[0] == IGNORE_INDEX and torch.equal(labels[1:], item["labels"][1:])
            assert (batch["labels"][row][segments == 0] == IGNORE_INDEX).all()


def test_packed_rows_are_filled_in_order_while_the_next_example_fits():
    assert next_fit([5, 3, 4, 2, 6], [0, 1, 2, 3, 4], capacity=8) == [[0, 1], [2, 3], [4]]


def test_packing_refuses_an_example_longer_than_a_row(tmp_path, tiny_checkpoint):
    path = write_instruction_file(tmp_path / "d.jsonl", n=12)
    with pytest.raises(DataError, match=r"longer than Instructions\(pack_length=6\) tokens.*d.jsonl: row \d+ \(\d+ "
                                        r"tokens\)"):
        instructions(path, tiny_checkpoint, batching="packed", pack_length=6)
    with pytest.raises(DataError, match=r"pack_length=256\) is longer than max_seq_length=128"):
        instructions(path, tiny_checkpoint, batching="packed", pack_length=256)


@pytest.mark.parametrize("trained", [1, 3])
def test_packed_rows_resume_on_the_tail_of_the_uninterrupted_epoch(tmp_path, tiny_checkpoint, trained):
    def indices(data):
        return [batch["index"].tolist() for batch in data]

    path = write_varied(tmp_path / "d.jsonl")
    options = dict(batch_size=2, batching="packed", pack_length=64)
    whole = indices(instructions(path, tiny_checkpoint, **options).train_dataloader())
    resumed = instructions(path, tiny_checkpoint, **options).train_dataloader()
    resumed.load_state_dict({"rng": torch.Generator().manual_seed(42).get_state(), "batches": trained})
    assert indices(resumed) == whole[trained:]
