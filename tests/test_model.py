import shutil

import pytest

from lightning_adapt import CheckpointError, FineTuning, LoRA


def copy_checkpoint(tiny_checkpoint, tmp_path):
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def test_missing_folder_names_it_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"'.*nowhere' does not exist.*lightning-adapt download"):
        FineTuning(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["lit_model.pth", "model_config.yaml", "tokenizer.json"])
def test_missing_checkpoint_file_is_named(tmp_path, tiny_checkpoint, name):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path)
    (folder / name).unlink()
    with pytest.raises(CheckpointError, match=f"missing {name}"):
        FineTuning(folder)


def test_unreadable_tokenizer_is_explained(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path)
    (folder / "tokenizer.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="LitGPT cannot read the tokenizer.*tokenizer.json"):
        FineTuning(folder)


def test_weights_from_another_model_are_refused_before_training(tmp_path, tiny_checkpoint):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path)
    config = (folder / "model_config.yaml").read_text().replace("n_layer: 2", "n_layer: 3")
    (folder / "model_config.yaml").write_text(config)
    module = FineTuning(folder)
    with pytest.raises(CheckpointError, match=r"do not match the model in model_config.yaml: missing \['transformer.h.2"):
        module.configure_model()


def test_unknown_lora_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown target\(s\) \['attention'\]. Choose from \['query', 'key', 'value', 'projection', 'mlp', 'head'\]"):
        LoRA(targets=["query", "attention"])


def test_max_seq_length_beyond_the_context_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match=r"max_seq_length=4096 must lie in \[2, 256\]"):
        FineTuning(tiny_checkpoint, max_seq_length=4096)
