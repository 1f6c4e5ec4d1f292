"""`lightning-adapt convert hf`: a transformers folder built offline becomes a LitGPT checkpoint our loader reads with
the logits of the transformers model; folders it cannot convert are refused with the way out."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from litgpt import Config

from lightning_adapt.cli import main
from lightning_adapt.model.from_hf import HFConversionError, convert_from_hf
from lightning_adapt.model.loading import load_config, load_model, load_tokenizer
from lightning_adapt.testing import train_tiny_tokenizer

transformers = pytest.importorskip("transformers")

PYTHIA = Config.from_name("pythia-14m")
"""The smallest model LitGPT knows (GPT-NeoX, 14M parameters): a random model of its sizes is converted."""


def save_tokenizer(folder: Path) -> None:
    train_tiny_tokenizer(384).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
    }))


def pythia_sized_model(folder: Path) -> torch.nn.Module:
    """A random GPTNeoXForCausalLM with pythia-14m's sizes, saved with save_pretrained under another folder name."""
    config = transformers.GPTNeoXConfig(
        vocab_size=PYTHIA.padded_vocab_size, hidden_size=PYTHIA.n_embd, num_hidden_layers=PYTHIA.n_layer,
        num_attention_heads=PYTHIA.n_head, intermediate_size=PYTHIA.intermediate_size,
        rotary_pct=PYTHIA.rotary_percentage, rotary_emb_base=PYTHIA.rope_base, max_position_embeddings=PYTHIA.block_size,
        layer_norm_eps=PYTHIA.norm_eps, use_parallel_residual=PYTHIA.parallel_residual, tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.GPTNeoXForCausalLM(config).eval()
    model.save_pretrained(folder)
    save_tokenizer(folder)
    return model


def tiny_llama_folder(folder: Path) -> Path:
    config = transformers.LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    save_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def hf_pythia(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "my-finetuned-model"
    return folder, pythia_sized_model(folder)


@pytest.mark.slow
def test_a_transformers_folder_converts_to_a_checkpoint_with_the_same_logits(hf_pythia, tmp_path, capsys):
    folder, hf_model = hf_pythia
    before = sorted(path.name for path in folder.iterdir())
    main(["convert", "hf", str(folder), "--out", str(tmp_path / "lit")])
    printed = capsys.readouterr().out
    assert "as LitGPT's pythia-14m" in printed  # the only model of its sizes
    assert sorted(path.name for path in folder.iterdir()) == before  # the source folder is left as it was
    assert not list((tmp_path / "lit").glob("*.safetensors"))

    config = load_config(tmp_path / "lit")
    assert config.name == "pythia-14m"
    model = load_model(tmp_path / "lit", config, dtype=torch.float32).eval()
    ids = torch.tensor([load_tokenizer(tmp_path / "lit").encode("The cat sat on the mat.").tolist()])
    with torch.no_grad():
        expected = hf_model(ids).logits
        assert torch.allclose(model(ids), expected, atol=1e-4), (model(ids) - expected).abs().max()

    try_line = next(line for line in printed.splitlines() if line.startswith("Try it: "))
    command = shlex.split(try_line.removeprefix("Try it: "))
    assert command[:3] == ["litgpt", "generate", str(tmp_path / "lit")]
    checked = subprocess.run([sys.executable, "-m", *command, "--print_config"], capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stderr[-2000:]


def test_a_named_model_must_have_the_folders_sizes(hf_pythia, tmp_path):
    folder, _ = hf_pythia
    with pytest.raises(HFConversionError, match=r"sizes of LitGPT's SmolLM2-135M: num_hidden_layers: 6 "
                                                r"\(LitGPT SmolLM2-135M: 30\).*Models of its sizes .*pythia-14m"):
        convert_from_hf(folder, out=tmp_path / "lit", model_name="SmolLM2-135M")
    with pytest.raises(HFConversionError, match="--model_name pythia-15m: LitGPT knows no such model"):
        convert_from_hf(folder, out=tmp_path / "lit", model_name="pythia-15m")
    assert not (tmp_path / "lit").exists()


def test_a_folder_of_sizes_litgpt_does_not_know_is_refused_with_the_known_names(tmp_path):
    folder = tiny_llama_folder(tmp_path / "tiny-llama")
    with pytest.raises(HFConversionError) as refused:
        convert_from_hf(folder, out=tmp_path / "lit")
    message = str(refused.value)
    assert "LlamaForCausalLM: num_hidden_layers 2, hidden_size 32" in message
    assert "--model_name" in message and "export FOLDER --format litgpt" in message
    assert "pythia-14m" in message and "SmolLM2-135M-Instruct" in message  # the names LitGPT knows
    assert not (tmp_path / "lit").exists()


def test_a_folder_without_config_or_tokenizer_is_refused_before_any_work(tmp_path, capsys):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit) as refused:
        main(["convert", "hf", str(folder), "--out", str(tmp_path / "lit")])
    assert "has no config.json" in str(refused.value) and "save_pretrained" in str(refused.value)

    (folder / "config.json").write_text("{}")
    with pytest.raises(HFConversionError, match=r"no tokenizer.json or tokenizer.model: .*tokenizer.save_pretrained"):
        convert_from_hf(folder, out=tmp_path / "lit")
    with pytest.raises(HFConversionError, match="dtype 'float8'"):
        convert_from_hf(folder, out=tmp_path / "lit", dtype="float8")


@pytest.mark.parametrize("inside", ["", "lit"], ids=["the-folder-itself", "a-folder-inside-it"])
def test_an_output_folder_that_is_or_lies_inside_the_input_is_refused_and_the_input_is_untouched(hf_pythia, inside):
    folder, _ = hf_pythia
    before = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with pytest.raises(SystemExit) as refused:
        main(["convert", "hf", str(folder), "--out", str(folder / inside)])
    assert str(folder) in str(refused.value)
    assert {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
