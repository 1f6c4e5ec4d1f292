"""`lightning-adapt export --format hf|peft`: transformers and peft load what we write and compute our logits."""

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file, save_file

from lightning_adapt import ExportSettings, FineTuning, Instructions, LoRA, Optimization
from lightning_adapt.cli import main
from lightning_adapt.model.loading import load_config, load_model, load_tokenizer, resolve_checkpoint_dir
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config
from tests.helpers import assert_no_output, quiet_trainer, spread_weights, write_instruction_file

transformers = pytest.importorskip("transformers")

PROMPTS = ["The quick brown fox jumps", "Sentiment: Positive. The film was", "def add(a, b):\n    return a + b"]
TOLERANCE = 1e-4
CONFIGS = {
    "llama": tiny_config("tiny-llama"),  # grouped-query attention: 4 heads, 2 groups
    "qwen2": tiny_config("tiny-qwen2", n_query_groups=4, attn_bias=True),  # biases on q, k, v
    "llama3-rope": tiny_config(
        "tiny-llama3", rope_adjustments=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=32)
    ),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints") / request.param
    return spread_weights(make_tiny_checkpoint(folder, config=CONFIGS[request.param]))


def our_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(ids[None].long())[0]


def hf_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(ids[None].long()).logits[0]


def load_hf(folder: Path) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


def max_difference(ours: torch.nn.Module, hf: torch.nn.Module, checkpoint_dir: Path) -> float:
    tokenizer = load_tokenizer(checkpoint_dir)
    ids = [tokenizer.encode(prompt) for prompt in PROMPTS]
    return max((our_logits(ours, i) - hf_logits(hf, i)).abs().max().item() for i in ids)


def test_transformers_loads_the_export_with_our_logits_and_token_ids(tmp_path, checkpoint):
    out = tmp_path / "hf"
    main(["export", str(checkpoint), "--format", "hf", "--out_dir", str(out)])
    source = {p.name: p.read_bytes() for p in checkpoint.iterdir() if p.name.startswith(("tokenizer", "special_"))}
    assert {name: (out / name).read_bytes() for name in source} == source
    config = json.loads((checkpoint / "generation_config.json").read_text())
    assert json.loads((out / "generation_config.json").read_text()) == config
    hf = load_hf(out)
    assert type(hf).__name__ == json.loads((out / "config.json").read_text())["architectures"][0]
    ours = load_model(checkpoint, load_config(checkpoint), dtype=torch.float32)
    difference = max_difference(ours, hf, checkpoint)
    assert difference <= TOLERANCE, f"max |logit difference| {difference}"

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    tokenizer = load_tokenizer(checkpoint)  # the same BOS rule as AutoTokenizer's (hf_bos), so ids compare whole
    assert [hf_tokenizer(prompt)["input_ids"] for prompt in PROMPTS] == [tokenizer.encode(p).tolist() for p in PROMPTS]


def test_a_swapped_or_transposed_weight_fails_the_logit_check(tmp_path, checkpoint):
    out = tmp_path / "hf"
    main(["export", str(checkpoint), "--format", "hf", "--out_dir", str(out)])
    ours = load_model(checkpoint, load_config(checkpoint), dtype=torch.float32)
    weights = load_file(out / "model.safetensors")
    q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"
    gate, up = "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"
    o = "model.layers.0.self_attn.o_proj.weight"
    tamperings = {
        "q/k heads swapped": {q: torch.cat([weights[k], weights[q][weights[k].shape[0]:]]),
                              k: weights[q][: weights[k].shape[0]]},
        "gate/up swapped": {gate: weights[up], up: weights[gate]},
        "o_proj transposed": {o: weights[o].T.contiguous()},
    }
    for name, change in tamperings.items():
        save_file({**weights, **change}, out / "model.safetensors", metadata={"format": "pt"})
        difference = max_difference(ours, load_hf(out), checkpoint)
        assert difference > 100 * TOLERANCE, f"{name}: logits moved only {difference}"
    config = json.loads((out / "config.json").read_text())
    if config["rope_scaling"] is not None:  # Llama 3's RoPE frequencies matter too
        save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
        (out / "config.json").write_text(json.dumps({**config, "rope_scaling": None}))
        assert max_difference(ours, load_hf(out), checkpoint) > 100 * TOLERANCE


@pytest.mark.parametrize(
    "config, targets",
    [("llama", ["query", "value"]), ("qwen2", ["query", "key", "value", "projection", "mlp", "head"])],
)
def test_lora_run_exports_merged_model_and_peft_adapter_with_its_logits(tmp_path, config, targets):
    peft = pytest.importorskip("peft")
    checkpoint = spread_weights(make_tiny_checkpoint(tmp_path / "base", config=CONFIGS[config]))
    L.seed_everything(0)
    module = FineTuning(checkpoint, lora=LoRA(r=4, alpha=8, targets=targets),
                        optimization=Optimization(learning_rate=0.05, warmup_steps=1, min_lr=0.05),
                        export=ExportSettings(formats=["litgpt", "hf", "peft"]))
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    quiet_trainer(tmp_path / "run", max_steps=2, val_check_interval=2, limit_val_batches=1).fit(module, datamodule=data)
    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    base = load_model(checkpoint, load_config(checkpoint), dtype=torch.float32)
    tokenizer = load_tokenizer(checkpoint)
    ids = tokenizer.encode(PROMPTS[0])
    assert (our_logits(module.model, ids) - our_logits(base, ids)).abs().max() > 0.01, "the adapter changes nothing"

    main(["export", str(ckpt), "--format", "litgpt", "--out_dir", str(tmp_path / "litgpt")])  # the default format
    exported = torch.load(tmp_path / "litgpt" / "lit_model.pth", weights_only=True)
    at_fit_end = torch.load(tmp_path / "run" / "final" / "lit_model.pth", weights_only=True)
    assert exported.keys() == at_fit_end.keys() and all(torch.equal(exported[k], at_fit_end[k]) for k in exported)

    main(["export", str(ckpt), "--format", "hf", "--out_dir", str(tmp_path / "merged")])
    merged = max_difference(module.model, load_hf(tmp_path / "merged"), checkpoint)
    assert merged <= TOLERANCE, f"merged export: max |logit difference| {merged}"

    main(["export", str(checkpoint), "--format", "hf", "--out_dir", str(tmp_path / "hf-base")])
    main(["export", str(ckpt), "--format", "peft", "--out_dir", str(tmp_path / "adapter")])
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    hf_names = {"query": ["q_proj"], "key": ["k_proj"], "value": ["v_proj"], "projection": ["o_proj"],
                "mlp": ["gate_proj", "up_proj", "down_proj"], "head": ["lm_head"]}
    assert adapter_config["target_modules"] == sorted(name for t in targets for name in hf_names[t])
    assert (adapter_config["r"], adapter_config["lora_alpha"], adapter_config["lora_dropout"]) == (4, 8, 0.05)
    with_adapter = peft.PeftModel.from_pretrained(load_hf(tmp_path / "hf-base"), tmp_path / "adapter")
    applied = max_difference(module.model, with_adapter, checkpoint)
    assert applied <= TOLERANCE, f"PEFT adapter on the HF base: max |logit difference| {applied}"

    for format, out in (("hf", "merged"), ("peft", "adapter")):  # the fit-end export writes the same files
        names = {"hf": "model.safetensors", "peft": "adapter_model.safetensors"}
        at_fit_end = load_file(tmp_path / "run" / f"final-{format}" / names[format])
        from_ckpt = load_file(tmp_path / out / names[format])
        assert at_fit_end.keys() == from_ckpt.keys() and all(torch.equal(at_fit_end[k], from_ckpt[k]) for k in at_fit_end)

    main(["export", str(tmp_path / "run" / "final"), "--format", "peft", "--out_dir", str(tmp_path / "from-final")])
    assert load_file(tmp_path / "from-final" / "adapter_model.safetensors").keys() == load_file(
        tmp_path / "adapter" / "adapter_model.safetensors").keys()
    from_final = peft.PeftModel.from_pretrained(load_hf(tmp_path / "hf-base"), tmp_path / "from-final")
    assert max_difference(module.model, from_final, checkpoint) <= TOLERANCE


def test_bad_inputs_are_refused_with_their_fix_and_leave_nothing(tmp_path, tiny_checkpoint, tiny_biased_checkpoint):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="Unknown export format 'onnx'. Choose one of: litgpt, hf, peft"):
        main(["export", str(tiny_checkpoint), "--format", "onnx", "--out_dir", str(out)])
    assert_no_output(out)
    with pytest.raises(SystemExit, match="is a folder of the litgpt format already: --format litgpt exports a .ckpt.*"
                                         "--format hf, peft, gguf"):
        main(["export", str(tiny_checkpoint), "--out_dir", str(out)])
    assert_no_output(out)
    with pytest.raises(SystemExit, match=r"norm_class_name: 'LayerNorm' \(needs 'RMSNorm'\).*LlamaForCausalLM.*--format litgpt"):
        main(["export", str(tiny_biased_checkpoint), "--format", "hf", "--out_dir", str(out)])
    assert_no_output(out)
    with pytest.raises(SystemExit, match="peft writes a LoRA adapter alone, and this model has no LoRA adapter.*as hf"):
        main(["export", str(tiny_checkpoint), "--format", "peft", "--out_dir", str(out)])
    assert_no_output(out)

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="was not written by lightning-adapt"):
        main(["export", str(tiny_checkpoint), "--format", "hf", "--out_dir", str(out)])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    earlier = tmp_path / "earlier"
    main(["export", str(tiny_checkpoint), "--format", "hf", "--out_dir", str(earlier)])
    with pytest.raises(SystemExit, match="holds an earlier hf-export. Pass --overwrite true"):
        main(["export", str(tiny_checkpoint), "--format", "hf", "--out_dir", str(earlier)])
    main(["export", str(tiny_checkpoint), "--format", "hf", "--out_dir", str(earlier), "--overwrite", "true"])
    assert (earlier / "model.safetensors").is_file()


@pytest.mark.slow
def test_smollm2_export_has_our_logits_and_token_ids(tmp_path):
    root = Path(__file__).parents[1] / "checkpoints" / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    try:
        checkpoint = resolve_checkpoint_dir(root)
    except (FileNotFoundError, ModuleNotFoundError, OSError) as error:
        pytest.skip(f"SmolLM2-135M-Instruct checkpoint not available: {error}")
    out = tmp_path / "hf"
    main(["export", str(checkpoint), "--format", "hf", "--out_dir", str(out)])
    hf = load_hf(out)
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.tie_word_embeddings
    difference = max_difference(load_model(checkpoint, load_config(checkpoint), dtype=torch.float32), hf, checkpoint)
    assert difference <= TOLERANCE, f"max |logit difference| {difference}"
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    tokenizer = load_tokenizer(checkpoint)
    assert [hf_tokenizer(prompt)["input_ids"] for prompt in PROMPTS] == [tokenizer.encode(p).tolist() for p in PROMPTS]
