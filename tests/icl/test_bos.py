"""The BOS rule: prompts, fine-tuning examples and CPT documents start as the model's Hugging Face tokenizer starts
them (lm-evaluation-harness's default), whatever the checkpoint folder is called; an explicit `add_bos` overrides."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lightning_adapt import Instructions
from lightning_adapt.data.records import read_records
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


@pytest.mark.parametrize("variant", ["lora", "lora-support"])
def test_demo_icl_prompts_and_fine_tuning_examples_are_token_identical(smollm2_dir, variant):
    """Each fine-tuning variant of the demo trains on the prompt its ICL task scores: review sentiment (a label) and
    the house-style support replies (several lines), the same tokens plus EOS."""
    config = yaml.safe_load(QUICK.read_text())
    settings = next(settings for settings in config["finetune"] if settings["name"] == variant)
    data = settings["data"]
    task = next(task for task in config["tasks"] if task["template"] == data["instruction_template"])
    assert data["prompt_style"] == "default" and data["output_template"] == " {" + task["target"] + "}"
    rows = [record.data for record in read_records(data["val_path"])[:3]]
    tokenizer = load_tokenizer(smollm2_dir)
    examples = Instructions(data["path"], val_path=data["val_path"], instruction_template=data["instruction_template"],
                            output_template=data["output_template"], prompt_style="default")
    examples.connect(tokenizer=tokenizer, max_seq_length=settings["max_seq_length"])
    examples.setup()
    for row, example in zip(rows, examples.val_dataset):
        context, continuation = encode_pair(tokenizer, task["template"].format(**row),
                                            task.get("target_delimiter", " ") + row[task["target"]], bos_rule(tokenizer))
        assert example["input_ids"].tolist() == context + continuation + [tokenizer.eos_id]
