"""`compile: true`: blocks compiled for training steps, the same losses as eager, a clear error or an asked-for
fallback when torch.compile cannot run, and the strategies it does not apply to refused before training."""

import lightning as L
import pytest
import torch

from lightning_adapt import DeepSpeedStrategy, FineTuning, FSDP1Strategy, Instructions, LoRA, Optimization
from lightning_adapt.distributed.strategies import StrategyError, check_training_strategy
from lightning_adapt.model import compiled
from lightning_adapt.model.compiled import CompileError, CompileFallbackWarning
from tests.helpers import quiet_trainer, write_instruction_file


def train_losses(tmp_path, checkpoint, steps=3, **module_kwargs):
    """Per-step training losses of a short LoRA run (validation included, which runs eagerly)."""
    L.seed_everything(0)
    module = FineTuning(checkpoint, lora=LoRA(r=4, dropout=0.0), general_val=None, export=False,
                        optimization=Optimization(learning_rate=1e-2, warmup_steps=1), **module_kwargs)
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl", n=24)), batch_size=4)
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = quiet_trainer(tmp_path, max_steps=steps, val_check_interval=2, limit_val_batches=1, logger=False,
                            callbacks=[Losses()])
    trainer.fit(module, datamodule=data)
    return losses, module


@pytest.mark.slow
def test_compiled_training_matches_eager_and_keeps_parameter_names(tmp_path, tiny_checkpoint):
    eager, eager_module = train_losses(tmp_path / "eager", tiny_checkpoint)
    compiled_losses, module = train_losses(tmp_path / "compiled", tiny_checkpoint, compile=True)
    assert compiled_losses == pytest.approx(eager, abs=1e-5)
    assert list(module.model.state_dict()) == list(eager_module.model.state_dict())


def failing_compile(function, **kwargs):
    def run(*args, **kwargs):
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler found")

    return run


def test_a_failing_compile_stops_with_the_reason_unless_a_fallback_was_asked_for(tmp_path, tiny_checkpoint,
                                                                                 monkeypatch):
    monkeypatch.setattr(compiled.torch, "compile", failing_compile)
    with pytest.raises(CompileError, match="compile: true, but torch.compile failed.*compile_fallback: true"):
        train_losses(tmp_path / "strict", tiny_checkpoint, compile=True)
    eager, _ = train_losses(tmp_path / "eager", tiny_checkpoint)
    with pytest.warns(CompileFallbackWarning, match="training uncompiled"):
        fallback, _ = train_losses(tmp_path / "fallback", tiny_checkpoint, compile=True, compile_fallback=True)
    assert fallback == pytest.approx(eager, abs=1e-6)


def test_compile_where_torch_compile_is_unavailable(tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(compiled.torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(CompileError, match="not supported on this Python or platform"):
        train_losses(tmp_path / "strict", tiny_checkpoint, steps=1, compile=True)
    with pytest.warns(CompileFallbackWarning):
        train_losses(tmp_path / "fallback", tiny_checkpoint, steps=1, compile=True, compile_fallback=True)


@pytest.mark.parametrize("strategy", [FSDP1Strategy(), DeepSpeedStrategy(stage=2)], ids=["fsdp1", "deepspeed"])
def test_compile_is_refused_under_strategies_that_wrap_the_blocks(strategy):
    with pytest.raises(StrategyError, match="compile: true is not supported under"):
        check_training_strategy(strategy, compile=True)
