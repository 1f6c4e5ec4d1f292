"""DeepSpeed ZeRO stages 2 and 3 (`lightning_adapt.DeepSpeedStrategy`) on two CPU processes over gloo, through
DeepSpeed's own CPU accelerator (`DS_ACCELERATOR=cpu`), against DDP on the same data: losses, the ICL timeline,
counts, checkpoints of the trainable weights only, export, resume; and what is refused before training."""

from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_adapt import DeepSpeedStrategy, FineTuning, StrategyError
from lightning_adapt.atomic import MARKER, read_marker
from lightning_adapt.cli import main
from lightning_adapt.deepspeed_zero import CHECKPOINT_KIND
from lightning_adapt.icl.callback import check_strategy
from lightning_adapt.methods.checkpoints import newest_checkpoint, read_checkpoint
from lightning_adapt.sharding import check_training_strategy
from tests.helpers import finish, launch_cli, run_processes, write_instruction_file
from tests.methods.test_sharding import (SCRIPT, assert_same_timeline, assert_same_weights, data,  # noqa: F401
                                        fsdp2_args, metrics, weights)

STAGES = ("deepspeed_stage_2", "deepspeed_stage_3")
CPU = {"DS_ACCELERATOR": "cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("model, method", [("tiny_biased_checkpoint", "lora"), ("tiny_checkpoint", "full")])
def test_deepspeed_stages_train_evaluate_count_checkpoint_and_export_as_ddp_does(tmp_path, data, request, model, method):
    """LoRA on the biased odd-shaped model and full fine-tuning on the llama-style one: every logged number as under
    DDP (stage 3 scores ICL and the held-out losses with its partitioned parameters gathered), stage 3 holding half
    the model per process, and a checkpoint folder with the trainable weights only that `export` reads."""
    checkpoint = request.getfixturevalue(model)
    runs = {kind: tmp_path / kind for kind in ("ddp", *STAGES)}
    for kind, out in runs.items():
        run_processes(SCRIPT, [kind, str(checkpoint), str(data), str(out), method], tmp_path, processes=2, **CPU)
    ddp = metrics(runs["ddp"])
    reference = torch.load(runs["ddp"] / "checkpoints" / "epoch=0-step=6.ckpt", weights_only=True)
    trainable = set(reference["state_dict"])
    assert method == "full" or all("lora_" in name for name in trainable)
    for kind in STAGES:
        found = assert_same_timeline(runs[kind], ddp)
        held, whole = found["memory/model_bytes"][0], ddp["memory/model_bytes"][0]
        assert held < 0.75 * whole if kind.endswith("3") else held == whole  # stage 3 partitions the parameters

        folder = runs[kind] / "checkpoints" / "epoch=0-step=6.ckpt"
        assert folder.is_dir() and newest_checkpoint(runs[kind]) == folder and read_marker(folder) == CHECKPOINT_KIND
        assert not [path for path in folder.parent.iterdir() if path.name.startswith(".")]  # no staging folder left
        saved = read_checkpoint(folder)
        assert_same_weights(saved["state_dict"], reference["state_dict"])
        for states in folder.glob("checkpoint/*model_states.pt"):  # DeepSpeed's own files: no frozen weight
            states = torch.load(states, weights_only=True)
            assert set(states["module"]) == trainable and not states["frozen_param_fragments"]
        assert_same_weights(weights(runs[kind] / "final" / "lit_model.pth"), weights(runs["ddp"] / "final" / "lit_model.pth"))
        exported = tmp_path / f"export-{kind}"
        main(["export", str(folder), "--out_dir", str(exported)])
        assert_same_weights(weights(exported / "lit_model.pth"), weights(runs[kind] / "final" / "lit_model.pth"))


@pytest.mark.slow
def test_deepspeed_stage_3_resumes_where_it_stopped(tmp_path, tiny_checkpoint):
    """From the CLI: a run resumed at step 2 from its checkpoint folder logs the losses of the run that went on,
    and ends with the same adapter."""
    data = write_instruction_file(tmp_path / "train.jsonl")

    def args(root: Path) -> list[str]:
        found = fsdp2_args(tiny_checkpoint, data, root, strategy="lightning_adapt.DeepSpeedStrategy")
        return [*found, "--trainer.strategy.stage", "3"]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    finish(launch_cli(args(straight), tmp_path, processes=2, **CPU))
    step2 = next(straight.rglob("*step=2.ckpt"))
    finish(launch_cli([*args(resumed), "--ckpt_path", str(step2)], tmp_path, processes=2, **CPU))
    expected = metrics(next(straight.rglob("metrics.csv")).parent)["train/loss"]
    losses = metrics(next(resumed.rglob("metrics.csv")).parent)["train/loss"]
    assert sorted(losses) == [3, 4] and losses == pytest.approx({k: expected[k] for k in (3, 4)}, abs=1e-6, rel=0)
    assert_same_weights(weights(resumed / "final" / "lit_model.pth.lora"), weights(straight / "final" / "lit_model.pth.lora"))


def test_deepspeed_names_and_refusals(tmp_path, tiny_checkpoint, monkeypatch):
    """`--trainer.strategy deepspeed_stage_2|3` are ours; Lightning's other DeepSpeed strategies, offloading and QLoRA
    are refused before training, and so is DeepSpeed on the CPU unless DeepSpeed's CPU accelerator is asked for."""
    from lightning.pytorch.strategies import DeepSpeedStrategy as LightningDeepSpeed
    from lightning.pytorch.strategies import StrategyRegistry

    from lightning_adapt.model import load_config, load_model

    for stage in (2, 3):
        entry = StrategyRegistry[f"deepspeed_stage_{stage}"]
        assert entry["strategy"] is DeepSpeedStrategy and entry["init_params"] == {"stage": stage}
        check_training_strategy(DeepSpeedStrategy(stage=stage))
    assert DeepSpeedStrategy().exclude_frozen_parameters
    with pytest.raises(StrategyError, match="stage 1 is not supported: use stage 2 or 3"):
        DeepSpeedStrategy(stage=1)
    with pytest.raises(StrategyError, match="\\(ZeRO stage 3, offloading\\) is not supported"):
        check_training_strategy(DeepSpeedStrategy(stage=3, offload_optimizer=True))
    with pytest.raises(StrategyError, match="\\(ZeRO stage 3\\) is not supported: use --trainer.strategy deepspeed_stage_2"):
        check_training_strategy(LightningDeepSpeed(stage=3))
    with pytest.raises(StrategyError, match="QLoRA \\(quantize=nf4\\) does not train under DeepSpeed.*fsdp2 or fsdp"):
        check_training_strategy(DeepSpeedStrategy(stage=2), "nf4")

    model = load_model(tiny_checkpoint, load_config(tiny_checkpoint))
    check_strategy(DeepSpeedStrategy(stage=3), model)
    with pytest.raises(NotImplementedError, match="does not support DeepSpeedStrategy yet"):
        check_strategy(LightningDeepSpeed(stage=3), model)

    theirs, ours = tmp_path / "theirs.ckpt", tmp_path / "ours.ckpt"
    for folder in (theirs, ours):
        (folder / "checkpoint").mkdir(parents=True)
    (ours / MARKER).write_text(f'{{"kind": "{CHECKPOINT_KIND}"}}')
    for folder in (theirs, ours):
        DeepSpeedStrategy().remove_checkpoint(folder)  # ModelCheckpoint's save_top_k removes only what we wrote
    assert theirs.is_dir() and not ours.exists()

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    trainer = L.Trainer(strategy="deepspeed_stage_3", accelerator="cpu", devices=1, max_steps=1, logger=False,
                        default_root_dir=tmp_path, enable_progress_bar=False)
    module = FineTuning(tiny_checkpoint, max_seq_length=16)
    with pytest.raises(StrategyError, match="DeepSpeed needs CUDA GPUs.*fsdp2 .*or ddp; DS_ACCELERATOR=cpu"):
        trainer.fit(module)
    assert module.model is None  # refused before the model was built
