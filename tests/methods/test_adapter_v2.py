"""Adapter V2, the second adaptation technique, through everything LoRA goes through: training with the real Trainer,
the ICL callback, `.ckpt` checkpoints and exact resume, the LitGPT export (and the formats it refuses), QLoRA-style
quantization and the FLOPs count, on the tiny llama-style checkpoint and the one with biases and odd shapes."""

import csv
from pathlib import Path

import lightning as L
import litgpt.adapter_v2
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from litgpt.adapter_v2 import adapter_filter
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lightning_adapt import (
    AdapterV2,
    CheckpointError,
    ContinualPretraining,
    FineTuning,
    ICLEvaluation,
    ICLTask,
    Instructions,
    LoRA,
    Optimization,
    TechniqueError,
    evaluate_checkpoint,
    export_model,
)
from lightning_adapt.cli import main
from lightning_adapt.methods.checkpoints import load_module
from lightning_adapt.model.loading import load_config, load_model
from lightning_adapt.record.flops import forward_flops, training_flops
from lightning_adapt.techniques import TECHNIQUES, chosen_technique, technique_of
from tests.helpers import COLOURS, quiet_trainer, write_instruction_file
from tests.methods.test_resume import common, complete_checkpoints, finetune_args, losses

ADAPTER = AdapterV2(adapter_prompt_length=4, adapter_start_layer=1)
"""The prompt in the second of the tiny models' two layers (LitGPT's default start layer 2 would leave none)."""
CHECKPOINTS = ["tiny_checkpoint", "tiny_biased_checkpoint"]


def fit(tmp_path: Path, checkpoint: Path, steps: int = 20, callbacks=(), **settings) -> tuple[FineTuning, L.Trainer]:
    L.seed_everything(0)
    settings = {"optimization": Optimization(learning_rate=2e-2, warmup_steps=2, min_lr=2e-3), "general_val": None,
                **settings}
    module = FineTuning(checkpoint, technique=ADAPTER, **settings)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8)
    trainer = quiet_trainer(tmp_path, max_steps=steps, val_check_interval=5, limit_val_batches=1,
                            callbacks=list(callbacks))
    trainer.fit(module, datamodule=data)
    return module, trainer


def logged(folder: Path, key: str) -> dict[int, float]:
    with open(folder / "logs" / "metrics.csv") as fp:
        return {int(float(row["step"])): float(row[key]) for row in csv.DictReader(fp) if row.get(key)}


def base_weight(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """A base checkpoint's weight in the Adapter V2 model (its linear layers sit inside `AdapterV2Linear.linear`)."""
    return state.get(key, state.get(key.replace(".weight", ".linear.weight").replace(".bias", ".linear.bias")))


class PromptAtStart(L.Callback):
    """Keeps the learned prompts as training starts (after the step-0 evaluation without gradients)."""

    def on_train_start(self, trainer, pl_module):
        self.prompts = {n: p.detach().clone() for n, p in pl_module.model.named_parameters() if "adapter_wte" in n}


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_adapter_v2_lowers_the_loss_and_trains_only_its_parameters(tmp_path, checkpoint, request):
    checkpoint = request.getfixturevalue(checkpoint)
    start = PromptAtStart()
    module, _ = fit(tmp_path, checkpoint, callbacks=[start])
    losses = list(logged(tmp_path, "train/loss").values())
    assert len(losses) == 20 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses

    trainable = {name for name, p in module.model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in module.model.named_parameters() if adapter_filter(name, p)}
    assert {"transformer.h.1.attn.adapter_wte.weight", "transformer.h.0.norm_1.weight", "lm_head.adapter_scale"} \
        <= trainable
    assert not any("adapter_wte" in name for name in trainable if name.startswith("transformer.h.0."))
    state = module.model.state_dict()
    for key, value in torch.load(checkpoint / "lit_model.pth", weights_only=True).items():
        if not adapter_filter(key, value):
            assert torch.equal(base_weight(state, key), value), key
    # the prompt trains although LitGPT keeps its keys and values across forward passes (Lightning-AI/litgpt#1287)
    assert start.prompts and all(not torch.equal(state[name], before) for name, before in start.prompts.items())
    assert state["transformer.h.1.attn.gating_factor"].abs().sum() > 0


class ScoresAtStart(L.Callback):
    """Keeps the log-likelihoods of the ICL callback's step-0 evaluation (listed after it, so it runs after it)."""

    def __init__(self, icl: ICLEvaluation) -> None:
        self.icl = icl

    def on_train_start(self, trainer, pl_module):
        self.scores = loglikelihoods(self.icl.results.predictions)


def loglikelihoods(predictions: list[dict]) -> list[float]:
    return [score for record in predictions for score in record["loglikelihoods"]]


def test_the_icl_callback_scores_the_adapter_v2_model_as_its_export_scores(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "queries.jsonl", n=24)
    task = ICLTask(name="colour", queries=str(data), template="{instruction}", target="output", choices=COLOURS,
                   max_queries=8)
    icl = ICLEvaluation(task, log_predictions=False)
    start = ScoresAtStart(icl)
    fit(tmp_path, tiny_checkpoint, steps=10, callbacks=[icl, start])
    assert list(logged(tmp_path, "icl/colour/acc@k0")) == [0, 5, 10]
    trained = loglikelihoods(icl.results.predictions)
    assert len(trained) == 8 * len(COLOURS) and trained != pytest.approx(start.scores, abs=1e-3)
    exported = evaluate_checkpoint(tmp_path / "final", [task], progress=False)
    assert loglikelihoods(exported.predictions) == pytest.approx(trained, abs=1e-4)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_the_litgpt_export_loads_in_litgpt_whole_or_as_base_plus_adapter(tmp_path, checkpoint, request):
    checkpoint = request.getfixturevalue(checkpoint)
    module, _ = fit(tmp_path, checkpoint, steps=6)
    final = tmp_path / "final"
    assert {"lit_model.pth", "lit_model.pth.adapter_v2", "model_config.yaml", "hyperparameters.yaml",
            "prompt_style.yaml", "tokenizer.json"} <= {path.name for path in final.iterdir()}
    assert not (final / "lit_model.pth.lora").exists()
    hyperparameters = yaml.safe_load((final / "hyperparameters.yaml").read_text())
    assert hyperparameters == {"adapter_prompt_length": 4, "adapter_start_layer": 1,
                               "checkpoint_dir": str(checkpoint.resolve())}
    idx = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    module.model.eval()
    with torch.no_grad():
        expected = module.model(idx)

    config = litgpt.adapter_v2.Config.from_file(final / "model_config.yaml")
    assert (config.adapter_prompt_length, config.adapter_start_layer) == (4, 1)
    whole = litgpt.adapter_v2.GPT(config)
    whole.load_state_dict(torch.load(final / "lit_model.pth", weights_only=True))
    # as `litgpt generate_adapter_v2` loads it: the base checkpoint's weights, updated with the adapter alone
    base_plus_adapter = litgpt.adapter_v2.GPT(config)
    weights = torch.load(checkpoint / "lit_model.pth", weights_only=True)
    adapter = torch.load(final / "lit_model.pth.adapter_v2", weights_only=True)["model"]
    assert adapter and all(adapter_filter(key, value) for key, value in adapter.items())
    base_plus_adapter.load_state_dict({**weights, **adapter})
    ours = load_model(final, load_config(final))
    for model in (whole, base_plus_adapter, ours):
        model.eval()
        with torch.no_grad():
            assert (model(idx) - expected).abs().max().item() <= 1e-5
    assert isinstance(ours, litgpt.adapter_v2.GPT)


@pytest.mark.parametrize("format", ["hf", "peft", "gguf"])
def test_a_format_without_an_adapter_v2_form_is_refused_before_training(tmp_path, tiny_checkpoint, format):
    with pytest.raises(TechniqueError, match=rf"cannot be written in the {format} format: .*does not merge into base "
                                             r"weights.*Export the litgpt format.*or train with lora"):
        FineTuning(tiny_checkpoint, technique=ADAPTER, export={"formats": ["litgpt", format]})


def test_exporting_an_adapter_v2_run_to_hf_is_refused_before_any_weight_is_read(tmp_path, tiny_checkpoint):
    fit(tmp_path, tiny_checkpoint, steps=2, callbacks=[ModelCheckpoint(every_n_train_steps=2)])
    (ckpt,) = (tmp_path / "logs" / "checkpoints").glob("*.ckpt")
    for source in (ckpt, tmp_path / "final"):
        with pytest.raises(TechniqueError, match="cannot be written in the hf format"):
            export_model(source, tmp_path / "hf", "hf")
        assert not (tmp_path / "hf").exists()
    export_model(ckpt, tmp_path / "again", "litgpt")
    assert (tmp_path / "again" / "lit_model.pth.adapter_v2").is_file()


def test_the_cli_trains_from_the_yaml_resumes_exactly_and_refuses_another_technique(tmp_path, tiny_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)
    args = [*finetune_args(tiny_checkpoint, data, "adapter_v2.yaml"),
            "--model.technique.init_args.adapter_start_layer", "1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    main([*args, *common(straight), "--trainer.max_steps", "8"])
    at_step_4 = straight / "logs" / "version_0" / "checkpoints" / "epoch=0-step=4.ckpt"
    checkpoint = torch.load(at_step_4, weights_only=True)
    assert checkpoint["hyper_parameters"]["technique"] == {"adapter_v2": {"adapter_prompt_length": 10,
                                                                          "adapter_start_layer": 1}}
    assert checkpoint["hyper_parameters"]["lora"] is None
    assert checkpoint["state_dict"] and all(adapter_filter(key, None) for key in checkpoint["state_dict"])

    main([*args, *common(resumed), "--trainer.max_steps", "8", "--ckpt_path", str(at_step_4)])
    expected, again = losses(straight, 0), losses(resumed, 0)
    assert sorted(again) == [5, 6, 7, 8]
    assert again == pytest.approx({step: expected[step] for step in again}, abs=1e-6, rel=0)
    (last_straight,) = [p for p in complete_checkpoints(straight) if p.name == "epoch=0-step=8.ckpt"]
    (last_resumed,) = [p for p in complete_checkpoints(resumed) if p.name == "epoch=0-step=8.ckpt"]
    trained, trained_again = (torch.load(p, weights_only=True)["state_dict"] for p in (last_straight, last_resumed))
    assert trained.keys() == trained_again.keys()
    assert all(torch.equal(trained[key], trained_again[key]) for key in trained)
    assert isinstance(load_module(at_step_4).technique, AdapterV2)

    lora = finetune_args(tiny_checkpoint, data, "lora.yaml")
    with pytest.raises(SystemExit, match=r"was written by FineTuning with Adapter V2 \(a 10-token prompt from layer "
                                         r"1, .*\), but this run is FineTuning with LoRA \(r=8 on query, value\)"):
        main([*lora, *common(tmp_path / "lora"), "--ckpt_path", str(at_step_4)])
    module = FineTuning(tiny_checkpoint, technique=AdapterV2(adapter_prompt_length=5, adapter_start_layer=1))
    with pytest.raises(CheckpointError, match="a 10-token prompt from layer 1.*a 5-token prompt from layer 1"):
        quiet_trainer(tmp_path / "other", max_steps=8).fit(
            module, datamodule=Instructions(str(data), batch_size=4), ckpt_path=at_step_4)


def test_continual_pretraining_takes_the_technique_too(tmp_path, tiny_checkpoint):
    from lightning_adapt import TextCorpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        (corpus / f"doc{i}.txt").write_text(f"Document {i}: the river Vell runs past the town of Wrenmouth. " * 4)
    L.seed_everything(0)
    module = ContinualPretraining(tiny_checkpoint, technique={"adapter_v2": {"adapter_start_layer": 1}},
                                  general_val=None, max_seq_length=32, export=False)
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0)
    trainer.fit(module, datamodule=TextCorpus(str(corpus), batch_size=4, val_fraction=0.2))
    assert module.technique == AdapterV2(adapter_start_layer=1) and module.train_tokens > 0
    assert {n for n, p in module.model.named_parameters() if p.requires_grad} == {
        n for n, p in module.model.named_parameters() if adapter_filter(n, p)}


def test_a_quantized_base_trains_under_adapter_v2_and_exports_dequantized(tmp_path, tiny_biased_checkpoint):
    bnb = pytest.importorskip("bitsandbytes")
    module, _ = fit(tmp_path, tiny_biased_checkpoint, steps=8, quantize="nf4")
    assert isinstance(module.model.transformer.h[0].attn.qkv.linear, bnb.nn.Linear4bit)
    assert isinstance(module.model.lm_head.linear, torch.nn.Linear)  # outside the blocks, as under QLoRA
    losses = list(logged(tmp_path, "train/loss").values())
    assert losses[-1] < losses[0] - 0.5, losses
    exported = load_model(tmp_path / "final", load_config(tmp_path / "final"))
    idx = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(2))
    for model in (module.model, exported):
        model.eval()
    with torch.no_grad():
        assert (exported(idx) - module.model(idx)).abs().max().item() <= 1e-4


class NotQuantizable(AdapterV2):
    layer_class = None


def test_quantization_needs_a_technique_with_a_quantizable_layer(tiny_checkpoint):
    with pytest.raises(ValueError, match="quantize='nf4': adapter_v2 models cannot be quantized"):
        FineTuning(tiny_checkpoint, technique=NotQuantizable(), quantize="nf4")


def test_a_module_takes_one_technique_and_old_settings_still_choose_theirs(tiny_checkpoint):
    with pytest.raises(ValueError, match="both choose a technique: give one of them"):
        FineTuning(tiny_checkpoint, lora=LoRA(), technique=ADAPTER)
    with pytest.raises(ValueError, match="Unknown adaptation technique 'prefix'. Choose one of: lora, adapter_v2"):
        FineTuning(tiny_checkpoint, technique={"prefix": {}})
    with pytest.raises(ValueError, match="name one technique and its settings"):
        FineTuning(tiny_checkpoint, technique={"lora": {}, "adapter_v2": {}})
    with pytest.raises(ValueError, match="technique adapter_v2: .*'rank'.*the fields of AdapterV2"):
        FineTuning(tiny_checkpoint, technique={"adapter_v2": {"rank": 4}})
    # a .ckpt's settings: LoRA under lora (as before techniques), every technique under technique
    saved = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["query"]}
    assert chosen_technique(saved, None) == LoRA(4, 8, 0.0, ["query"])
    assert chosen_technique(None, None) is None
    assert FineTuning(tiny_checkpoint, technique=LoRA(r=4)).hparams["lora"]["r"] == 4
    assert set(TECHNIQUES) == {"lora", "adapter_v2"}


def test_flops_match_the_flop_counter(tiny_checkpoint):
    """Adapter V2's prompt attention and projection are counted; its first norm trains, so every frozen matrix passes
    an activation gradient back."""
    config = load_config(tiny_checkpoint, ADAPTER)
    assert technique_of(config) == ADAPTER
    model = ADAPTER.build(config)  # LitGPT's model, computing the prompt's keys and values in every forward pass
    ADAPTER.mark_trainable(model)
    x = torch.randint(0, config.padded_vocab_size, (1, 64))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as forward:
        model(x)
    assert forward_flops(config, 64, causal=False) == forward.get_total_flops()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    assert training_flops(config, 64, causal=False) == pytest.approx(counter.get_total_flops(), rel=1e-6)
    plain = load_config(tiny_checkpoint)
    assert forward_flops(config, 64) > forward_flops(plain, 64)
