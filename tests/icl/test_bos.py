"""The BOS rule: prompts, fine-tuning examples and CPT documents start as the model's Hugging Face tokenizer starts
them (lm-evaluation-harness's default), whatever the checkpoint folder is called; an explicit `add_bos` overrides."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lightning_adapt import Instructions
from lightning_adapt.icl.encoding import encode_pair
from lightning_adapt.model.loading import CheckpointTokenizer, bos_rule, encode_text, load_tokenizer

QUICK = Path(__file__).parents[2] / "lightning_adapt" / "configs" / "compare" / "quick.yaml"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


@pytest.mark.slow
def test_smollm2_prompts_start_without_bos_as_its_hugging_face_tokenizer_does(smollm2_dir, tmp_path):
    tokenizer = load_tokenizer(smollm2_dir)
    assert json.loads((smollm2_dir / "tokenizer_config.json").read_text())["add_bos_token"] is False
    assert tokenizer.use_bos and not tokenizer.hf_bos  # LitGPT special-cases the folder name; transformers adds none
    text = "Review: the soup was cold\nSentiment:"
    ids = tokenizer.encode(text).tolist()
    assert ids == tokenizer.processor.encode(text, add_special_tokens=False).ids and ids[0] != tokenizer.bos_id

    final = tmp_path / "final"  # an exported copy tokenizes alike (LitGPT's rule would differ by folder name)
    final.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copy(smollm2_dir / name, final / name)
    assert CheckpointTokenizer(final).encode(text).tolist() == ids

    chat = "<|im_start|>user\nhi<|im_end|>"  # written in the text: kept, and never doubled
    assert tokenizer.encode(chat).tolist()[0] == tokenizer.bos_id
    with_bos = encode_text(tokenizer, chat, True)
    assert with_bos[0] == tokenizer.bos_id != with_bos[1]
    assert encode_text(tokenizer, text, True) == [tokenizer.bos_id, *ids]
    assert bos_rule(tokenizer, True) and not bos_rule(tokenizer)


def test_demo_icl_prompts_and_fine_tuning_examples_are_token_identical(smollm2_dir, tmp_path):
    config = yaml.safe_load(QUICK.read_text())
    task, data = config["tasks"][0], config["finetune"]["data"]
    assert task["template"] == data["instruction_template"] and data["prompt_style"] == "default"
    rows = [{"text": "The soup was cold and the waiter rude.", "label": "Negative"},
            {"text": "Lovely staff, great pasta.", "label": "Positive"}]
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tokenizer = load_tokenizer(smollm2_dir)
    examples = Instructions(str(path), val_path=str(path), instruction_template=data["instruction_template"],
                            output_template=data["output_template"], prompt_style="default")
    examples.connect(tokenizer=tokenizer, max_seq_length=128)
    examples.setup()
    for row, example in zip(rows, examples.val_dataset):
        context, continuation = encode_pair(tokenizer, task["template"].format(**row), " " + row["label"],
                                            bos_rule(tokenizer))
        assert example["input_ids"].tolist() == context + continuation + [tokenizer.eos_id]
