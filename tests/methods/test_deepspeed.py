"""DeepSpeed ZeRO stages 2 and 3 (`lightning_adapt.DeepSpeedStrategy`) on two CPU processes over gloo, through
DeepSpeed's own CPU accelerator (`DS_ACCELERATOR=cpu`), against DDP on the same data: losses, the ICL timeline,
counts, checkpoints of the trainable weights only, export, resume; and what is refused before training."""

import argparse

import lightning as L
import pytest
import torch

from lightning_adapt import CheckpointError, DeepSpeedStrategy, FineTuning, FSDP1Strategy, FSDP2Strategy, StrategyError
from lightning_adapt.core.atomic import MARKER, read_marker
from lightning_adapt.cli import main
from lightning_adapt.distributed.deepspeed_zero import CHECKPOINT_KIND
from lightning_adapt.icl.callback import check_strategy
from lightning_adapt.methods.checkpoints import read_checkpoint
from lightning_adapt.distributed.strategies import check_training_strategy
from lightning_adapt.model.training_checkpoints import newest_checkpoint
from tests.helpers import run_processes
from tests.methods.test_sharding import SCRIPT, assert_same_timeline, assert_same_weights, metrics, weights

STAGES = ("deepspeed_stage_2", "deepspeed_stage_3")
CPU = {"DS_ACCELERATOR": "cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("model, method, stages", [("tiny_biased_checkpoint", "lora", STAGES),
                                                   ("tiny_biased_checkpoint", "full", STAGES[1:])])
def test_deepspeed_stages_train_evaluate_count_checkpoint_and_export_as_ddp_does(tmp_path, script_run, request, model,
                                                                                 method, stages):
    """LoRA and full fine-tuning on the biased odd-shaped model: every logged number as under DDP (stage 3 scores
    ICL and the held-out losses with its partitioned parameters gathered), stage 3 holding half the model per
    process, and a checkpoint folder with the trainable weights only that `export` reads."""
    checkpoint = request.getfixturevalue(model)
    ddp_run = script_run("ddp", checkpoint, method)
    ddp = metrics(ddp_run)
    reference = torch.load(ddp_run / "checkpoints" / "epoch=0-step=6.ckpt", weights_only=True)
    trainable = set(reference["state_dict"])
    assert method == "full" or all("lora_" in name for name in trainable)
    for kind in stages:
        run = script_run(kind, checkpoint, method)
        found = assert_same_timeline(run, ddp)
        held, whole = found["memory/model_bytes"][0], ddp["memory/model_bytes"][0]
        assert held < 0.75 * whole if kind.endswith("3") else held == whole  # stage 3 partitions the parameters

        folder = run / "checkpoints" / "epoch=0-step=6.ckpt"
        assert folder.is_dir() and newest_checkpoint(run) == folder and read_marker(folder) == CHECKPOINT_KIND
        assert not [path for path in folder.parent.iterdir() if path.name.startswith(".")]  # no staging folder left
        saved = read_checkpoint(folder)
        assert_same_weights(saved["state_dict"], reference["state_dict"])
        for states in folder.glob("checkpoint/*model_states.pt"):  # DeepSpeed's own files: no frozen weight
            states = torch.load(states, weights_only=True)
            assert set(states["module"]) == trainable and not states["frozen_param_fragments"]
        assert_same_weights(weights(run / "final" / "lit_model.pth"), weights(ddp_run / "final" / "lit_model.pth"))
        exported = tmp_path / f"export-{kind}"
        main(["export", str(folder), "--out_dir", str(exported)])
        assert_same_weights(weights(exported / "lit_model.pth"), weights(run / "final" / "lit_model.pth"))


@pytest.mark.slow
def test_deepspeed_stage_3_resumes_where_it_stopped(tmp_path, script_run, script_data, tiny_biased_checkpoint):
    """Resumed from its step-3 checkpoint folder, a LoRA run logs the losses and ICL scores of the run that went on
    and ends with the same adapter."""
    straight = script_run("deepspeed_stage_3", tiny_biased_checkpoint, "lora")
    resumed = tmp_path / "resumed"
    step3 = straight / "checkpoints" / "epoch=0-step=3.ckpt"
    run_processes(SCRIPT, ["deepspeed_stage_3", str(tiny_biased_checkpoint), str(script_data), str(resumed), "lora",
                           str(step3)], tmp_path, processes=2, **CPU)
    expected, found = metrics(straight), metrics(resumed)
    assert sorted(found["train/loss"]) == [4, 5, 6]
    for name in ["train/loss", "val/domain_loss", "icl/sent/acc@k2", "icl/gen/exact_match@k1"]:
        steps = [step for step in found[name] if step > 3]
        assert steps and {step: found[name][step] for step in steps} == pytest.approx(
            {step: expected[name][step] for step in steps}, abs=1e-6, rel=0), name
    assert_same_weights(weights(resumed / "final" / "lit_model.pth.lora"), weights(straight / "final" / "lit_model.pth.lora"))


def test_deepspeed_names_and_refusals(tmp_path, tiny_checkpoint, monkeypatch):
    """`--trainer.strategy deepspeed_stage_2|3` are ours; Lightning's other DeepSpeed strategies, offloading and QLoRA
    are refused before training, and so is DeepSpeed on the CPU unless DeepSpeed's CPU accelerator is asked for."""
    from lightning.pytorch.strategies import DeepSpeedStrategy as LightningDeepSpeed
    from lightning.pytorch.strategies import StrategyRegistry

    from lightning_adapt.model.loading import load_config, load_model

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

    theirs, ours, added_to = tmp_path / "theirs.ckpt", tmp_path / "ours.ckpt", tmp_path / "added_to.ckpt"
    for folder in (theirs, ours, added_to):
        (folder / "checkpoint").mkdir(parents=True)
    for folder in (ours, added_to):
        (folder / MARKER).write_text(f'{{"kind": "{CHECKPOINT_KIND}", "files": ["checkpoint"]}}')
    (added_to / "notes.txt").write_text("a user's")
    for folder in (theirs, ours):
        DeepSpeedStrategy().remove_checkpoint(folder)  # ModelCheckpoint's save_top_k removes only what we wrote
    with pytest.warns(UserWarning, match="Kept the pruned checkpoint .*added_to.ckpt.*did not write"):
        DeepSpeedStrategy().remove_checkpoint(added_to)
    assert theirs.is_dir() and not ours.exists() and (added_to / "notes.txt").is_file()

    two = tmp_path / "two.ckpt"
    (two / "checkpoint").mkdir(parents=True)
    (two / "latest").write_text("checkpoint")
    for rank in (0, 1):
        torch.save({"step": torch.tensor(2)}, two / "checkpoint" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
    with pytest.raises(CheckpointError, match="saved by 2 processes.*only on as many \\(this run has 1\\)"):
        DeepSpeedStrategy(stage=3).load_checkpoint(two)
    torch.save(argparse.Namespace(step=2), two / "checkpoint" / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    with pytest.raises(CheckpointError, match="optim_states.pt' as data only \\(it names argparse.Namespace\\)"):
        DeepSpeedStrategy(stage=3).load_checkpoint(two)
    one = tmp_path / "one.ckpt"
    torch.save({"state_dict": {}}, one)
    with pytest.raises(CheckpointError, match="one.ckpt' is a one-file checkpoint: DeepSpeed resumes from the checkpoint "
                                              "folders it writes"):
        DeepSpeedStrategy(stage=3).load_checkpoint(one)
    fsdp1 = FSDP1Strategy()
    fsdp1.connect(FineTuning(tiny_checkpoint, max_seq_length=16))
    for strategy in (FSDP2Strategy(), fsdp1):  # a folder's optimizer state is partitioned by process: never resumed
        with pytest.raises(CheckpointError, match="two.ckpt' is a DeepSpeed checkpoint folder: only DeepSpeed resumes"):
            strategy.load_checkpoint(two)

    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    trainer = L.Trainer(strategy="deepspeed_stage_3", accelerator="cpu", devices=1, max_steps=1, logger=False,
                        default_root_dir=tmp_path, enable_progress_bar=False)
    module = FineTuning(tiny_checkpoint, max_seq_length=16)
    with pytest.raises(StrategyError, match="DeepSpeed needs CUDA GPUs.*fsdp2 .*or ddp; DS_ACCELERATOR=cpu"):
        trainer.fit(module)
    assert module.model is None  # refused before the model was built
