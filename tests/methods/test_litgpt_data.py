import json

import lightning as L
from litgpt.data import JSON

from lightning_adapt import FineTuning, LoRA, Optimization
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
