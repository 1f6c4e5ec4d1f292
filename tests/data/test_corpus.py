import itertools
import json
import random
from collections import Counter

import pytest
import torch

from lightning_adapt import DataError, Replay, TextCorpus
from lightning_adapt.data.corpus import heldout_blocks
from lightning_adapt.data.packing import pack, replay_schedule, replayed_before
from lightning_adapt.model.loading import load_tokenizer

WORDS = "river delta sand clay boat harbour tide moon bread oven bicycle chain wheel bee honey star".split()


def write_documents(folder, n=12, seed=0):
    """n plain-text files of varied length, each one document ending in its own number."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + f" number {i}."
        (folder / f"doc_{i:03d}.txt").write_text(text + "\n")
        texts.append(text)
    return texts


def corpus(path, tokenizer, block_size=15, **kwargs):
    kwargs.setdefault("val_fraction", 0.25)
    data = TextCorpus(str(path), block_size=block_size, batch_size=4, **kwargs)
    data.connect(tokenizer, max_seq_length=64)
    data.setup()
    return data


def blocks(loader, n):
    """The first n (block, real length, is_replay) rows a dataloader yields."""
    rows = []
    for batch in loader:
        for ids, count, replay in zip(batch["input_ids"], batch["token_counts"]["raw_plus_prompt_template"], batch["replay"]):
            rows.append((tuple(ids.tolist()), int(count), bool(replay)))
        if len(rows) >= n:
            return rows[:n]
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(tiny_checkpoint)


def test_blocks_are_full_eos_separated_and_hold_every_token_once(tmp_path, tokenizer):
    texts = write_documents(tmp_path / "docs")
    data = corpus(tmp_path / "docs", tokenizer, val_path=str(tmp_path / "docs"), shuffle=False)
    stream = [t for text in texts for t in tokenizer.encode(text, eos=True).tolist()]
    n_full = len(stream) // 16
    assert n_full >= 10

    rows = blocks(data.train_dataloader(), n_full + 1)
    assert all(len(ids) == 16 and count == 16 and not replay for ids, count, replay in rows)
    packed = [t for ids, _, _ in rows[:n_full] for t in ids]
    assert packed == stream[: n_full * 16]  # in order: nothing lost, repeated or reordered
    assert len(stream) - len(packed) < 16  # only the tail shorter than one block is left out
    assert packed.count(tokenizer.eos_id) == sum(1 for t in stream[: n_full * 16] if t == tokenizer.eos_id)
    eos_positions = [i for i, t in enumerate(stream) if t == tokenizer.eos_id]
    assert len(eos_positions) == len(texts)  # one EOS after every document, none inside
    assert rows[n_full][0] == rows[0][0]  # the next pass starts again from the first block

    # validation keeps the tail as a last block, padded, its padding labelled -100
    last = list(data.val_dataloader())[-1]
    count = int(last["token_counts"]["raw_plus_prompt_template"][-1])
    assert count < 16 and last["labels"][-1, count:].eq(-100).all()
    assert last["labels"][-1, :count].tolist() == last["input_ids"][-1, :count].tolist() == stream[n_full * 16 :]
    assert sum(n for _, n, _ in blocks(data.val_dataloader(), 10**6)) == len(stream)


def test_pack_counts_tokens_in_and_out():
    sequences = [torch.arange(start, start + n) for start, n in [(0, 7), (100, 1), (200, 13), (300, 0), (400, 5)]]
    full = list(pack(sequences, 8))
    assert [n for _, n in full] == [8, 8, 8] and torch.cat([b for b, _ in full]).tolist() == torch.cat(sequences)[:24].tolist()
    padded = list(pack(sequences, 8, pad_tail=True, pad_id=-1))
    assert padded[-1][1] == 2 and padded[-1][0].tolist() == [403, 404] + [-1] * 6
    assert sum(n for _, n in padded) == sum(len(s) for s in sequences)


@pytest.mark.parametrize("ratio", [0.05, 0.25])
def test_replay_ratio_over_1000_blocks_is_within_two_points_and_seeded(tmp_path, tokenizer, ratio):
    flags = list(itertools.islice(replay_schedule(ratio, "1"), 1000))
    assert abs(sum(flags) / 1000 - ratio) <= 0.02
    assert flags == list(itertools.islice(replay_schedule(ratio, "1"), 1000))
    assert flags != list(itertools.islice(replay_schedule(ratio, "2"), 1000))
    for start in (0, 7, 50, 433):  # a resumed stream finds its place without drawing the windows before
        assert list(itertools.islice(replay_schedule(ratio, "1", start), 1000 - start)) == flags[start:]
        assert replayed_before(ratio, "1", start) == sum(flags[:start])

    write_documents(tmp_path / "docs", n=30)
    data = corpus(tmp_path / "docs", tokenizer, replay=Replay("builtin:general_text.txt", ratio=ratio))
    rows = blocks(data.train_dataloader(), 1000)
    realised = sum(replay for _, _, replay in rows) / len(rows)
    assert abs(realised - ratio) <= 0.02, realised
    again = corpus(tmp_path / "docs", tokenizer, replay=Replay("builtin:general_text.txt", ratio=ratio))
    assert blocks(again.train_dataloader(), 200) == rows[:200]


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_replay_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"ratio.*\[0, 1\)"):
        Replay("builtin:general_text.txt", ratio=ratio)


def test_streaming_and_in_memory_give_the_same_blocks(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n=40)
    replay = Replay("builtin:general_text.txt", ratio=0.1)
    kinds = {streaming: corpus(tmp_path / "docs", tokenizer, streaming=streaming, shuffle=False, replay=replay)
             for streaming in (False, True)}
    assert kinds[True].train_blocks.cached is None  # streaming keeps nothing in memory
    n = len(kinds[False].train_blocks.cached[0])
    ordered = {k: blocks(data.train_dataloader(), 2 * n) for k, data in kinds.items()}
    assert ordered[True] == ordered[False] and any(replay for _, _, replay in ordered[True])
    val = {k: blocks(data.val_dataloader(), 10**6) for k, data in kinds.items()}
    assert val[True] == val[False] and val[True]

    # shuffled: the same blocks in each pass over the corpus, in a seeded order
    domain = Counter((tuple(b.tolist()), int(c), False) for b, c in zip(*kinds[False].train_blocks.cached))
    for streaming in (False, True):
        data = corpus(tmp_path / "docs", tokenizer, streaming=streaming, shuffle_buffer=8)
        first_pass = blocks(data.train_dataloader(), n)
        assert Counter(first_pass) == domain
        assert first_pass != [row for row in ordered[False] if not row[2]][:n]
        assert first_pass == blocks(data.train_dataloader(), n)


def test_streaming_workers_share_the_documents_without_overlap(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n=24)
    one = corpus(tmp_path / "docs", tokenizer, val_path=str(tmp_path / "docs"), streaming=True)
    two = corpus(tmp_path / "docs", tokenizer, val_path=str(tmp_path / "docs"), streaming=True, num_workers=2)

    def token_counts(data):
        return Counter(t for ids, count, _ in blocks(data.val_dataloader(), 10**6) for t in ids[:count])

    assert token_counts(two) == token_counts(one)


def test_document_level_split_is_seeded_and_disjoint(tmp_path, tokenizer):
    lines = [f"line number {i} about the {WORDS[i % len(WORDS)]}" for i in range(60)]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")

    def split(seed):
        data = corpus(tmp_path / "lines.txt", tokenizer, documents="line", val_fraction=0.2, seed=seed, shuffle=False)
        parts = []
        for part in (data.train_blocks, data.val_blocks):
            ids = torch.cat([b[:n] for b, n in zip(*part.cached)]).tolist()
            cuts = [i for i, t in enumerate(ids) if t == tokenizer.eos_id]
            docs = [tokenizer.decode(torch.tensor(ids[a + 1 : b])) for a, b in zip([-1] + cuts, cuts)]
            parts.append(set(docs))
        return parts

    train, val = split(0)
    assert 5 <= len(val) <= 20 and val <= set(lines) and train <= set(lines)
    assert not train & val and len(train) + len(val) >= len(lines) - 1  # only the dropped tail may be missing
    assert split(0) == [train, val]
    assert split(1)[1] != val


def test_jsonl_and_parquet_rows_with_a_text_field(tmp_path, tokenizer):
    rows = [{"id": i, "body": f"row {i} " + " ".join(WORDS[i:i + 8])} for i in range(20)]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": [r["body"] for r in rows]}), tmp_path / "rows.parquet")
    for name in ("rows.jsonl", "rows.parquet"):
        data = corpus(tmp_path / name, tokenizer, text_field="body", val_path=str(tmp_path / name), shuffle=False)
        expected = [t for r in rows for t in tokenizer.encode(r["body"], eos=True).tolist()]
        got = [t for ids, n, _ in blocks(data.val_dataloader(), 10**6) for t in ids[:n]]
        assert got == expected


def test_missing_text_field_names_file_row_and_field(tmp_path, tokenizer):
    (tmp_path / "rows.jsonl").write_text('{"text": "fine"}\n{"body": "no text here"}\n')
    for streaming in (False, True):
        with pytest.raises(DataError, match=r"rows.jsonl: row 2: missing field 'text' \(fields present: body\)"):
            data = corpus(tmp_path / "rows.jsonl", tokenizer, val_path=str(tmp_path / "rows.jsonl"), streaming=streaming)
            next(iter(data.train_dataloader()))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a b c"]}), tmp_path / "rows.parquet")
    with pytest.raises(DataError, match=r"rows.parquet: no column 'text' \(columns: body\)"):
        corpus(tmp_path / "rows.parquet", tokenizer, streaming=True)


def test_empty_files_are_skipped_with_a_warning_and_an_all_empty_corpus_fails(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n=8)
    (tmp_path / "docs" / "empty.txt").write_text("")
    with pytest.warns(UserWarning, match=r"Skipping 1 empty file.*empty.txt"):
        data = corpus(tmp_path / "docs", tokenizer)
    assert data.train_blocks.cached[0].shape[1] == 16

    (tmp_path / "void").mkdir()
    for i in range(3):
        (tmp_path / "void" / f"{i}.txt").write_text("")
    for streaming in (False, True):
        with pytest.raises(DataError, match="holds no text: all 3 file"):
            corpus(tmp_path / "void", tokenizer, streaming=streaming)
    (tmp_path / "blank.txt").write_text("\n\n   \n")
    with pytest.raises(DataError, match="holds no text"):
        corpus(tmp_path / "blank.txt", tokenizer, streaming=True)
    with pytest.raises(DataError, match="gives no train block"):
        corpus(tmp_path / "blank.txt", tokenizer, val_path=str(tmp_path / "docs"))
    for missing in (tmp_path / "missing.txt", tmp_path / "no" / "such" / "folder"):
        with pytest.raises(DataError, match="does not exist"):
            corpus(missing, tokenizer)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="holds no .txt"):
        corpus(tmp_path / "other", tokenizer)


def test_non_utf8_bytes_fail_naming_the_file_or_are_replaced_on_request(tmp_path, tokenizer):
    write_documents(tmp_path / "docs", n=8)
    (tmp_path / "docs" / "latin1.txt").write_bytes("first line\ncaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt: line 2: bytes that are not valid UTF-8.*encoding_errors='replace'"):
        corpus(tmp_path / "docs", tokenizer)
    data = corpus(tmp_path / "docs", tokenizer, val_path=str(tmp_path / "docs" / "latin1.txt"), encoding_errors="replace")
    ids = torch.cat([b[:n] for b, n in zip(*data.val_blocks.cached)])
    assert tokenizer.decode(ids) == "first line\ncaf\ufffd au lait"


def test_block_size_larger_than_the_model_context_is_refused(tmp_path, tokenizer):
    data = TextCorpus(str(tmp_path), block_size=300)
    with pytest.raises(ValueError, match=r"block_size=300\) is larger than the model's context.*256"):
        data.connect(tokenizer, max_seq_length=256)


def test_general_heldout_paragraphs_are_never_replayed(tmp_path, tokenizer):
    batch, used = heldout_blocks("builtin:general_text.txt", tokenizer, 64, max_blocks=3)
    assert batch["input_ids"].shape == (3, 64) and batch["token_counts"]["raw_plus_prompt_template"].tolist() == [64] * 3
    assert batch["labels"].equal(batch["input_ids"])
    write_documents(tmp_path / "docs", n=8)
    data = TextCorpus(str(tmp_path / "docs"), block_size=63, replay=Replay("builtin:general_text.txt", ratio=0.5))
    data.connect(tokenizer, max_seq_length=256, exclude=used)
    data.setup()
    replayed = tokenizer.decode(torch.cat(list(data.replay_blocks.cached[0])))
    from lightning_adapt.data.records import resolve_builtin

    paragraphs = [p.strip() for p in resolve_builtin("builtin:general_text.txt").read_text().split("\n\n") if p.strip()]
    assert 2 <= len(used) < len(paragraphs)
    assert all(p[:80] not in replayed for p in paragraphs[: len(used)])
    assert replayed.startswith(paragraphs[len(used)][:80])
