"""The export formats behind one interface: every registered format writes an adapted model (or refuses it before
reading a weight), those that read back give the same weights, plugins register formats by entry point, and names
and options are checked with the known ones listed."""

import json
import textwrap
from pathlib import Path

import pytest
import torch

from lightning_adapt import ExportSettings, LoRA
from lightning_adapt.cli import main, training_cli
from lightning_adapt.core.atomic import read_marker
from lightning_adapt.formats import registry
from lightning_adapt.formats.base import ExportError, ModelInfo, write_format
from lightning_adapt.formats.hf import LLAMA_FIELDS
from lightning_adapt.formats.litgpt import GPTWeights
from lightning_adapt.formats.registry import folder_format, format_names, make_format
from lightning_adapt.model.loading import load_config, load_model
from lightning_adapt.techniques.adapter_v2 import AdapterV2
from lightning_adapt.techniques.base import TechniqueError
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config
from tests.helpers import spread_weights, write_instruction_file

CONFIGS = {
    "llama": tiny_config("tiny-llama"),
    "qwen2": tiny_config("tiny-qwen2", n_query_groups=4, attn_bias=True),
    "llama3-rope": tiny_config(
        "tiny-llama3", rope_adjustments=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=32)
    ),
}
ARCHITECTURE_FIELDS = ("n_layer", "n_head", "n_embd", "n_query_groups", "head_size", "intermediate_size",
                       "padded_vocab_size", "block_size", "norm_eps", "rope_base", "rope_adjustments", "attn_bias",
                       *LLAMA_FIELDS)


def installed_formats() -> list[str]:
    return [name for name in format_names() if name in registry.BUILTIN_FORMATS or name in registry.plugin_entries()]


TECHNIQUES = {"lora": LoRA(r=2, alpha=4, targets=["query", "value", "mlp"]),
              "adapter_v2": AdapterV2(adapter_prompt_length=4, adapter_start_layer=0)}
MODELS = [("llama", "lora"), ("qwen2", "lora"), ("llama3-rope", "lora"), ("llama", "adapter_v2")]


@pytest.fixture(scope="module", params=MODELS, ids=["-".join(model) for model in MODELS])
def adapted_model(request, tmp_path_factory):
    """A tiny model with a trained-looking adapter (every added parameter drawn at random, so that merging LoRA
    changes the weights and Adapter V2's gates are open)."""
    config, technique = request.param
    checkpoint = spread_weights(make_tiny_checkpoint(tmp_path_factory.mktemp("base") / config, config=CONFIGS[config]))
    torch.manual_seed(0)
    model = load_model(checkpoint, load_config(checkpoint, TECHNIQUES[technique]), dtype=torch.float32)
    for name, parameter in model.named_parameters():
        if TECHNIQUES[technique].is_added(name):
            parameter.data.normal_(0, 0.1)
    return checkpoint, model


@pytest.mark.parametrize("name", installed_formats())
def test_every_format_writes_an_adapted_model_and_reads_back_the_same_weights_where_it_can(tmp_path, adapted_model,
                                                                                          name):
    checkpoint, model = adapted_model
    format, info, weights = make_format(name), ModelInfo(model.config, checkpoint, checkpoint), GPTWeights(model)
    if isinstance(info.technique, AdapterV2) and name != "litgpt":
        with pytest.raises(TechniqueError, match=f"An Adapter V2 model cannot be written in the {name} format"):
            format.check(info)
        return
    if name == "gguf" and model.config.rope_adjustments is not None:
        with pytest.raises(ExportError, match="rope_adjustments"):
            format.check(info)
        return
    format.check(info)
    out = write_format(format, info, weights, tmp_path / name, [checkpoint], overwrite=False)
    assert read_marker(out) == format.kind
    if not format.holds(out):
        assert folder_format(out) is None
        with pytest.raises(ExportError, match=f"Format {name} cannot be read back"):
            format.read(out)
        return
    assert folder_format(out).name == name
    back, back_weights = format.read(out)
    merged, read = weights.merged(), back_weights.merged()
    assert read.keys() == merged.keys() and all(torch.equal(read[key], merged[key]) for key in merged), name
    assert {key: getattr(back.config, key) for key in ARCHITECTURE_FIELDS} == {
        key: getattr(model.config, key) for key in ARCHITECTURE_FIELDS}
    if back.technique is not None:  # the LitGPT folder keeps the adapter and its base
        assert back.technique == info.technique and back.base_dir == checkpoint.resolve()
        adapter = back_weights.adapter()
        assert all(torch.equal(adapter[key], value) for key, value in weights.adapter().items())


def test_a_hugging_face_folder_exports_to_a_litgpt_folder_with_its_weights(tmp_path, tiny_checkpoint):
    checkpoint = tiny_checkpoint
    main(["export", str(checkpoint), "--format", "hf", "--out_dir", str(tmp_path / "hf")])
    main(["export", str(tmp_path / "hf"), "--format", "litgpt", "--out_dir", str(tmp_path / "litgpt")])
    original = torch.load(checkpoint / "lit_model.pth", weights_only=True)
    converted = torch.load(tmp_path / "litgpt" / "lit_model.pth", weights_only=True)
    assert converted.keys() == original.keys() and all(torch.equal(converted[k], original[k]) for k in original)
    assert load_model(tmp_path / "litgpt", load_config(tmp_path / "litgpt")) is not None
    with pytest.raises(SystemExit, match="is a folder of the hf format already"):
        main(["export", str(tmp_path / "hf"), "--format", "hf", "--out_dir", str(tmp_path / "again")])


PLUGIN = '''
    from pathlib import Path

    import torch

    from lightning_adapt.formats.base import Format, ModelInfo, Weights


    class TorchFormat(Format):
        name = "torch-file"
        kind = "torch-file-export"
        description = "one torch file"

        def write(self, model: ModelInfo, weights: Weights, folder: Path) -> None:
            torch.save(weights.merged(), folder / "model.pt")


    class NotAFormat:
        pass
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch) -> Path:
    """An installed distribution registering `torch-file` (a Format) and `broken` (not one) as export formats."""
    (tmp_path / "torch_file_format.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "torch_file_format-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torch-file-format\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[lightning_adapt.formats]\ntorch-file = torch_file_format:TorchFormat\nbroken = torch_file_format:NotAFormat\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_format_registered_by_entry_point_is_found_and_exported(plugin_path, tmp_path, tiny_checkpoint):
    assert "torch-file" in format_names()
    out = tmp_path / "out"
    main(["export", str(tiny_checkpoint), "--format", "torch-file", "--out_dir", str(out)])
    assert read_marker(out) == "torch-file-export"
    saved = torch.load(out / "model.pt", weights_only=True)
    original = torch.load(tiny_checkpoint / "lit_model.pth", weights_only=True)
    assert all(torch.equal(saved[key], original[key]) for key in original)
    assert [format.folder_name() for format in ExportSettings(formats=["litgpt", "torch-file"]).selected().values()] == [
        "final", "final-torch-file"]
    with pytest.raises(ExportError, match="'broken' entry point .*torch_file_format:NotAFormat.* is not a "
                                          "lightning_adapt.formats.base.Format subclass"):
        make_format("broken")


def test_an_unknown_format_or_option_is_refused_listing_the_known_ones(monkeypatch):
    with pytest.raises(ExportError, match=r"Unknown export format 'onnx'\. Choose one of: litgpt, hf, peft, gguf"):
        make_format("onnx")
    with pytest.raises(ExportError, match="Unknown export format 'onnx'"):
        ExportSettings(formats=["litgpt", "onnx"])
    with pytest.raises(ExportError, match=r"Format peft has no option outtype \(its options: none\)"):
        make_format("peft", {"outtype": "f16"})
    with pytest.raises(ExportError, match="export: options has hf, which formats"):
        ExportSettings(formats=["litgpt"], options={"hf": {}})
    monkeypatch.setattr(registry, "plugin_entries", dict)  # no plugin installed
    with pytest.raises(ModuleNotFoundError, match="Format 'gguf' comes from a plugin that is not installed: pip install "
                                                  "./plugins/gguf"):
        make_format("gguf")


def test_gguf_options_live_on_the_gguf_format_and_the_old_key_is_still_read(tmp_path, tiny_checkpoint):
    pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")
    new = ExportSettings(formats=["litgpt", "gguf"], options={"gguf": {"outtype": "q8_0"}})
    old = ExportSettings(formats=["litgpt", "gguf"], gguf_outtype="q8_0")
    assert new == old and old.selected()["gguf"].options.outtype == "q8_0"
    assert ExportSettings(formats=["gguf"]).selected()["gguf"].options.outtype == "f16"
    # a .ckpt written before the options moved holds the old default even without gguf
    assert ExportSettings(formats=["litgpt"], gguf_outtype="f16") == ExportSettings(formats=["litgpt"])
    with pytest.raises(ExportError, match="gguf_outtype 'f32' and options: {gguf: {outtype: 'q8_0'}} differ"):
        ExportSettings(formats=["gguf"], gguf_outtype="f32", options={"gguf": {"outtype": "q8_0"}})
    with pytest.raises(ExportError, match="Unknown GGUF outtype 'q2'"):
        ExportSettings(formats=["gguf"], options={"gguf": {"outtype": "q2"}})

    data = write_instruction_file(tmp_path / "train.jsonl")
    for export in ({"formats": ["litgpt", "gguf"], "gguf_outtype": "bf16"},
                   {"formats": ["litgpt", "gguf"], "options": {"gguf": {"outtype": "bf16"}}}):
        cli = training_cli("finetune", [
            "--model.checkpoint_dir", str(tiny_checkpoint), "--model.export", json.dumps(export),
            "--data", "lightning_adapt.Instructions", "--data.path", str(data),
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.accelerator", "cpu"])
        assert cli.model.export_settings.selected()["gguf"].options.outtype == "bf16", export
