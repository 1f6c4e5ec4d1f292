import csv

import lightning as L
import pytest
import torch
from litgpt import GPT, Config

from lightning_adapt import Accounting, FineTuning, Instructions, LoRA, NoTargetTokensError, Optimization
from tests.helpers import quiet_trainer, write_instruction_file


def base_weights(checkpoint_dir):
    return torch.load(checkpoint_dir / "lit_model.pth", weights_only=True)


def fit(tmp_path, checkpoint_dir, lora, steps=30, lr=1e-2, callbacks=(), **data_kwargs):
    L.seed_everything(0)
    optimization = Optimization(learning_rate=lr, warmup_steps=2, min_lr=lr / 10)
    module = FineTuning(checkpoint_dir, lora=lora, optimization=optimization)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8, **data_kwargs)
    trainer = quiet_trainer(tmp_path, max_steps=steps, val_check_interval=10, callbacks=list(callbacks))
    trainer.fit(module, datamodule=data)
    return module, trainer


def logged(tmp_path, key):
    with open(tmp_path / "logs" / "metrics.csv") as fp:
        return [float(row[key]) for row in csv.DictReader(fp) if row.get(key)]


def test_lora_lowers_loss_and_leaves_base_weights_untouched(tmp_path, tiny_checkpoint):
    module, _ = fit(tmp_path, tiny_checkpoint, LoRA(r=8, alpha=16, dropout=0.0, targets=["query", "value", "mlp", "head"]), lr=3e-2)
    losses = logged(tmp_path, "train/loss")
    assert len(losses) == 30
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 1.5, (first, last)

    state = module.model.state_dict()
    for key, value in base_weights(tiny_checkpoint).items():
        live = state.get(key, state.get(key.replace("weight", "linear.weight")))
        assert torch.equal(live, value), key
    lora_b = [v for k, v in state.items() if k.endswith("lora_B")]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_logs_tokens_examples_val_and_parameter_counts(tmp_path, tiny_checkpoint):
    fit(tmp_path, tiny_checkpoint, LoRA(r=4), steps=10, callbacks=[Accounting()])  # Accounting logs the counters
    tokens = logged(tmp_path, "train/tokens")
    examples = logged(tmp_path, "train/examples")
    # 48 rows, 5 held out for validation: epoch 1 is five batches of 8 and one of 3 (after none at step 0), in an
    # order of micro-batches that length grouping shuffles
    steps = [b - a for a, b in zip(examples, examples[1:])]
    assert examples[0] == 0.0 and sorted(steps[:6]) == [3, 8, 8, 8, 8, 8] and examples[6] == 43.0
    assert len(examples) == 11 and set(steps) <= {3.0, 8.0}
    assert all(b > a for a, b in zip(tokens, tokens[1:]))
    val = logged(tmp_path, "val/loss")
    ppl = logged(tmp_path, "val/ppl")
    assert len(val) == 1 and ppl[0] == pytest.approx(torch.tensor(val[0]).exp().item(), rel=1e-4)
    trainable, total = logged(tmp_path, "params/trainable"), logged(tmp_path, "params/total")
    assert 0 < trainable[0] < total[0]


def test_full_finetuning_changes_base_weights(tmp_path, tiny_checkpoint):
    module, _ = fit(tmp_path, tiny_checkpoint, None, steps=5, lr=1e-3)
    before = base_weights(tiny_checkpoint)
    after = module.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "transformer.h.0.attn.qkv.weight" in changed and "lm_head.weight" in changed


def test_checkpoint_holds_trainable_weights_and_optimizer_state_only(tmp_path, tiny_checkpoint):
    _, trainer = fit(tmp_path, tiny_checkpoint, LoRA(r=4, targets=["query", "value"]), steps=4)
    ckpt_path = tmp_path / "manual.ckpt"
    trainer.save_checkpoint(ckpt_path)
    checkpoint = torch.load(ckpt_path, weights_only=True)
    assert checkpoint["state_dict"] and all("lora_" in key for key in checkpoint["state_dict"])
    assert checkpoint["optimizer_states"]
    assert checkpoint["lightning_adapt_counters"]["train_examples"] == trainer.lightning_module.train_examples
    assert checkpoint["lightning_adapt_counters"]["train_examples"] in (27, 32)  # 4 batches of 8, or 3 and the 3 left


def test_merged_export_matches_lora_logits_and_loads_in_litgpt(tmp_path, tiny_checkpoint):
    module, _ = fit(tmp_path, tiny_checkpoint, LoRA(r=8, targets=["query", "key", "value", "projection", "mlp", "head"]), steps=10)
    final = tmp_path / "final"
    assert {"lit_model.pth", "lit_model.pth.lora", "model_config.yaml", "tokenizer.json", "prompt_style.yaml"} <= {
        p.name for p in final.iterdir()
    }
    idx = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    module.model.eval()
    with torch.no_grad():
        expected = module.model(idx)
    merged = GPT(Config.from_file(final / "model_config.yaml"))
    merged.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True))
    merged.eval()
    with torch.no_grad():
        actual = merged(idx)
    assert (actual - expected).abs().max().item() <= 1e-4

    from litgpt.utils import check_valid_checkpoint_dir

    check_valid_checkpoint_dir(final)
    adapter = torch.load(final / "lit_model.pth.lora", weights_only=True)["model"]
    assert adapter and all("lora_" in key for key in adapter)


def test_optimizer_schedule_and_clipping_are_constructor_arguments(tmp_path, tiny_checkpoint):
    L.seed_everything(0)
    module = FineTuning(
        tiny_checkpoint, lora=LoRA(r=4),
        optimization=Optimization("SGD", learning_rate=0.1, warmup_steps=4, min_lr=0.01, gradient_clip_val=1e-6),
    )
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    lrs = []

    class RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = quiet_trainer(tmp_path, max_steps=10, callbacks=[RecordLR()], limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[-1] == pytest.approx(0.01)
    lora_a = [p for n, p in module.model.named_parameters() if n.endswith("lora_A")]
    # with the gradient norm clipped to 1e-6, ten SGD steps barely move the adapters
    assert all((p.grad is None or p.grad.norm() <= 1e-5) for p in lora_a)


def test_all_masked_batch_raises_naming_examples(tmp_path, tiny_checkpoint):
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4))
    module.configure_model()
    batch = {"input_ids": torch.ones(2, 6, dtype=torch.long), "labels": torch.full((2, 6), -100), "index": torch.tensor([3, 7])}
    with pytest.raises(NoTargetTokensError, match=r"batch 5 \(examples \[3, 7\]\).*max_seq_length"):
        module.training_step(batch, 5)
