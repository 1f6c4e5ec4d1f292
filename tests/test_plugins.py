from pathlib import Path

import pytest

from lightning_adapt import CheckpointError, FineTuning
from lightning_adapt.core.plugins import download_name, plugin


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

