import json

import lightning as L
import pytest
from litgpt.data import JSON

from lightning_adapt import DataError, FineTuning, LoRA, Optimization
from tests.helpers import COLOURS, quiet_trainer


def test_litgpt_json_data_module_works_unchanged(tmp_path, tiny_checkpoint):
    rows = [{"instruction": f"Colour of {i}?", "input": "", "output": COLOURS[i % 5]} for i in range(24)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), optimization=Optimization(learning_rate=1e-2, warmup_steps=1))
    data = JSON(path, val_split_fraction=0.25, mask_prompt=True, num_workers=0)
    trainer = quiet_trainer(tmp_path, max_steps=6, val_check_interval=3)
    trainer.fit(module, datamodule=data)
    assert data.tokenizer is module.tokenizer and data.max_seq_length == module.max_seq_length
    assert module.train_examples == 6
    assert "val/loss" in trainer.callback_metrics
    assert (tmp_path / "final" / "lit_model.pth").is_file()


def test_litgpt_json_data_whose_prompt_style_drops_the_input_is_refused(tmp_path, tiny_checkpoint):
    rows = [{"instruction": "Classify the sentiment of the review.", "input": f"review {i}", "output": "Positive"}
            for i in range(8)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows))
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4))
    data = JSON(path, val_split_fraction=0.25, prompt_style="llama3", num_workers=0)
    with pytest.raises(DataError, match=r"JSON.train_dataset: 6 example\(s\) have an 'input' field that prompt style "
                                        r"Llama3 drops .*Use lightning_adapt.Instructions"):
        quiet_trainer(tmp_path, max_steps=1).fit(module, datamodule=data)
    assert not (tmp_path / "final").exists()
    data = JSON(path, val_split_fraction=0.25, prompt_style="alpaca", num_workers=0)  # Alpaca has an input slot
    quiet_trainer(tmp_path / "alpaca", max_steps=1, limit_val_batches=0).fit(module, datamodule=data)
