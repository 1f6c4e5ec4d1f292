import csv
from pathlib import Path

import bitsandbytes as bnb
import lightning as L
import pytest
import torch
from litgpt import GPT, Config

from lightning_adapt import ContinualPretraining, FineTuning, Instructions, LoRA, Optimization, Rewarming
from tests.helpers import DDP_CLI_ARGS, finish, launch_cli, quiet_trainer, write_instruction_file, OWN_INSTRUCTIONS

TARGETS = ["query", "value", "mlp"]


def fit(tmp_path, checkpoint, quantize, steps=12, seed=0, val_every=None):
    """Train; with `val_every`, validate every that many steps (else never)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed)
    module = FineTuning(checkpoint, lora=LoRA(r=8, alpha=16, dropout=0.0, targets=TARGETS), quantize=quantize,
                        optimization=Optimization(learning_rate=2e-2, warmup_steps=2), general_val=None)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8)
    validation = dict(val_check_interval=val_every, limit_val_batches=1) if val_every else dict(limit_val_batches=0)
    trainer = quiet_trainer(tmp_path, max_steps=steps, **validation)
    trainer.fit(module, datamodule=data)
    with open(tmp_path / "logs" / "metrics.csv") as fp:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fp) if r.get("train/loss")]
    return module, losses


@pytest.mark.parametrize("quantize", ["nf4", "nf4-dq", "fp4", "fp4-dq", "int8"])
def test_each_quant_type_trains_on_packed_bitsandbytes_layers(tmp_path, tiny_checkpoint, quantize):
    module, losses = fit(tmp_path, tiny_checkpoint, quantize)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    qkv = module.model.transformer.h[0].attn.qkv.linear
    expected = bnb.nn.Linear8bitLt if quantize == "int8" else bnb.nn.Linear4bit
    assert isinstance(qkv, expected)
    weight_bytes = qkv.weight.numel() * qkv.weight.element_size()
    full_bytes = qkv.in_features * qkv.out_features * 4
    assert weight_bytes == full_bytes // (4 if quantize == "int8" else 8)
    assert qkv.weight.dtype == (torch.int8 if quantize == "int8" else torch.uint8)
    assert not qkv.weight.requires_grad
    # embeddings, norms, the output head and the adapters stay in the training dtype
    assert module.model.transformer.wte.weight.dtype == torch.float32
    assert module.model.lm_head.linear.weight.dtype == torch.float32
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_loss_curve_stays_close_to_lora(tmp_path, tiny_checkpoint):
    _, lora = fit(tmp_path / "lora", tiny_checkpoint, None)
    _, qlora = fit(tmp_path / "nf4", tiny_checkpoint, "nf4")
    differences = [abs(a - b) for a, b in zip(lora, qlora)]
    # nf4 rounds each base weight to one of 16 levels per block, and the adapters start from other random
    # draws (the quantized model is built on the meta device): the curves stay within a few tenths of a nat
    assert sum(differences) / len(differences) < 0.1 and max(differences) < 0.3, differences
    assert qlora[-1] < qlora[0] - 0.5


@pytest.mark.parametrize("quantize, tolerance", [("nf4", 1e-4), ("int8", 2e-2)])
def test_merged_export_matches_the_quantized_model_with_adapter(tmp_path, tiny_checkpoint, quantize, tolerance):
    module, _ = fit(tmp_path, tiny_checkpoint, quantize, steps=6)
    final = tmp_path / "final"
    merged = GPT(Config.from_file(final / "model_config.yaml"))
    merged.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True))
    assert all(v.dtype == torch.float32 for v in merged.state_dict().values())
    idx = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(3))
    module.model.eval(), merged.eval()
    with torch.no_grad():
        difference = (merged(idx) - module.model(idx)).abs().max().item()
    # 4-bit layers dequantize exactly; int8 layers also quantize activations, the export does not
    assert difference <= tolerance
    assert (final / "lit_model.pth.lora").is_file()


@pytest.mark.parametrize("quantize", [None, "nf4"])
def test_bf16_true_final_and_the_export_of_a_checkpoint_hold_the_model_that_trained(tmp_path, tiny_biased_checkpoint,
                                                                                  quantize):
    """After bf16-true, `final/` and `export` of the run's .ckpt are the same bf16 weights (the base loaded, and
    quantized, in bf16 as in training, not from the float32 file: that moved nf4 weights by a whole code step)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_adapt.cli import main
    from lightning_adapt.formats.litgpt import merged_state_dict

    L.seed_everything(0)
    module = FineTuning(tiny_biased_checkpoint, lora=LoRA(r=4, targets=TARGETS), quantize=quantize,
                        optimization=Optimization(learning_rate=2e-2, warmup_steps=1), general_val=None)
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0, precision="bf16-true",
                            callbacks=[ModelCheckpoint(every_n_train_steps=3)])
    trainer.fit(module, datamodule=Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4))
    final = torch.load(tmp_path / "final" / "lit_model.pth", weights_only=True)
    assert {tensor.dtype for tensor in final.values()} == {torch.bfloat16}
    trained = merged_state_dict(module.model)
    main(["export", str(tmp_path / "logs" / "checkpoints" / "epoch=0-step=3.ckpt"), "--out_dir", str(tmp_path / "x")])
    exported = torch.load(tmp_path / "x" / "lit_model.pth", weights_only=True)
    assert final.keys() == exported.keys() == trained.keys()
    for name in final:
        assert torch.equal(exported[name], final[name]) and torch.equal(trained[name], final[name]), name


@pytest.mark.parametrize("quantize", ["nf4", "int8"])
def test_qlora_trains_the_same_with_validations_between_steps_on_biased_layers(
    tmp_path, tiny_biased_checkpoint, quantize
):
    """bitsandbytes repacks 4-bit weights for a CPU inference kernel in eval mode; a training step after that
    crashed on layers with biases (and backpropagated through a kernel without autograd otherwise)."""
    _, plain = fit(tmp_path / "plain", tiny_biased_checkpoint, quantize, steps=8)
    module, validated = fit(tmp_path / "validated", tiny_biased_checkpoint, quantize, steps=8, val_every=2)
    assert module.model.transformer.h[0].attn.qkv.linear.bias is not None
    with open(tmp_path / "validated" / "logs" / "metrics.csv") as fp:
        assert sum(1 for r in csv.DictReader(fp) if r.get("val/loss")) >= 4
    assert validated == pytest.approx(plain, abs=1e-6)
    assert validated[-1] < validated[0] - 0.5


def test_qlora_cpt_trains(tmp_path, tiny_checkpoint):
    from lightning_adapt import TextCorpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"doc{i}.txt").write_text(f"Document {i}: the river Vell runs past the town of Wrenmouth. " * 4)
    L.seed_everything(0)
    module = ContinualPretraining(tiny_checkpoint, lora=LoRA(r=8, targets=TARGETS), quantize="nf4",
                                  optimization=Rewarming(learning_rate=2e-2), general_val=None, max_seq_length=64)
    trainer = quiet_trainer(tmp_path, max_steps=8, limit_val_batches=0)
    trainer.fit(module, datamodule=TextCorpus(str(corpus), batch_size=4, val_fraction=0.2))
    assert isinstance(module.model.transformer.h[1].mlp.fc_1.linear, bnb.nn.Linear4bit)
    assert module.train_tokens > 0


def test_bad_quantize_settings_fail_at_construction(tiny_checkpoint):
    with pytest.raises(ValueError, match="quantize='nf4' needs LoRA.*lora=LoRA"):
        FineTuning(tiny_checkpoint, quantize="nf4")
    with pytest.raises(ValueError, match="quantize='nf3' is not supported. Choose one of nf4, nf4-dq, fp4, fp4-dq, int8"):
        FineTuning(tiny_checkpoint, lora=LoRA(), quantize="nf3")


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_nf4(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl")
    config = Path(__file__).parents[2] / "configs" / "finetune" / "lora.yaml"
    args = ["--config", str(config), "--model.checkpoint_dir", str(tiny_checkpoint), "--model.quantize", "nf4",
            "--data.init_args.path", str(data), *OWN_INSTRUCTIONS, "--data.init_args.batch_size", "4",
            "--trainer.max_steps", "4",
            "--trainer.val_check_interval", "2", "--trainer.accelerator", "cpu", *DDP_CLI_ARGS,
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path / "run")]
    finish(launch_cli(["finetune", *args], tmp_path), timeout=600)  # Lightning's launcher starts the second process
    assert (tmp_path / "run" / "final" / "lit_model.pth").is_file()


def test_bitsandbytes_8bit_adamw_as_the_optimizer(tmp_path, tiny_checkpoint):
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=8, targets=TARGETS), quantize="nf4",
                        optimization=Optimization("bitsandbytes.optim.AdamW8bit", learning_rate=2e-2, warmup_steps=1))
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8)
    trainer = quiet_trainer(tmp_path, max_steps=8, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert isinstance(trainer.optimizers[0], bnb.optim.AdamW8bit)
    with open(tmp_path / "logs" / "metrics.csv") as fp:
        losses = [float(r["train/loss"]) for r in csv.DictReader(fp) if r.get("train/loss")]
    assert losses[-1] < losses[0] - 0.3, losses
