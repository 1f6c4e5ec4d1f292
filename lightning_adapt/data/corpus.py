"""TextCorpus: raw text for continual pretraining, tokenized, packed into full blocks, mixed with general replay."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, Literal

import torch
from litgpt import Tokenizer
from litgpt.data import DataModule
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lightning_adapt.core.choices import check_choice
from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.documents import (
    DOCUMENT_SUFFIXES,
    DocumentMode,
    Piece,
    Position,
    document_stream,
    read_documents,
)
from lightning_adapt.data.packing import Packer, mix, pack, replay_schedule, replayed_before
from lightning_adapt.data.records import DataError, resolve_files
from lightning_adapt.data.resumable import STREAM_MARKS, ResumableDataLoader, trained_in_epoch
from lightning_adapt.distributed.sharding import collective_device

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


@dataclass
class StreamCursor:
    """Where one shard's pass over a part of a text source stands, at a block boundary: enough to go on from there
    without reading, tokenizing or packing what came before. Plain data (see `plain`), so a checkpoint holds it."""

    num_shards: int = 1
    """Shards the source was split into (a cursor holds only for the same split)."""
    epoch: int = 0
    blocks: int = 0
    """Blocks of the shard's stream before this point, all epochs."""
    epoch_blocks: int = 0
    """Of which in this epoch."""
    reader: Position | None = None
    """The document stream's position after the last piece read (None: the start of the source)."""
    document: int = -1
    """Index of the last document read."""
    keeping: bool = False
    """Whether that document falls to this shard and part."""
    split_rng: list | None = None
    """State of the document split's draws (`random.Random.getstate` as lists; None: fresh)."""
    pending: torch.Tensor | None = None
    """Tokens read but not yet in a block."""

    def plain(self) -> dict[str, Any]:
        return asdict(self)


class ShardPass:
    """One pass (epoch) over one shard's blocks of a part: documents read, split, sharded, tokenized and packed on the
    fly, in order, from `cursor` on; `cursor()` says where it stands."""

    def __init__(self, blocks: Blocks, shard: int, num_shards: int, cursor: StreamCursor) -> None:
        self.blocks, self.shard, self.num_shards, self.start = blocks, shard, num_shards, cursor
        self.pieces = document_stream(
            blocks.source, blocks.text_field, blocks.split, blocks.documents, blocks.errors, cursor.reader
        )
        self.reader, self.document, self.keeping = cursor.reader, cursor.document, cursor.keeping
        self.split_rng = random.Random(blocks.seed)
        if cursor.split_rng is not None:
            version, internal, gauss = cursor.split_rng
            self.split_rng.setstate((version, tuple(internal), gauss))
        self.packer = Packer(blocks.length, cursor.pending)
        self.produced = 0
        self.ended = False

    def __iter__(self) -> Iterator[Block]:
        return self

    def __next__(self) -> Block:
        while (block := self.packer.block()) is None:
            item = next(self.pieces, None)
            if item is None:
                return self.tail()
            piece, self.reader = item
            if piece.first:
                self.document += 1
                self.keeping = self.keep(piece)
            if self.keeping:
                bos = None if piece.first else False
                self.packer.add(self.blocks.tokenizer.encode(piece.text, bos=bos, eos=piece.last))
        self.produced += 1
        return block, self.blocks.length

    def tail(self) -> Block:
        """The padded last block (once, with `pad_tail`), then the end."""
        tail = None if self.ended or not self.blocks.pad_tail else self.packer.tail(self.blocks.tokenizer.eos_id)
        self.ended = True
        if tail is None:
            raise StopIteration
        self.produced += 1
        return tail

    def keep(self, piece: Piece) -> bool:
        """Whether the document starting with `piece` belongs to this part (seeded split) and shard."""
        blocks = self.blocks
        if blocks.val_fraction and (self.split_rng.random() < blocks.val_fraction) != (blocks.part == "val"):
            return False
        if blocks.exclude and digest(piece.text) in blocks.exclude:
            return False
        return self.document % self.num_shards == self.shard

    def cursor(self) -> StreamCursor:
        version, internal, gauss = self.split_rng.getstate()
        return StreamCursor(
            self.num_shards, self.start.epoch, self.start.blocks + self.produced, self.start.epoch_blocks + self.produced, self.reader,
            self.document, self.keeping, [version, list(internal), gauss], self.packer.held(),
        )


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

    def packed(self, shard: int = 0, num_shards: int = 1) -> Iterator[Block]:
        """This shard's blocks, in order, one pass."""
        if self.cached is not None:
            blocks, lengths = self.cached
            return ((blocks[i], int(lengths[i])) for i in range(shard, len(blocks), num_shards))
        return ShardPass(self, shard, num_shards, StreamCursor(num_shards))

    def count(self, shard: int = 0, num_shards: int = 1) -> int:
        """How many blocks `packed(shard, num_shards)` gives (streaming: one pass to count them)."""
        if self.cached is not None:
            return len(range(shard, len(self.cached[0]), num_shards))
        return sum(1 for _ in self.packed(shard, num_shards))

    def materialised(self) -> Blocks:
        items = list(self.packed())
        blocks = torch.stack([b for b, _ in items]) if items else torch.empty(0, self.length, dtype=torch.int32)
        return replace(self, cached=(blocks, torch.tensor([n for _, n in items], dtype=torch.long)))

    def endless(
        self, shard: int, num_shards: int, shuffle: bool, window: int, start: int = 0, saved: dict | None = None
    ) -> Iterator[tuple[Block, dict | None]]:
        """Epoch after epoch of this shard's blocks from block `start` on, each with the plain `StreamCursor` of the
        window it opens (streaming) or None. In memory, each pass is shuffled whole and the start is found by
        arithmetic; streaming, blocks are shuffled within consecutive windows of `window` blocks, and the start is
        reached from `saved` (a cursor at or before it, of the same number of shards) by re-reading at most one window;
        without one, by producing and dropping the blocks before it."""
        if self.cached is not None:
            return self.memory_epochs(shard, num_shards, shuffle, start)
        return self.streamed_epochs(shard, num_shards, shuffle, window, start, saved)

    def memory_epochs(self, shard: int, num_shards: int, shuffle: bool, start: int) -> Iterator[tuple[Block, None]]:
        blocks, lengths = self.cached
        per_epoch = len(range(shard, len(blocks), num_shards))
        if not per_epoch:
            raise self.empty_shard(shard, num_shards)
        first_epoch, offset = divmod(start, per_epoch)
        for epoch in itertools.count(first_epoch):
            order = list(range(len(blocks)))
            if shuffle:
                random.Random(f"{self.seed}:{epoch}").shuffle(order)
            yield from (((blocks[i], int(lengths[i])), None) for i in order[shard::num_shards][offset:])
            offset = 0

    def streamed_epochs(
        self, shard: int, num_shards: int, shuffle: bool, window: int, start: int, saved: dict | None
    ) -> Iterator[tuple[Block, dict | None]]:
        usable = saved is not None and saved["num_shards"] == num_shards and saved["blocks"] <= start
        cursor = StreamCursor(**saved) if usable else StreamCursor(num_shards)
        skip = start - cursor.blocks
        while True:
            shard_pass = ShardPass(self, shard, num_shards, cursor)
            while items := list(itertools.islice(shard_pass, window)):
                mark, cursor = cursor, shard_pass.cursor()
                if skip >= len(items):
                    skip -= len(items)
                    continue
                if shuffle:
                    random.Random(f"{self.seed}:{mark.epoch}:{shard}:{mark.epoch_blocks // window}").shuffle(items)
                yield items[skip], mark.plain() if skip == 0 else None
                yield from ((item, None) for item in items[skip + 1 :])
                skip = 0
            if cursor.epoch_blocks == 0:
                raise self.empty_shard(shard, num_shards)
            cursor = StreamCursor(num_shards, epoch=cursor.epoch + 1, blocks=cursor.blocks)

    def empty_shard(self, shard: int, num_shards: int) -> DataError:
        return DataError(
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


Item = tuple[torch.Tensor, int, bool, tuple[str, dict] | None]
"""A training block, its real tokens, whether it is a replay block, and the stream mark it carries: (name of the
stream, plain `StreamCursor`) when it opens a streaming window."""


class TrainBlocks(IterableDataset):
    """Endless training blocks: the domain epoch after epoch, with replay blocks at the scheduled positions."""

    def __init__(self, domain: Blocks, replay: Blocks | None, ratio: float, shuffle: bool, buffer: int) -> None:
        self.domain, self.replay, self.ratio, self.shuffle, self.buffer = domain, replay, ratio, shuffle, buffer
        self.skip: tuple[int, int, dict[str, dict]] | None = None

    def skip_batches(self, batches: int, batch_size: int, streams: dict[str, dict] | None = None) -> None:
        """Make the next iteration start after the first `batches` batches of the loader, from the saved stream
        cursors `streams` (by `stream_name`) where there are any."""
        self.skip = (batches, batch_size, streams or {}) if batches else None

    def __iter__(self) -> Iterator[Item]:
        shard, num_shards, start, streams = self.start_position()
        names = stream_name(shard, "domain"), stream_name(shard, "replay")

        def marked(blocks: Iterator[tuple[Block, dict | None]], name: str) -> Iterator[tuple[Block, tuple | None]]:
            return ((block, None if mark is None else (name, mark)) for block, mark in blocks)

        endless = partial(self.domain.endless, shard, num_shards, self.shuffle, self.buffer)
        if self.replay is None or self.ratio == 0:
            domain = marked(endless(start, streams.get(names[0])), names[0])
            return ((block, n, False, mark) for (block, n), mark in domain)
        seed = f"{self.domain.seed}:replay:{shard}"
        replayed = replayed_before(self.ratio, seed, start)
        domain = marked(endless(start - replayed, streams.get(names[0])), names[0])
        replay = marked(self.replay.endless(shard, num_shards, self.shuffle, self.buffer, replayed,
                                            streams.get(names[1])), names[1])
        mixed = mix(domain, replay, replay_schedule(self.ratio, seed, start))
        return ((block, n, is_replay, mark) for ((block, n), mark), is_replay in mixed)

    def start_position(self) -> tuple[int, int, int, dict[str, dict]]:
        """(shard, number of shards, items of that shard's stream to pass over, saved stream cursors) for this worker.

        DataLoader workers take turns by batch, starting with worker 0; after `batches` skipped batches, worker i
        plays the part worker (i + batches) % workers had in the interrupted run, which produced the next batch.
        """
        shard, num_shards = current_shard()
        if self.skip is None:
            return shard, num_shards, 0, {}
        batches, batch_size, streams = self.skip
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + batches) % workers
        return shard - worker + role, num_shards, len(range(role, batches, workers)) * batch_size, streams


def stream_name(shard: int, part: str) -> str:
    """The key of a shard's domain or replay stream in a loader's saved state."""
    return f"{shard}:{part}"


class ValBlocks(IterableDataset):
    """One unshuffled pass over the validation blocks (the last one padded), sharded like the training blocks. With
    `shard_length`, every shard is topped up to that many blocks with empty ones (no target token), so that every
    process runs as many validation batches as the others (sharded models need every process in every forward)."""

    def __init__(self, blocks: Blocks, shard_length: int | None = None) -> None:
        self.blocks, self.shard_length = blocks, shard_length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, bool]]:
        shard, num_shards = current_shard()
        produced = 0
        for block, n in self.blocks.packed(shard, num_shards):
            produced += 1
            yield block, n, False
        empty = torch.zeros(self.blocks.length, dtype=torch.int32)
        for _ in range(produced, self.shard_length or 0):
            yield empty, 0, False


def equal_shard_length(blocks: Blocks, num_workers: int) -> int | None:
    """The block count of the largest validation shard over all processes and DataLoader workers (None in a single
    process). Streaming, this process reads its shards once to count them; every process must call this."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if world == 1:
        return None
    workers = max(num_workers, 1)
    local = max(blocks.count(rank * workers + worker, world * workers) for worker in range(workers))
    largest = torch.tensor([local], device=collective_device())
    torch.distributed.all_reduce(largest, op=torch.distributed.ReduceOp.MAX)
    return int(largest.item())


def collate_blocks(items: list[tuple]) -> dict[str, Any]:
    """`input_ids` and `labels` are the whole block (the module shifts them); padding is labelled -100. Items are
    (block, real tokens, is replay) or training `Item`s, whose stream marks go to `STREAM_MARKS` (which the
    `ResumableDataLoader` takes out of the batch)."""
    input_ids = torch.stack([item[0] for item in items]).long()
    lengths = torch.tensor([item[1] for item in items])
    labels = input_ids.masked_fill(torch.arange(input_ids.shape[1]) >= lengths[:, None], IGNORE_INDEX)
    replay = torch.tensor([item[2] for item in items])
    counts = {"raw_plus_prompt_template": lengths}
    batch = {"input_ids": input_ids, "labels": labels, "token_counts": counts, "replay": replay}
    marks = [item[3] for item in items if len(item) > 3 and item[3] is not None]
    if marks:
        batch[STREAM_MARKS] = marks
    return batch


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
    documents: str = "file"
    """How a plain-text file splits into documents: the whole file, blank-line separated paragraphs, or lines."""
    block_size: int | None = None
    """Tokens the model reads per sequence (each block holds one more, the last target). Default: the module's
    max_seq_length; it may not exceed it."""
    replay: Replay | None = None
    """General text mixed into training; None for none."""
    streaming: bool = False
    """Read and tokenize documents on the fly in the DataLoader workers instead of once, in memory, in setup."""
    shuffle: bool = True
    """Shuffle training blocks (in memory: a full shuffle per pass; streaming: within windows of `shuffle_buffer`)."""
    shuffle_buffer: int = 1000
    """Streaming: blocks per shuffle window (each window of consecutive blocks is shuffled whole). Resuming re-reads
    at most one window, whatever the step."""
    encoding_errors: str = "strict"
    """Non-UTF-8 bytes in text files: "strict" fails naming the file and line, "replace" reads them as U+FFFD."""
    batch_size: int = 8
    """Blocks per micro-batch."""
    seed: int = 42
    """Seed of the validation split, the shuffling and the replay positions."""
    max_tokens: int | None = None
    """Train on a seeded random subset of ⌈max_tokens / block size⌉ training blocks (None: all), each the block size
    in tokens the model reads. Subsets drawn with the same `subset_seed` are nested (a data-size sweep). Not with
    `streaming`."""
    subset_seed: int = 0
    """Seed of the `max_tokens` subset."""
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
        check_choice("TextCorpus", "documents", self.documents, DocumentMode)
        check_choice("TextCorpus", "encoding_errors", self.encoding_errors, ("strict", "replace"))
        for name in ("batch_size", "shuffle_buffer", "block_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TextCorpus({name}={value}) must be at least 1.")
        if self.max_tokens is not None and (self.max_tokens < 1 or self.streaming):
            raise ValueError(
                f"TextCorpus(max_tokens={self.max_tokens}, streaming={self.streaming}): a token subset needs "
                "max_tokens >= 1 and the in-memory corpus (streaming: false)."
            )

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
            train = self.subset(train)
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

    def subset(self, blocks: Blocks) -> Blocks:
        """The first ⌈max_tokens / block size⌉ blocks of a `subset_seed` permutation, in corpus order."""
        if self.max_tokens is None:
            return blocks
        tokens_per_block = blocks.length - 1
        wanted, available = -(-self.max_tokens // tokens_per_block), len(blocks.cached[0])
        if wanted > available:
            raise DataError(
                f"TextCorpus(max_tokens={self.max_tokens:,}): '{self.path}' gives {available} training blocks of "
                f"{tokens_per_block} tokens ({available * tokens_per_block:,} tokens); ask for at most that many."
            )
        order = torch.randperm(available, generator=torch.Generator().manual_seed(self.subset_seed))
        keep = order[:wanted].sort().values
        return replace(blocks, cached=(blocks.cached[0][keep], blocks.cached[1][keep]))

    @property
    def train_size(self) -> dict[str, int] | None:
        """How much training data the run has (`Accounting` records it): {"tokens": n} once set up in memory."""
        if self.train_blocks is None or self.train_blocks.cached is None:
            return None
        return {"tokens": len(self.train_blocks.cached[0]) * (self.train_blocks.length - 1)}

    def train_dataloader(self) -> DataLoader:
        ratio = self.replay.ratio if self.replay else 0.0
        dataset = TrainBlocks(self.train_blocks, self.replay_blocks, ratio, self.shuffle, self.shuffle_buffer)
        return ResumableDataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_blocks,
            trained_batches=partial(trained_in_epoch, self),
        )

    def val_dataloader(self) -> DataLoader:
        dataset = ValBlocks(self.val_blocks, equal_shard_length(self.val_blocks, self.num_workers))
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_blocks)
