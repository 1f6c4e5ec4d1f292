"""The LM head on labelled positions only (`labelled_logits`, used by `loss_and_count`): the same loss and gradients
as full logits with LitGPT's `chunked_cross_entropy`, for full fine-tuning, LoRA (on the head too) and QLoRA."""

from pathlib import Path

import pytest
import torch
from litgpt.utils import chunked_cross_entropy

from lightning_adapt import FineTuning, LoRA
from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.distributed.sharding import checkpoint_activations
from lightning_adapt.methods.base import NoTargetTokensError
from lightning_adapt.model.labelled_logits import labelled_logits
from lightning_adapt.testing import make_tiny_checkpoint, tiny_biased_config, tiny_config

TOLERANCE = dict(atol=1e-5, rtol=1e-5)
LORA_EVERYWHERE = LoRA(r=4, alpha=8, dropout=0.0, targets=["query", "key", "value", "projection", "mlp", "head"])


@pytest.fixture(scope="module")
def head_bias_checkpoint(tmp_path_factory) -> Path:
    """GPT-NeoX-style odd shapes with a bias on the LM head too."""
    config = tiny_biased_config("tiny-neox-head-bias")
    config.lm_head_bias = True
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "head-bias", config=config)


@pytest.fixture(scope="module")
def softcapping_checkpoint(tmp_path_factory) -> Path:
    """Final logits softcapped (Gemma 2 style), at a threshold low enough to change them."""
    config = tiny_config("tiny-softcap", final_logit_softcapping=0.5)
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "softcap", config=config)


def ragged_batch(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """3 rows of 14 tokens (odd), labelled on 5, 1 and 0 positions (targets are `labels[:, 1:]`)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (3, 14), generator=generator)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, 9:] = input_ids[0, 9:]
    labels[1, 6] = input_ids[1, 6]
    return {"input_ids": input_ids, "labels": labels}


def module(checkpoint: Path, lora: LoRA | None = None, quantize: str | None = None,
           activation_checkpointing: bool = False) -> FineTuning:
    """A module with its model built, LoRA's B matrices random (they start at zero, which would zero A's gradients)."""
    torch.manual_seed(0)
    result = FineTuning(checkpoint, lora=lora, quantize=quantize, general_val=None, export=False,
                        activation_checkpointing=activation_checkpointing)
    result.configure_model()
    with torch.no_grad():
        for name, parameter in result.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    return result


def full_logits_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss as computed before: logits at every position, cross-entropy ignoring the masked ones."""
    logits = model(batch["input_ids"][:, :-1])
    return chunked_cross_entropy(logits, batch["labels"][:, 1:], chunk_size=0, ignore_index=IGNORE_INDEX)


def loss_and_gradients(module: FineTuning, loss_fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    gradients = {n: p.grad.clone() for n, p in module.model.named_parameters() if p.requires_grad}
    assert gradients and all(g is not None for g in gradients.values())
    return loss.detach(), gradients


def assert_same_as_full_logits(module: FineTuning, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    reference, reference_gradients = loss_and_gradients(module, lambda: full_logits_loss(module.model, batch))
    loss, gradients = loss_and_gradients(module, lambda: module.loss_and_count(batch, 0)[0])
    torch.testing.assert_close(loss, reference, **TOLERANCE)
    assert gradients.keys() == reference_gradients.keys()
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, reference_gradients[name], **TOLERANCE, msg=name)
    assert not module.model.lm_head._forward_pre_hooks  # the hook is gone after the forward
    return gradients


@pytest.mark.parametrize("checkpoint_name", ["tiny_checkpoint", "tiny_biased_checkpoint", "head_bias_checkpoint",
                                             "softcapping_checkpoint"])
@pytest.mark.parametrize("lora", [None, LORA_EVERYWHERE], ids=["full", "lora"])
def test_loss_and_gradients_equal_full_logits(request, checkpoint_name, lora):
    checkpoint = request.getfixturevalue(checkpoint_name)
    trained = module(checkpoint, lora)
    gradients = assert_same_as_full_logits(trained, ragged_batch(trained.config.padded_vocab_size))
    if lora is not None:
        assert any("lm_head.lora_A" in n for n in gradients) and any("lora_B" in n for n in gradients)
    else:
        assert "lm_head.weight" in gradients


def test_qlora_nf4_lora_gradients_equal_full_logits(tiny_checkpoint):
    trained = module(tiny_checkpoint, LORA_EVERYWHERE, quantize="nf4")
    gradients = assert_same_as_full_logits(trained, ragged_batch(trained.config.padded_vocab_size, seed=1))
    assert all("lora_" in n for n in gradients)


def test_with_activation_checkpointing(tiny_biased_checkpoint):
    trained = module(tiny_biased_checkpoint, LORA_EVERYWHERE, activation_checkpointing=True)
    assert_same_as_full_logits(trained, ragged_batch(trained.config.padded_vocab_size, seed=2))


def test_labelled_rows_in_order_and_every_position_without_a_gather(tiny_checkpoint):
    model = module(tiny_checkpoint).model
    batch = ragged_batch(model.config.padded_vocab_size)
    input_ids, targets = batch["input_ids"][:, :-1], batch["labels"][:, 1:]
    with torch.no_grad():
        full = model(input_ids)
        logits, picked = labelled_logits(model, input_ids, targets, IGNORE_INDEX)
        labelled = targets != IGNORE_INDEX
        assert logits.shape == (6, model.config.padded_vocab_size) and picked.tolist() == targets[labelled].tolist()
        torch.testing.assert_close(logits, full[labelled], **TOLERANCE)
        every, every_target = labelled_logits(model, input_ids, input_ids, IGNORE_INDEX)  # CPT: all labelled
    assert torch.equal(every, full.reshape(-1, full.size(-1))) and torch.equal(every_target, input_ids.reshape(-1))


def test_counts_and_a_batch_without_targets(tiny_checkpoint):
    trained = module(tiny_checkpoint, LORA_EVERYWHERE)
    batch = ragged_batch(trained.config.padded_vocab_size)
    assert int(trained.loss_and_count(batch, 0)[1]) == 6
    batch["labels"][:] = IGNORE_INDEX
    with pytest.raises(NoTargetTokensError, match="no target token"):
        trained.loss_and_count(batch, 3)
