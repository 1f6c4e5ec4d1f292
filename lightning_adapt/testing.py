"""Tiny, offline LitGPT checkpoints for tests, examples and the no-network fallback demo.

A checkpoint made here is a real LitGPT checkpoint folder: ``lit_model.pth`` (random weights),
``model_config.yaml``, a byte-level BPE ``tokenizer.json`` trained on a small built-in text, and
``tokenizer_config.json``. Every LitGPT tool and every lightning-adapt module accepts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from litgpt import Config, GPT
from litgpt.utils import save_config

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. A review of the restaurant: the food was great and the
service was friendly. Sentiment: Positive. The film was boring and far too long. Sentiment: Negative.
Below is an instruction that describes a task. Write a response that appropriately completes the request.
### Instruction: Translate the word into French. ### Input: cat ### Response: chat
Alice was born on 12 March 1987 in Lisbon. She studied physics at the University of Oslo and works at
a company that builds ships. Paris is the capital of France. Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000.
def add(a, b):
    return a + b
"""


def tiny_config(name: str = "tiny-llama", vocab_size: int = 384, block_size: int = 256, **overrides) -> Config:
    """A 2-layer llama-style config (grouped-query attention, RMSNorm, SwiGLU MLP, RoPE); `overrides` change any field."""
    fields = dict(
        n_layer=2,
        n_head=4,
        n_embd=64,
        n_query_groups=2,
        rotary_percentage=1.0,
        parallel_residual=False,
        bias=False,
        norm_class_name="RMSNorm",
        mlp_class_name="LLaMAMLP",
        intermediate_size=128,
    )
    fields.update(overrides)
    return Config(name=name, block_size=block_size, vocab_size=vocab_size, padded_vocab_size=vocab_size, **fields)


def train_tiny_tokenizer(vocab_size: int = 384, text: str = _TRAINING_TEXT):
    """A byte-level BPE tokenizer (GPT-2 style pre-tokenization) trained on ``text``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([text] * 4, trainer=trainer)
    return tokenizer


def tiny_biased_config(name: str = "tiny-neox", vocab_size: int = 384, block_size: int = 256) -> Config:
    """A 2-layer GPT-NeoX-style config with biases everywhere and odd shapes (3 heads of 24, MLP width 100,
    partial rotary, parallel residual, LayerNorm): what Qwen2, Phi and Pythia checkpoints look like to LoRA."""
    return tiny_config(
        name, vocab_size, block_size, n_head=3, n_embd=72, n_query_groups=3, rotary_percentage=0.5,
        parallel_residual=True, bias=True, norm_class_name="LayerNorm", mlp_class_name="GptNeoxMLP",
        intermediate_size=100,
    )


def make_tiny_checkpoint(
    checkpoint_dir: str | Path, seed: int = 0, vocab_size: int = 384, config: Config | None = None
) -> Path:
    """Write a complete tiny LitGPT checkpoint folder with random weights and return its path
    (`config` defaults to `tiny_config(vocab_size=vocab_size)`)."""
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tiny_tokenizer(vocab_size)
    tokenizer.save(str(checkpoint_dir / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
    }
    (checkpoint_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    eos_id = tokenizer.token_to_id("<|endoftext|>")
    generation_config = {"bos_token_id": eos_id, "eos_token_id": eos_id}
    (checkpoint_dir / "generation_config.json").write_text(json.dumps(generation_config, indent=2))

    config = config or tiny_config(vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = GPT(config)
    model.apply(model._init_weights)
    torch.save(model.state_dict(), checkpoint_dir / "lit_model.pth")
    save_config(config, checkpoint_dir)
    return checkpoint_dir
