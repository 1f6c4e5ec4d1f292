import torch
from litgpt import GPT, Config

from lightning_adapt.cli import main


def test_convert_gguf_command_writes_a_loadable_litgpt_checkpoint(tmp_path, tiny_gguf, capsys):
    source = tiny_gguf()
    main(["convert", "gguf", str(source), "--out", str(tmp_path / "converted")])
    assert "Wrote LitGPT checkpoint" in capsys.readouterr().out
    model = GPT(Config.from_file(tmp_path / "converted" / "model_config.yaml"))
    model.load_state_dict(torch.load(tmp_path / "converted" / "lit_model.pth", weights_only=True))
