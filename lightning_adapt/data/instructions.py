"""Instructions: a LightningDataModule for supervised fine-tuning on instruction or chat data."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from litgpt import Tokenizer
from litgpt.data import DataModule, SFTDataset, get_sft_collate_fn
from litgpt.prompts import Default, PromptStyle
from torch.utils.data import DataLoader

from lightning_adapt.core.choices import check_choice
from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.batching import BATCHINGS, grouped_batches, next_fit, packed_collate
from lightning_adapt.data.records import DataError, Record, read_records, text_field
from lightning_adapt.data.resumable import ResumableDataLoader, shuffled_batches, trained_in_epoch
from lightning_adapt.model.loading import prompt_style_from_name

INPUT_SEPARATOR = "\n\n"
"""Joins an example's instruction and input when the prompt style has no slot for the input."""


def places_input(style: PromptStyle) -> bool:
    """Whether `style` writes an example's `input` into the prompt (LitGPT's Alpaca does; most styles drop it)."""
    marker = "\x00input\x00"
    return marker in style.apply("instruction", input=marker)


def with_input_in_prompt(examples: list[dict[str, str]], style: PromptStyle) -> list[dict[str, str]]:
    """`examples` as `style` will see all of them: each input joined to its instruction when the style would drop it."""
    if places_input(style):
        return examples
    return [{**e, "instruction": e["instruction"] + INPUT_SEPARATOR + e["input"], "input": ""} if e["input"] else e
            for e in examples]


def longer_than(limit: int, records: list[Record], items: list[dict[str, Any]]) -> tuple[int, str]:
    """How many examples are longer than `limit` tokens, and the first five's rows with their lengths."""
    long = [(record, len(item["input_ids"])) for record, item in zip(records, items) if len(item["input_ids"]) > limit]
    rows = "; ".join(f"{record.where} ({length} tokens)" for record, length in long[:5])
    return len(long), rows + (" ..." if len(long) > 5 else "")


def refuse_dropped_inputs(datamodule: DataModule) -> None:
    """Refuse a LitGPT data module whose prompt style would drop its examples' `input` (LitGPT's own `JSON` data
    with any style but Alpaca's): the inputs would silently never reach the model."""
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        dataset = getattr(datamodule, split, None)
        if not isinstance(dataset, SFTDataset) or places_input(dataset.prompt_style):
            continue
        examples = (dataset.transform(e) if dataset.transform else e for e in dataset.data)
        dropped = [index for index, example in enumerate(examples, start=1) if example.get("input")]
        if dropped:
            style = type(dataset.prompt_style).__name__
            raise DataError(
                f"{type(datamodule).__name__}.{split}: {len(dropped)} example(s) have an 'input' field that prompt "
                f"style {style} drops (examples {', '.join(map(str, dropped[:5]))}{' ...' if len(dropped) > 5 else ''})"
                ": the model would never see it. Use lightning_adapt.Instructions (it joins input to instruction), "
                "a prompt style with an input slot (alpaca), or merge the input into the instruction."
            )


@dataclass
class Instructions(DataModule):
    """Instruction / response pairs (or chat `messages`) from local files or a `datasets` hub name.

    Each example becomes `prompt_style(instruction, input) + response + EOS`; with `mask_prompt` the loss sees the
    response tokens only. A prompt style with no slot for `input` (every LitGPT style but Alpaca's family) gets
    the instruction and the input joined by `INPUT_SEPARATOR`, so the input is never dropped. Rows are read and
    checked in `setup`; after `connect` gives the tokenizer, every example is tokenized once, and an example longer
    than `max_seq_length` is an error: nothing is ever cut.
    """

    path: str
    """Training data: a JSON, JSONL, CSV or Parquet file, a folder or glob of them, or a `datasets` name."""
    val_path: str | None = None
    """Validation data in the same forms; when None, `val_fraction` of `path` is held out."""
    val_fraction: float = 0.1
    """Fraction of the training rows held out for validation (seeded) when `val_path` is None."""
    split: str = "train"
    """Split to read when `path` is a `datasets` hub name."""
    val_split: str = "validation"
    """Split to read when `val_path` is a `datasets` hub name."""
    instruction_field: str = "instruction"
    """Field holding the instruction."""
    instruction_template: str | None = None
    """Build the instruction from the row instead, e.g. "Review: {text}\nIs this review Positive or Negative?"."""
    input_field: str = "input"
    """Optional field holding extra input for the instruction (empty when absent)."""
    output_field: str = "output"
    """Field holding the response to learn."""
    output_template: str | None = None
    """Build the response from the row instead, e.g. " {label}" (a leading space, as an ICL task's target_delimiter)."""
    messages_field: str | None = None
    """Read chat rows instead: this field holds a list of {role, content} messages (system, then user/assistant
    turns); the last assistant message is the target, earlier turns become part of the prompt."""
    prompt_style: str | None = None
    """A LitGPT prompt style name (alpaca, chatml, llama3, ...; `default` leaves the prompt as it is). None: for
    instruction rows `default`, the prompt exactly as written, as an ICL task scores its template (so a score after
    fine-tuning is measured on the format trained); for chat rows (`messages_field`) the model's own chat style."""
    mask_prompt: bool = True
    """Compute the loss on response tokens only."""
    batch_size: int = 8
    """Examples per micro-batch (with `batching="packed"`: rows per micro-batch)."""
    batching: str = "grouped"
    """How training examples form micro-batches: `grouped` (each epoch's seeded order cut into groups of
    `batch_size * 32` examples, each sorted by length, so that a micro-batch holds similar lengths and pads little;
    the micro-batches are then shuffled), `random` (the seeded order as it is), or `packed` (rows of `pack_length`
    tokens holding several examples each, attention kept within each example). Validation batches are unchanged."""
    pack_length: int | None = None
    """Tokens per packed row with `batching="packed"` (None: `max_seq_length`). Examples (in a seeded order) fill a
    row while they fit, then start the next; every example must fit in one row."""
    seed: int = 42
    """Seed for the validation split and the shuffling of training examples."""
    max_examples: int | None = None
    """Train on a seeded random subset of this many training examples (None: all). Subsets drawn with the same
    `subset_seed` are nested: the 16 examples are among the 64 (a data-size sweep)."""
    subset_seed: int = 0
    """Seed of the `max_examples` subset."""
    num_workers: int = 0
    """DataLoader worker processes."""

    tokenizer: Tokenizer | None = field(default=None, init=False, repr=False)
    max_seq_length: int = field(default=-1, init=False, repr=False)
    style: PromptStyle | None = field(default=None, init=False, repr=False)
    train_records: list[Record] | None = field(default=None, init=False, repr=False)
    val_records: list[Record] | None = field(default=None, init=False, repr=False)
    train_dataset: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    val_dataset: list[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__init__()
        if self.val_path is None and not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"Instructions(val_fraction={self.val_fraction}): give a fraction in (0, 1) or a val_path.")
        if self.batch_size < 1:
            raise ValueError(f"Instructions(batch_size={self.batch_size}) must be at least 1.")
        check_choice("Instructions", "batching", self.batching, BATCHINGS)
        if self.pack_length is not None and self.batching != "packed":
            raise ValueError(f"Instructions(pack_length={self.pack_length}) sets the length of packed rows: set "
                             "batching='packed' as well, or leave pack_length unset.")
        if self.pack_length is not None and self.pack_length < 2:
            raise ValueError(f"Instructions(pack_length={self.pack_length}) must be at least 2 tokens.")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"Instructions(max_examples={self.max_examples}) must be at least 1 (or None: all).")
        if self.prompt_style is not None:
            self.style = prompt_style_from_name(self.prompt_style)

    def connect(
        self,
        tokenizer: Tokenizer | None = None,
        batch_size: int | None = None,
        max_seq_length: int | None = None,
        default_prompt_style: PromptStyle | None = None,
    ) -> None:
        """Receive what only the model knows: its tokenizer, context length and its own prompt style (used for chat
        rows when no `prompt_style` was set)."""
        self.tokenizer = tokenizer
        if batch_size is not None:
            self.batch_size = batch_size
        self.max_seq_length = -1 if max_seq_length is None else max_seq_length
        if self.style is None:
            chat = self.messages_field is not None and default_prompt_style is not None
            self.style = default_prompt_style if chat else Default()

    def setup(self, stage: str = "") -> None:
        if self.train_records is None:
            self.train_records, self.val_records = self.read_splits()
        if self.tokenizer is not None and self.train_dataset is None:
            self.train_dataset = self.tokenize(self.train_records)
            self.val_dataset = self.tokenize(self.val_records)
            self.check_pack_length()

    def read_splits(self) -> tuple[list[Record], list[Record]]:
        train = read_records(self.path, self.split)
        if not train:
            raise DataError(f"'{self.path}' holds no examples.")
        if self.val_path is not None:
            val = read_records(self.val_path, self.val_split)
        else:
            order = list(range(len(train)))
            random.Random(self.seed).shuffle(order)
            n_val = max(1, round(self.val_fraction * len(train)))
            if n_val >= len(train):
                raise DataError(f"'{self.path}' has {len(train)} example(s): too few to hold out a validation set.")
            val = [train[i] for i in sorted(order[:n_val])]
            train = [train[i] for i in sorted(order[n_val:])]
        for record in train + val:
            self.example(record)
        return self.subset(train), val

    def subset(self, train: list[Record]) -> list[Record]:
        """The first `max_examples` of a `subset_seed` permutation of the training rows, in file order."""
        if self.max_examples is None:
            return train
        if self.max_examples > len(train):
            raise DataError(
                f"Instructions(max_examples={self.max_examples}): '{self.path}' has {len(train)} training example(s)"
                f"{'' if self.val_path else ' after holding out the validation split'}; ask for at most {len(train)}."
            )
        order = list(range(len(train)))
        random.Random(self.subset_seed).shuffle(order)
        return [train[i] for i in sorted(order[: self.max_examples])]

    @property
    def train_size(self) -> dict[str, int] | None:
        """How much training data the run has (`Accounting` records it): {"examples": n} once set up."""
        return None if self.train_records is None else {"examples": len(self.train_records)}

    def example(self, record: Record) -> dict[str, str]:
        """The row as LitGPT's `SFTDataset` expects it: instruction, input, output (and sys_prompt)."""
        if self.messages_field is not None:
            return self.chat_example(record)
        hint = "Set Instructions(instruction_field=..., input_field=..., output_field=...) to your data's names."
        return {
            "instruction": self.field_or_template(record, self.instruction_field, "instruction_template", hint),
            "input": text_field(record, self.input_field, hint, required=False),
            "output": self.field_or_template(record, self.output_field, "output_template", hint),
        }

    def field_or_template(self, record: Record, field_name: str, template_option: str, hint: str) -> str:
        """The row's `field_name`, or the option `template_option` (when set) filled from the row."""
        template = getattr(self, template_option)
        if template is None:
            return text_field(record, field_name, hint)
        try:
            return template.format(**record.data)
        except KeyError as error:
            present = ", ".join(sorted(map(str, record.data)))
            raise DataError(
                f"{record.where}: {template_option} names field {error} which the row lacks (fields present: "
                f"{present})."
            ) from None

    def chat_example(self, record: Record) -> dict[str, str]:
        messages = record.data.get(self.messages_field)
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{record.where}: field '{self.messages_field}' must be a non-empty list of messages.")
        for number, message in enumerate(messages, start=1):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
                raise DataError(
                    f"{record.where}: message {number} of '{self.messages_field}' needs 'role' and text 'content'."
                )
        system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = messages[1:] if system is not None else messages
        roles = [m["role"] for m in turns]
        if len(turns) < 2 or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
            raise DataError(
                f"{record.where}: messages must be an optional system message, then alternating user/assistant "
                f"turns ending with the assistant's answer; got roles {[m['role'] for m in messages]}."
            )
        style = self.style or Default()
        history = "".join(
            style.apply(turns[i]["content"], sys_prompt=system if i == 0 else None) + turns[i + 1]["content"] + "\n"
            for i in range(0, len(turns) - 2, 2)
        )
        last_prompt = style.apply(turns[-2]["content"], sys_prompt=system if len(turns) == 2 else None)
        return {"instruction": history + last_prompt, "input": "", "output": turns[-1]["content"]}

    def tokenize(self, records: list[Record]) -> list[dict[str, Any]]:
        """Tokenize every example once, whole; an example longer than `max_seq_length` is an error, named by row."""
        chat = self.messages_field is not None
        style = Default() if chat else self.style
        dataset = SFTDataset(
            data=with_input_in_prompt([self.example(record) for record in records], style),
            tokenizer=self.tokenizer,
            prompt_style=style,
            mask_prompt=self.mask_prompt,
            ignore_index=IGNORE_INDEX,
        )
        items = [{**dataset[index], "index": index} for index in range(len(records))]
        self.check_lengths(records, items)
        return items

    def check_lengths(self, records: list[Record], items: list[dict[str, Any]]) -> None:
        """Refuse examples that do not fit `max_seq_length`: truncating them would train on a cut response."""
        if self.max_seq_length < 1:
            return
        count, rows = longer_than(self.max_seq_length, records, items)
        if count:
            raise DataError(
                f"{count} example(s) are longer than max_seq_length={self.max_seq_length} tokens (prompt, response "
                f"and end-of-sequence token): {rows}. Cutting them would train on a truncated response. Raise "
                "max_seq_length (up to the model's context), shorten those examples, or remove the rows."
            )

    def check_pack_length(self) -> None:
        """Refuse a `pack_length` longer than `max_seq_length`, or shorter than a training example."""
        if self.pack_length is None:
            return
        if self.pack_length > self.max_seq_length >= 1:
            raise DataError(
                f"Instructions(pack_length={self.pack_length}) is longer than max_seq_length={self.max_seq_length}, "
                "the longest sequence the model is set up to read: lower pack_length or raise max_seq_length."
            )
        count, rows = longer_than(self.pack_length, self.train_records, self.train_dataset)
        if count:
            raise DataError(
                f"{count} example(s) are longer than Instructions(pack_length={self.pack_length}) tokens, so no packed "
                f"row can hold them: {rows}. Raise pack_length (up to max_seq_length), shorten those examples, or "
                "remove the rows."
            )

    @property
    def row_length(self) -> int:
        """Tokens per packed row: `pack_length`, else `max_seq_length`."""
        length = self.pack_length or self.max_seq_length
        if length < 2:
            raise ValueError("Instructions(batching='packed') needs the length of a packed row: set pack_length, or "
                             "connect the data to a module (which gives max_seq_length).")
        return length

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = get_sft_collate_fn(max_seq_length=self.max_seq_length, ignore_index=IGNORE_INDEX)(samples)
        batch["index"] = torch.tensor([sample["index"] for sample in samples])
        return batch

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        dataset, collate = self.train_dataset, self.collate
        if self.batching == "grouped":
            lengths = [len(item["input_ids"]) for item in dataset]
            batches = grouped_batches(lengths, self.batch_size, generator)
        else:
            if self.batching == "packed":
                dataset, collate = self.packed_rows(), partial(packed_collate, length=self.row_length)
            batches = shuffled_batches(dataset, self.batch_size, generator)
        return ResumableDataLoader(
            dataset,
            batch_sampler=batches,
            generator=generator,  # the workers' base seed, drawn from it as with `shuffle=True`
            num_workers=self.num_workers,
            collate_fn=collate,
            trained_batches=partial(trained_in_epoch, self),
        )

    def packed_rows(self) -> list[list[dict[str, Any]]]:
        """The training examples packed into rows of `row_length` tokens, once per run: taken in an order drawn from
        `seed`, each row filled while the next example fits (`next_fit`). Each epoch shuffles the rows, not their
        contents, so that every epoch has as many micro-batches (which Lightning and resuming rely on)."""
        lengths = [len(item["input_ids"]) for item in self.train_dataset]
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(self.seed)).tolist()
        return [[self.train_dataset[i] for i in row] for row in next_fit(lengths, order, self.row_length)]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=self.collate,
        )
