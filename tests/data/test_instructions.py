import json

import pytest
import torch
from litgpt import Tokenizer
from litgpt.prompts import Alpaca, prompt_styles

from lightning_adapt import DataError, Instructions
from lightning_adapt.data.instructions import INPUT_SEPARATOR, places_input
from tests.helpers import write_instruction_file


def connected(data: Instructions, checkpoint_dir, max_seq_length=128) -> Instructions:
    data.connect(Tokenizer(checkpoint_dir), max_seq_length=max_seq_length, default_prompt_style=Alpaca())
    data.setup()
    return data


def test_labels_are_masked_exactly_on_prompt_tokens(tmp_path, tiny_checkpoint):
    data = connected(Instructions(str(write_instruction_file(tmp_path / "d.jsonl")), val_fraction=0.25,
                                  prompt_style="alpaca"), tiny_checkpoint)
    tokenizer = Tokenizer(tiny_checkpoint)
    for item in data.train_dataset[:5]:
        record = data.train_records[item["index"]]
        prompt = Alpaca().apply(record.data["instruction"], input="")
        n_prompt = len(tokenizer.encode(prompt))
        assert (item["labels"][:n_prompt] == -100).all()
        response = item["labels"][n_prompt:]
        assert (response != -100).all()
        assert torch.equal(response, item["input_ids"][n_prompt:])
        assert response[-1].item() == tokenizer.eos_id
        assert tokenizer.decode(response[:-1]) == record.data["output"]


def test_unmasked_prompt_trains_on_every_token(tmp_path, tiny_checkpoint):
    data = connected(Instructions(str(write_instruction_file(tmp_path / "d.jsonl")), mask_prompt=False), tiny_checkpoint)
    item = data.train_dataset[0]
    assert torch.equal(item["labels"], item["input_ids"])


def test_seeded_validation_split_is_disjoint_and_reproducible(tmp_path):
    path = str(write_instruction_file(tmp_path / "d.jsonl", n=40))
    a, b = Instructions(path, val_fraction=0.25, seed=1), Instructions(path, val_fraction=0.25, seed=1)
    a.setup(), b.setup()
    rows = lambda records: [r.row for r in records]
    assert rows(a.val_records) == rows(b.val_records) and len(a.val_records) == 10
    assert not set(rows(a.val_records)) & set(rows(a.train_records))
    c = Instructions(path, val_fraction=0.25, seed=2)
    c.setup()
    assert rows(c.val_records) != rows(a.val_records)


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_reads_json_csv_and_parquet_with_custom_fields(tmp_path, tiny_checkpoint, suffix):
    import pandas as pd

    frame = pd.DataFrame({"question": [f"q{i}" for i in range(10)], "answer": [f"a{i}" for i in range(10)]})
    path = tmp_path / f"d{suffix}"
    {".json": lambda: path.write_text(frame.to_json(orient="records")), ".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path)}[suffix]()
    data = connected(Instructions(str(path), instruction_field="question", output_field="answer", val_fraction=0.2), tiny_checkpoint)
    assert len(data.train_dataset) == 8 and len(data.val_dataset) == 2
    assert {r.data["answer"] for r in data.train_records + data.val_records} == {f"a{i}" for i in range(10)}


def test_chat_messages_train_on_the_last_assistant_turn(tmp_path, tiny_checkpoint):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Hi {i}"},
                          {"role": "assistant", "content": f"Hello {i}"}]} for i in range(6)]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = Instructions(str(path), messages_field="messages", prompt_style="qwen3", val_fraction=0.2)
    data = connected(data, tiny_checkpoint)
    item = data.train_dataset[0]
    tokenizer = Tokenizer(tiny_checkpoint)
    prefix = tokenizer.encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")
    assert torch.equal(item["input_ids"][: len(prefix)], prefix.long())
    target = item["labels"][item["labels"] != -100]
    assert tokenizer.decode(target[:-1]).startswith("Hello")


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 2: not valid JSON"):
        Instructions(str(path)).setup()


def test_missing_field_names_row_field_and_fix(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "answer": "d"}\n{"instruction": "e", "output": "f"}\n')
    with pytest.raises(DataError, match=r"d.jsonl: row 2: missing field 'output' \(fields present: answer, instruction\).*output_field"):
        Instructions(str(path), val_fraction=0.3).setup()


def test_missing_file_and_unknown_prompt_style(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Instructions(str(tmp_path / "nope.jsonl")).setup()
    with pytest.raises(ValueError, match="Unknown prompt style 'alpacca'.*alpaca"):
        Instructions(str(tmp_path / "nope.jsonl"), prompt_style="alpacca")


@pytest.mark.parametrize("too_long", ["instruction", "output"])
def test_an_example_longer_than_max_seq_length_is_an_error_never_cut(tmp_path, tiny_checkpoint, too_long):
    path = tmp_path / "long.jsonl"
    rows = [{"instruction": "word " * 2, "output": "ok"} for _ in range(8)]
    rows[3][too_long] = "word " * 600  # a 600-word response used to train as the few tokens that fit
    path.write_text("\n".join(json.dumps(r) for r in rows))
    before = path.read_bytes()
    data = Instructions(str(path), val_path=str(path))
    with pytest.raises(DataError, match=r"1 example\(s\) are longer than max_seq_length=128 tokens .*long.jsonl: row 4 "
                                        r"\(\d{3,} tokens\)\. .*Raise max_seq_length .*or remove the rows"):
        connected(data, tiny_checkpoint, max_seq_length=128)
    assert path.read_bytes() == before
    rows[3][too_long] = "word " * 20  # fits: trained whole, the end-of-sequence token included
    path.write_text("\n".join(json.dumps(r) for r in rows))
    item = connected(Instructions(str(path), val_path=str(path)), tiny_checkpoint, max_seq_length=128).train_dataset[3]
    assert item["input_ids"][-1] == Tokenizer(tiny_checkpoint).eos_id


STYLES = ["default", *sorted(prompt_styles)]


@pytest.mark.parametrize("style", STYLES)
def test_every_prompt_style_sees_the_input_field(tmp_path, tiny_checkpoint, style):
    """LitGPT's styles other than Alpaca drop `input`: it is joined to the instruction for them."""
    path = tmp_path / "reviews.jsonl"
    row = {"instruction": "Classify the sentiment of the review.", "input": "the food was great", "output": "Positive"}
    path.write_text("\n".join(json.dumps(row) for _ in range(4)))
    data = connected(Instructions(str(path), prompt_style=style, val_fraction=0.25), tiny_checkpoint, max_seq_length=None)
    item = data.train_dataset[0]
    prompt = data.tokenizer.decode(item["input_ids"][item["labels"] == -100])
    assert "Classify the sentiment of the review." in prompt and "the food was great" in prompt
    expected = (data.style.apply(row["instruction"], input=row["input"]) if places_input(data.style) else
                data.style.apply(row["instruction"] + INPUT_SEPARATOR + row["input"]))
    assert torch.equal(item["input_ids"][item["labels"] == -100], data.tokenizer.encode(expected))
    assert places_input(data.style) == (style == "alpaca")


def test_instruction_template_builds_prompts_from_row_fields(tmp_path, tiny_checkpoint):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"review {i}", "label": "Positive"}) for i in range(5)))
    data = Instructions(str(path), instruction_template="Review: {text}\nSentiment?", output_field="label", val_fraction=0.2)
    data.setup()
    assert data.example(data.train_records[0])["instruction"].startswith("Review: review ")
    bad = Instructions(str(path), instruction_template="Review: {body}", output_field="label", val_fraction=0.2)
    with pytest.raises(DataError, match=r"reviews.jsonl: row \d: instruction_template names field 'body'.*fields present: label, text"):
        bad.setup()


def test_default_prompt_style_and_output_template_render_exactly_like_an_icl_prompt(tmp_path, tiny_checkpoint):
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"review {i}", "label": "Positive"}) for i in range(5)))
    data = Instructions(
        str(path), instruction_template="Review: {text}\nSentiment:", output_template=" {label}",
        prompt_style="default", val_fraction=0.2,
    )
    connected(data, tiny_checkpoint, max_seq_length=64)
    record = data.train_records[0]
    assert data.example(record) == {"instruction": f"Review: {record.data['text']}\nSentiment:", "input": "",
                                    "output": " Positive"}
    item = data.train_dataset[0]
    response = item["input_ids"][item["labels"] != -100]
    assert data.tokenizer.decode(response[:-1]) == " Positive" and response[-1] == data.tokenizer.eos_id
    bad = Instructions(str(path), output_template="{verdict}", instruction_field="text", val_fraction=0.2)
    with pytest.raises(DataError, match=r"reviews.jsonl: row \d: output_template names field 'verdict'"):
        bad.setup()
    with pytest.raises(ValueError, match=r"Unknown prompt style 'plain'.*default, alpaca"):
        Instructions(str(path), prompt_style="plain")


def test_instruction_rows_default_to_the_prompt_as_written_and_chat_rows_to_the_models_style(tmp_path, tiny_checkpoint):
    """An ICL task scores its raw template: by default, fine-tuning trains on the prompt exactly as written, even when
    the model's own style (here Alpaca) wraps prompts; chat rows, which no template prompts, take the model's style."""
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"review {i}", "label": "Positive"}) for i in range(5)))
    data = connected(Instructions(str(path), instruction_template="Review: {text}\nSentiment:", output_template=" {label}",
                                  val_fraction=0.2), tiny_checkpoint)
    assert type(data.style).__name__ == "Default"
    item = data.train_dataset[0]
    prompt = data.tokenizer.decode(item["input_ids"][item["labels"] == -100])
    assert prompt == f"Review: {data.train_records[0].data['text']}\nSentiment:"
    rows = [{"messages": [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": f"Hello {i}"}]}
            for i in range(5)]
    chat = tmp_path / "chat.jsonl"
    chat.write_text("\n".join(json.dumps(row) for row in rows))
    data = connected(Instructions(str(chat), messages_field="messages", val_fraction=0.2), tiny_checkpoint)
    assert isinstance(data.style, Alpaca)
    assert data.example(data.train_records[0])["instruction"] == Alpaca().apply(
        data.train_records[0].data["messages"][0]["content"])
