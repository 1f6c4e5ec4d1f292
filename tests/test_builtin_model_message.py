"""Making the built-in model's folder on first use says what is happening, before and after (it takes a while)."""

from lightning_adapt.model import loading
from lightning_adapt.testing import make_tiny_checkpoint


def test_the_first_use_of_the_built_in_model_says_it_is_being_made(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "checkpoints" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    made = []

    def download(name, root):  # the plugin's work, without the wheel: a checkpoint folder where it would be
        made.append((name, root))
        print("the plugin works", flush=True)
        return make_tiny_checkpoint(folder)

    monkeypatch.setattr(loading, "download", download)
    assert loading.resolve_checkpoint_dir(folder) == folder
    printed = capsys.readouterr()
    assert made == [("smollm2-135m-instruct", tmp_path / "checkpoints")]
    before, after = printed.err.splitlines()
    assert before.startswith(f"[lightning-adapt] making the built-in model's checkpoint folder {folder} (first use "
                             "only): its plugin fetches the smollm2-135m-instruct weights")
    assert after.startswith(f"[lightning-adapt] {folder} is ready (") and printed.out == "the plugin works\n"
    loading.resolve_checkpoint_dir(folder)  # made: nothing to say
    assert capsys.readouterr().err == ""
