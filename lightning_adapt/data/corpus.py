"""TextCorpus: raw text for continual pretraining, tokenized, packed into full blocks, mixed with general replay."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import torch
from litgpt import Tokenizer
from litgpt.data import DataModule
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.documents import DOCUMENT_SUFFIXES, DocumentMode, Piece, read_documents
from lightning_adapt.data.packing import mix, pack, replay_schedule, shuffled
from lightning_adapt.data.records import DataError, resolve_files
from lightning_adapt.data.resumable import ResumableDataLoader, trained_in_epoch

Block = tuple[torch.Tensor, int]


@dataclass
class Replay:
    """General-domain text mixed into the training blocks against forgetting (Ibrahim et al. 2024: 5-25%)."""

    source: str
    """Text files, a folder or glob, JSONL/JSON/CSV/Parquet files with `text_field`, or a `datasets` name. Plain-text
    files are read as blank-line separated paragraphs; paragraphs held out as the module's general validation text
    are never replayed."""
    ratio: float = 0.05
    """Fraction of training blocks that are replay blocks, in [0, 1): exact over every 50 blocks, at seeded
    positions."""
    text_field: str = "text"
    """Field holding the text in JSONL/JSON/CSV/Parquet or `datasets` rows."""
    split: str = "train"
    """Split to read when `source` is a `datasets` name."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"Replay(ratio={self.ratio}) must lie in [0, 1): "
                             "the fraction of training blocks replayed.")


def digest(text: str) -> bytes:
    """A stable fingerprint of a document's text (to keep held-out text out of training)."""
    return hashlib.blake2b(text.strip().encode("utf-8"), digest_size=16).digest()


@dataclass(frozen=True)
class Blocks:
    """One part (train, val, replay) of a text source as packed blocks of `length` tokens, read and tokenized on the
    fly or, once `materialised`, held in memory. Picklable, so DataLoader workers tokenize their own shard."""

    source: str
    tokenizer: Tokenizer
    length: int
    text_field: str = "text"
    split: str = "train"
    documents: DocumentMode = "file"
    errors: str = "strict"
    val_fraction: float = 0.0
    """Seeded document-level split: each document is held out with this probability (0: no split)."""
    part: Literal["train", "val"] = "train"
    seed: int = 42
    pad_tail: bool = False
    exclude: frozenset[bytes] = frozenset()
    cached: tuple[torch.Tensor, torch.Tensor] | None = None

    def read(self) -> Iterator[Piece]:
        return read_documents(self.source, self.text_field, self.split, self.documents, self.errors)

    def tokens(self, shard: int = 0, num_shards: int = 1) -> Iterator[torch.Tensor]:
        """Token ids of this part's documents that fall to `shard`, each followed by EOS."""
        keep = self.selector(shard, num_shards)
        index, keeping = -1, False
        for piece in self.read():
            if piece.first:
                index += 1
                keeping = keep(index, piece)
            if keeping:
                yield self.tokenizer.encode(piece.text, bos=None if piece.first else False, eos=piece.last)

    def selector(self, shard: int, num_shards: int) -> Callable[[int, Piece], bool]:
        split_rng = random.Random(self.seed)

        def keep(index: int, piece: Piece) -> bool:
            if self.val_fraction and (split_rng.random() < self.val_fraction) != (self.part == "val"):
                return False
            if self.exclude and digest(piece.text) in self.exclude:
                return False
            return index % num_shards == shard

        return keep

    def packed(self, shard: int = 0, num_shards: int = 1) -> Iterator[Block]:
        return pack(self.tokens(shard, num_shards), self.length, self.pad_tail, self.tokenizer.eos_id)

    def materialised(self) -> Blocks:
        items = list(self.packed())
        blocks = torch.stack([b for b, _ in items]) if items else torch.empty(0, self.length, dtype=torch.int32)
        return replace(self, cached=(blocks, torch.tensor([n for _, n in items], dtype=torch.long)))

    def epoch(
        self, epoch: int, shard: int, num_shards: int, shuffle: bool, buffer: int, offset: int = 0
    ) -> Iterator[Block]:
        """One pass over this shard's blocks (from its block `offset` on); shuffled in memory, or through a seeded
        buffer when streaming."""
        if self.cached is not None:
            blocks, lengths = self.cached
            order = list(range(len(blocks)))
            if shuffle:
                random.Random(f"{self.seed}:{epoch}").shuffle(order)
            return ((blocks[i], int(lengths[i])) for i in order[shard::num_shards][offset:])
        items = self.packed(shard, num_shards)
        items = shuffled(items, buffer, random.Random(f"{self.seed}:{epoch}:{shard}")) if shuffle else items
        return itertools.islice(items, offset, None)

    def endless(self, shard: int, num_shards: int, shuffle: bool, buffer: int, start: int = 0) -> Iterator[Block]:
        """Epoch after epoch of this shard's blocks, from block `start` on: in memory, found by arithmetic (no block
        before it is touched); streaming, by producing and dropping the blocks before it."""
        if self.cached is None:
            return itertools.islice(self.epochs(shard, num_shards, shuffle, buffer), start, None)
        per_epoch = len(range(shard, len(self.cached[0]), num_shards))
        first_epoch, offset = divmod(start, per_epoch) if per_epoch else (0, 0)
        return self.epochs(shard, num_shards, shuffle, buffer, first_epoch, offset)

    def epochs(
        self, shard: int, num_shards: int, shuffle: bool, buffer: int, first_epoch: int = 0, offset: int = 0
    ) -> Iterator[Block]:
        for epoch in itertools.count(first_epoch):
            empty = True
            for block in self.epoch(epoch, shard, num_shards, shuffle, buffer, offset):
                empty = False
                yield block
            offset = 0
            if empty:
                raise DataError(
                    f"'{self.source}' gives data shard {shard} of {num_shards} no {self.part} block of {self.length} "
                    "tokens: the text is too short for the block size (lower block_size, add text, or use fewer "
                    "workers/devices)."
                )


def current_shard() -> tuple[int, int]:
    """(shard, number of shards) of this process and DataLoader worker: rank-major, then worker."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world * workers


class TrainBlocks(IterableDataset):
    """Endless training blocks: the domain epoch after epoch, with replay blocks at the scheduled positions."""

    def __init__(self, domain: Blocks, replay: Blocks | None, ratio: float, shuffle: bool, buffer: int) -> None:
        self.domain, self.replay, self.ratio, self.shuffle, self.buffer = domain, replay, ratio, shuffle, buffer
        self.skip: tuple[int, int] | None = None

    def skip_batches(self, batches: int, batch_size: int) -> None:
        """Make the next iteration start after the first `batches` batches of the loader."""
        self.skip = (batches, batch_size) if batches else None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, bool]]:
        shard, num_shards, start = self.start_position()
        if self.replay is None or self.ratio == 0:
            domain = self.domain.endless(shard, num_shards, self.shuffle, self.buffer, start)
            return ((block, n, False) for block, n in domain)
        schedule = replay_schedule(self.ratio, random.Random(f"{self.domain.seed}:replay:{shard}"))
        replayed = sum(itertools.islice(schedule, start))
        domain = self.domain.endless(shard, num_shards, self.shuffle, self.buffer, start - replayed)
        replay = self.replay.endless(shard, num_shards, self.shuffle, self.buffer, replayed)
        return ((block, n, is_replay) for (block, n), is_replay in mix(domain, replay, schedule))

    def start_position(self) -> tuple[int, int, int]:
        """(shard, number of shards, items of that shard's stream to pass over) for this worker.

        DataLoader workers take turns by batch, starting with worker 0; after `batches` skipped batches, worker i
        plays the part worker (i + batches) % workers had in the interrupted run, which produced the next batch.
        """
        shard, num_shards = current_shard()
        if self.skip is None:
            return shard, num_shards, 0
        batches, batch_size = self.skip
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + batches) % workers
        return shard - worker + role, num_shards, len(range(role, batches, workers)) * batch_size


class ValBlocks(IterableDataset):
    """One unshuffled pass over the validation blocks (the last one padded), sharded like the training blocks."""

    def __init__(self, blocks: Blocks) -> None:
        self.blocks = blocks

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, bool]]:
        shard, num_shards = current_shard()
        yield from ((block, n, False) for block, n in self.blocks.epoch(0, shard, num_shards, False, 1))


def collate_blocks(items: list[tuple[torch.Tensor, int, bool]]) -> dict[str, Any]:
    """`input_ids` and `labels` are the whole block (the module shifts them); padding is labelled -100."""
    input_ids = torch.stack([block for block, _, _ in items]).long()
    lengths = torch.tensor([n for _, n, _ in items])
    labels = input_ids.masked_fill(torch.arange(input_ids.shape[1]) >= lengths[:, None], IGNORE_INDEX)
    replay = torch.tensor([is_replay for _, _, is_replay in items])
    counts = {"raw_plus_prompt_template": lengths}
    return {"input_ids": input_ids, "labels": labels, "token_counts": counts, "replay": replay}


def heldout_blocks(
    source: str, tokenizer: Tokenizer, length: int, max_blocks: int, text_field: str = "text"
) -> tuple[dict[str, Any], frozenset[bytes]]:
    """A batch of the first `max_blocks` packed blocks of `source`'s paragraphs (the last one padded), and the
    fingerprints of the paragraphs it holds (so that replay can leave them out)."""
    used: set[bytes] = set()

    def tokens(pieces: Iterable[Piece]) -> Iterator[torch.Tensor]:
        for piece in pieces:
            used.add(digest(piece.text))
            yield tokenizer.encode(piece.text, eos=True)

    pieces = read_documents(source, text_field, split="validation", documents="paragraph")
    items = list(itertools.islice(pack(tokens(pieces), length, True, tokenizer.eos_id), max_blocks))
    if not items:
        raise DataError(f"'{source}' holds no text to evaluate on.")
    return collate_blocks([(block, n, False) for block, n in items]), frozenset(used)


@dataclass
class TextCorpus(DataModule):
    """Raw text for continual pretraining: documents tokenized with the model's tokenizer, each followed by EOS,
    concatenated and cut into full blocks of `block_size + 1` tokens (no padding, no token dropped or repeated
    except the tail shorter than a block), split into train / validation by document (seeded).

    Training is an endless stream (set `Trainer(max_steps=...)`), reshuffled every pass, with `replay` blocks of
    general text mixed in. With `streaming`, documents are read and tokenized on the fly in the DataLoader workers,
    sharded by worker and rank, so the corpus never sits in memory; without it they are tokenized once in `setup`,
    where any bad input fails before training. Both give the same blocks for the same seed (on one process).
    """

    path: str
    """Training text: .txt/.md files, a folder (searched recursively) or glob of them, JSONL/JSON/CSV/Parquet files
    with `text_field`, or a `datasets` name."""
    val_path: str | None = None
    """Validation text in the same forms; when None, `val_fraction` of the documents of `path` are held out."""
    val_fraction: float = 0.05
    """Fraction of the documents of `path` held out for validation (seeded, document by document)."""
    text_field: str = "text"
    """Field holding the text in JSONL/JSON/CSV/Parquet or `datasets` rows."""
    split: str = "train"
    """Split to read when `path` is a `datasets` name."""
    val_split: str = "validation"
    """Split to read when `val_path` is a `datasets` name."""
    documents: DocumentMode = "file"
    """How a plain-text file splits into documents: the whole file, blank-line separated paragraphs, or lines."""
    block_size: int | None = None
    """Tokens the model reads per sequence (each block holds one more, the last target). Default: the module's
    max_seq_length; it may not exceed it."""
    replay: Replay | None = None
    """General text mixed into training; None for none."""
    streaming: bool = False
    """Read and tokenize documents on the fly in the DataLoader workers instead of once, in memory, in setup."""
    shuffle: bool = True
    """Shuffle training blocks (in memory: a full shuffle per pass; streaming: through `shuffle_buffer`)."""
    shuffle_buffer: int = 1000
    """Blocks held in the streaming shuffle buffer."""
    encoding_errors: Literal["strict", "replace"] = "strict"
    """Non-UTF-8 bytes in text files: "strict" fails naming the file and line, "replace" reads them as U+FFFD."""
    batch_size: int = 8
    """Blocks per micro-batch."""
    seed: int = 42
    """Seed of the validation split, the shuffling and the replay positions."""
    num_workers: int = 0
    """DataLoader worker processes (streaming tokenizes in them)."""

    tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)
    exclude: frozenset[bytes] = field(default=frozenset(), init=False, repr=False)
    train_blocks: Blocks | None = field(default=None, init=False, repr=False)
    val_blocks: Blocks | None = field(default=None, init=False, repr=False)
    replay_blocks: Blocks | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        if isinstance(self.replay, dict):
            self.replay = Replay(**self.replay)
        if self.val_path is None and not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"TextCorpus(val_fraction={self.val_fraction}): give a fraction in (0, 1) or a val_path.")
        for name in ("batch_size", "shuffle_buffer", "block_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TextCorpus({name}={value}) must be at least 1.")

    def connect(
        self,
        tokenizer: Tokenizer | None = None,
        batch_size: int | None = None,
        max_seq_length: int | None = None,
        exclude: Iterable[bytes] = (),
    ) -> None:
        """Receive the model's tokenizer and context, and fingerprints of held-out text never to replay."""
        if max_seq_length is not None and 0 < max_seq_length < (self.block_size or 0):
            raise ValueError(
                f"TextCorpus(block_size={self.block_size}) is larger than the model's context: the module's "
                f"max_seq_length is {max_seq_length}. Lower block_size or leave it None to use the context."
            )
        self.tokenizer = tokenizer
        if batch_size is not None:
            self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length
        self.exclude = frozenset(exclude)

    def setup(self, stage: str = "") -> None:
        for source in (self.path, self.val_path, self.replay.source if self.replay else None):
            if source is not None:
                resolve_files(source, DOCUMENT_SUFFIXES)
        if self.tokenizer is None or self.train_blocks is not None:
            return
        length = (self.block_size or self.max_seq_length) + 1
        if length < 2:
            raise ValueError("TextCorpus needs a block size: set block_size or connect(max_seq_length=...).")
        common = dict(tokenizer=self.tokenizer, length=length, errors=self.encoding_errors, seed=self.seed)
        domain = dict(common, text_field=self.text_field, documents=self.documents)
        split = dict(val_fraction=self.val_fraction) if self.val_path is None else {}
        train = Blocks(self.path, split=self.split, **domain, **split)
        val = Blocks(self.val_path or self.path, split=self.val_split if self.val_path else self.split, part="val",
                     pad_tail=True, **domain, **split)
        replay = None
        if self.replay is not None and self.replay.ratio > 0:
            replay = Blocks(self.replay.source, text_field=self.replay.text_field, split=self.replay.split,
                            documents="paragraph", exclude=self.exclude, **common)
        if self.streaming:
            for part in (train, val, replay):
                if part is not None and next(part.read(), None) is None:
                    raise DataError(f"'{part.source}' holds no text.")
        else:
            train, val, replay = (None if part is None else self.materialise(part) for part in (train, val, replay))
        self.train_blocks, self.val_blocks, self.replay_blocks = train, val, replay

    def materialise(self, blocks: Blocks) -> Blocks:
        blocks = blocks.materialised()
        if len(blocks.cached[0]) == 0:
            if blocks.exclude:
                hint = "no replay text is left once the module's general validation paragraphs are left out"
            else:
                hint = "raise val_fraction or set val_path" if blocks.part == "val" else "lower block_size or add text"
            raise DataError(f"'{blocks.source}' gives no {blocks.part} block of {blocks.length} tokens: {hint}.")
        return blocks

    def train_dataloader(self) -> DataLoader:
        ratio = self.replay.ratio if self.replay else 0.0
        dataset = TrainBlocks(self.train_blocks, self.replay_blocks, ratio, self.shuffle, self.shuffle_buffer)
        return ResumableDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_blocks,
            trained_batches=partial(trained_in_epoch, self),
        )

    def val_dataloader(self) -> DataLoader:
        dataset = ValBlocks(self.val_blocks)
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_blocks)
