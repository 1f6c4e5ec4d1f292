"""Packing: an example's loss and gradients are the same whether it shares a row with other examples or is alone."""

from dataclasses import asdict

import litgpt.lora
import pytest
import torch

from lightning_adapt import LoRA
from lightning_adapt.data import IGNORE_INDEX
from lightning_adapt.data.batching import packed_collate
from lightning_adapt.model.packed_attention import NotPackableError, check_packable, packed_attention
from lightning_adapt.techniques.lora import LORA_TARGETS
from lightning_adapt.testing import tiny_biased_config, tiny_config

CONFIGS = {"llama": tiny_config(), "neox": tiny_biased_config(),
           "softcapping": tiny_config(attention_logit_softcapping=5.0)}


def lora_model(config) -> litgpt.lora.GPT:
    config = litgpt.lora.Config(**asdict(config), **LoRA(r=4, dropout=0.0, targets=list(LORA_TARGETS)).config_kwargs())
    torch.manual_seed(0)
    model = litgpt.lora.GPT(config)
    model.apply(model._init_weights)
    litgpt.lora.mark_only_lora_as_trainable(model)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # LoRA starts B at zero; nonzero, every LoRA parameter has a gradient
            torch.nn.init.normal_(parameter, std=0.02)
    return model


def example(index: int, length: int, prompt: int) -> dict:
    ids = torch.randint(1, 300, (length,), generator=torch.Generator().manual_seed(index))
    labels = ids.clone()
    labels[:prompt] = IGNORE_INDEX
    return {"input_ids": ids, "labels": labels, "index": index,
            "token_counts": {"raw": length, "raw_plus_prompt_template": length}}


def loss_and_grads(model, logits: torch.Tensor, targets: torch.Tensor, where: torch.Tensor):
    loss = torch.nn.functional.cross_entropy(logits[where].float(), targets[where])
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], retain_graph=True)
    return loss.detach(), grads


def alone(model, item: dict):
    logits = model(item["input_ids"][None, :-1])
    targets = item["labels"][None, 1:]
    return loss_and_grads(model, logits, targets, targets != IGNORE_INDEX)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_an_example_packed_beside_others_has_the_loss_and_gradients_it_has_alone(name):
    model = lora_model(CONFIGS[name])
    items = [example(0, 9, 4), example(1, 6, 2), example(2, 11, 0), example(3, 5, 3)]
    batch = packed_collate([[items[0], items[1]], [items[2], items[3]]], length=24)  # rows end in padding
    inputs, targets = batch["input_ids"][:, :-1], batch["labels"][:, 1:]
    with packed_attention(model, batch["positions"][:, :-1], batch["segments"][:, :-1]):
        logits = model(inputs)
    for row, segment, item in [(0, 1, items[0]), (0, 2, items[1]), (1, 1, items[2]), (1, 2, items[3])]:
        where = torch.zeros_like(targets, dtype=torch.bool)
        where[row] = (batch["segments"][row, 1:] == segment) & (targets[row] != IGNORE_INDEX)
        packed_loss, packed_grads = loss_and_grads(model, logits, targets, where)
        single_loss, single_grads = alone(model, item)
        assert packed_loss == pytest.approx(single_loss.item(), abs=1e-5)
        for packed_grad, single_grad in zip(packed_grads, single_grads):
            torch.testing.assert_close(packed_grad, single_grad, atol=1e-5, rtol=1e-4)
    assert not model.transformer.h[0]._forward_pre_hooks  # the context removed its hooks


def test_without_packed_attention_the_second_example_would_see_the_first():
    """The check above has teeth: the same packed row run as one sequence gives the second example another loss."""
    model = lora_model(tiny_config())
    items = [example(0, 9, 4), example(1, 6, 2)]
    batch = packed_collate([items], length=16)
    targets = batch["labels"][:, 1:]
    where = (batch["segments"][:, 1:] == 2) & (targets != IGNORE_INDEX)
    packed_loss, _ = loss_and_grads(model, model(batch["input_ids"][:, :-1]), targets, where)
    assert abs(packed_loss - alone(model, items[1])[0]) > 1e-3


def test_models_packing_cannot_serve_are_refused():
    with pytest.raises(NotPackableError, match="sliding-window"):
        check_packable(tiny_config(sliding_window_size=4, sliding_window_indices=[1, 0]))
    with pytest.raises(NotPackableError, match="rope_indices"):
        check_packable(tiny_config(rope_indices=[0, 1]))
    model = lora_model(tiny_config())
    positions = torch.zeros(1, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"slice them as the input"), packed_attention(model, positions, positions):
        model(torch.zeros(1, 9, dtype=torch.int64))
