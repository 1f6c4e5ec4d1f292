"""Load a LitGPT checkpoint folder: its config, tokenizer, prompt style and weights, with an adaptation technique's
layers (LoRA, Adapter V2) added."""

from __future__ import annotations

import json
import sys
import time
import zipfile
from pathlib import Path

import torch
import yaml
from litgpt import GPT, Config, Tokenizer
from litgpt.prompts import Default, PromptStyle, has_prompt_style, load_prompt_style, model_name_to_prompt_style, prompt_styles

from lightning_adapt.techniques import Technique, config_class_for, technique_of
from lightning_adapt.core.plugins import download, download_name
from lightning_adapt.model.quantize import load_quantized_weights

WEIGHTS_FILE = "lit_model.pth"
CONFIG_FILE = "model_config.yaml"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


class CheckpointError(FileNotFoundError):
    """A checkpoint folder is missing, incomplete or unreadable."""


def resolve_checkpoint_dir(checkpoint_dir: str | Path) -> Path:
    """`checkpoint_dir`, checked; a built-in model's folder (e.g. `checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct`)
    is made first if it does not exist yet. Every entry point (modules, `evaluate_checkpoint`, compare) calls this
    once; everything after it only checks."""
    checkpoint_dir = Path(checkpoint_dir)
    downloadable = download_name(checkpoint_dir)
    if not checkpoint_dir.is_dir() and downloadable is not None:
        name, root = downloadable
        say(f"making the built-in model's checkpoint folder {checkpoint_dir} (first use only): its plugin fetches the "
            f"{name} weights (or reads them from its cache) and converts them to a LitGPT checkpoint ...")
        start = time.perf_counter()
        download(name, root)
        say(f"{checkpoint_dir} is ready ({time.perf_counter() - start:.0f} s).")
    return check_checkpoint_dir(checkpoint_dir)


def say(message: str) -> None:
    """A line about what loading is doing (on stderr, so that a command's own output stays clean)."""
    print(f"[lightning-adapt] {message}", file=sys.stderr, flush=True)


def check_checkpoint_dir(checkpoint_dir: str | Path) -> Path:
    """Return `checkpoint_dir` as a Path if it holds weights, a config and a tokenizer, else raise (no side effect)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        raise CheckpointError(
            f"Checkpoint folder '{checkpoint_dir}' does not exist. Point checkpoint_dir at a LitGPT checkpoint "
            f"folder (with {WEIGHTS_FILE}, {CONFIG_FILE} and tokenizer files), e.g. one made by "
            "`litgpt download` or `lightning-adapt download`."
        )
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (checkpoint_dir / name).is_file()]
    if not any((checkpoint_dir / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise CheckpointError(
            f"Checkpoint folder '{checkpoint_dir}' is missing {', '.join(missing)}. A LitGPT checkpoint folder "
            f"needs {WEIGHTS_FILE}, {CONFIG_FILE} and a tokenizer; convert Hugging Face weights with "
            "`litgpt convert_to_litgpt` or re-download the model."
        )
    return checkpoint_dir


def load_config(checkpoint_dir: str | Path, technique: Technique | None = None) -> Config:
    """The model config of a checkpoint, as the config of `technique`'s model when one is given (e.g. a
    `litgpt.lora.Config`); without one, the config class the file's fields ask for (an exported Adapter V2 model's
    folder keeps its `adapter_*` fields)."""
    path = check_checkpoint_dir(checkpoint_dir) / CONFIG_FILE
    try:
        if technique is not None:
            return technique.config_class.from_file(path, **technique.config_kwargs())
        fields = yaml.safe_load(path.read_text(encoding="utf-8"))
        return config_class_for(fields if isinstance(fields, dict) else {}).from_file(path)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"'{path}' is not a valid LitGPT model config: {error}") from error


class CheckpointTokenizer(Tokenizer):
    """LitGPT's tokenizer that encodes as the model's own Hugging Face tokenizer does: a BOS token first exactly when
    `AutoTokenizer` adds one by default (`hf_bos`, the rule lm-evaluation-harness follows), so ICL prompts,
    fine-tuning examples and CPT documents start alike, whatever the folder is called. (LitGPT's `use_bos`
    special-cases folder names — SmolLM2-*-Instruct gets a BOS its tokenizer does not add, its exported `final/`
    none — and its `encode` strips a leading BOS written in the text.)"""

    def __init__(self, checkpoint_dir: str | Path) -> None:
        super().__init__(checkpoint_dir)
        self.hf_bos = hf_adds_bos(Path(checkpoint_dir), self)

    def encode(
        self,
        string: str,
        device: torch.device | None = None,
        bos: bool | None = None,
        eos: bool = False,
        max_length: int = -1,
    ) -> torch.Tensor:
        """`encode_text` with a BOS as `bos` says (None: `hf_bos`), then EOS with `eos` (not a second one), cut to
        `max_length` when positive; nothing written in the text is removed."""
        ids = encode_text(self, string, self.hf_bos if bos is None else bos)
        if eos and ids[-1:] != [self.eos_id]:
            ids.append(self.eos_id)
        if max_length > 0:
            ids = ids[:max_length]
        return torch.tensor(ids, dtype=torch.int, device=device)


def hf_adds_bos(checkpoint_dir: Path, tokenizer: Tokenizer) -> bool:
    """Whether `AutoTokenizer` for this folder adds a BOS token: tokenizer_config.json's `add_bos_token` when set,
    else whether tokenizer.json's post-processor adds it, else True for a SentencePiece (Llama) tokenizer."""
    config_path = checkpoint_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if "add_bos_token" in config:
        return bool(config["add_bos_token"])
    if tokenizer.backend == "huggingface":
        return tokenizer.bos_id is not None and tokenizer.processor.encode("a").ids[:1] == [tokenizer.bos_id]
    return tokenizer.backend == "sentencepiece"


def bos_rule(tokenizer: Tokenizer, add_bos: bool | None = None) -> bool:
    """`add_bos` when given, else the model's Hugging Face rule (`CheckpointTokenizer.hf_bos`; a plain LitGPT
    `Tokenizer`: its `use_bos`)."""
    if add_bos is not None:
        return add_bos
    return getattr(tokenizer, "hf_bos", tokenizer.use_bos)


def encode_text(tokenizer: Tokenizer, text: str, add_bos: bool) -> list[int]:
    """The token ids of `text` as `AutoTokenizer` gives them: no special token added but a BOS with `add_bos` (not a
    second one when the text starts with it), and nothing removed (LitGPT's `encode` strips a leading BOS when it
    adds none)."""
    if tokenizer.backend == "huggingface":
        ids = tokenizer.processor.encode(text, add_special_tokens=False).ids
    else:
        ids = list(tokenizer.processor.encode(text))
    if add_bos and tokenizer.bos_id is not None and ids[:1] != [tokenizer.bos_id]:
        ids = [tokenizer.bos_id, *ids]
    return ids


def load_tokenizer(checkpoint_dir: str | Path) -> CheckpointTokenizer:
    """LitGPT's tokenizer for a checkpoint folder, with a clear error when it cannot be read."""
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    try:
        tokenizer = CheckpointTokenizer(checkpoint_dir)
    except Exception as error:
        raise CheckpointError(
            f"LitGPT cannot read the tokenizer in '{checkpoint_dir}' ({type(error).__name__}: {error}). "
            "It needs a valid tokenizer.json (Hugging Face tokenizers) or tokenizer.model (SentencePiece), "
            "and tokenizer_config.json must be valid JSON with a 'tokenizer_class' key."
        ) from error
    if tokenizer.eos_id is None:
        raise CheckpointError(
            f"The tokenizer in '{checkpoint_dir}' has no end-of-sequence token: set 'eos_token' in "
            "tokenizer_config.json or 'eos_token_id' in generation_config.json."
        )
    return tokenizer


def prompt_style_from_name(name: str) -> PromptStyle:
    """LitGPT's prompt style called `name` (`default`: the prompt as it is), with the valid names when there is none."""
    if name == "default":
        return Default()
    if name not in prompt_styles:
        names = ", ".join(["default", *sorted(prompt_styles)])
        raise ValueError(f"Unknown prompt style '{name}'. Choose one of LitGPT's: {names}.")
    return PromptStyle.from_name(name)


def checkpoint_prompt_style(checkpoint_dir: str | Path) -> PromptStyle:
    """The checkpoint's own prompt style: its `prompt_style.yaml`, else the one LitGPT maps its model name to."""
    checkpoint_dir = Path(checkpoint_dir)
    if has_prompt_style(checkpoint_dir):
        return load_prompt_style(checkpoint_dir)
    return model_name_to_prompt_style(load_config(checkpoint_dir).name)


def build_model(config: Config) -> GPT:
    """An uninitialised LitGPT model for `config`, with the layers of the technique whose config it is."""
    technique = technique_of(config)
    return GPT(config) if technique is None else technique.build(config)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a `lit_model.pth` (tensors only, memory-mapped), unwrapped from a {"model": ...} entry."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"Weights '{path}' are not a PyTorch checkpoint (not the zip archive `torch.save` writes): probably a "
            "truncated download or a file in another format. Re-download the model, or re-convert it with "
            "`litgpt convert_to_litgpt`."
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(f"Cannot read weights '{path}': {error}") from error
    return state_dict.get("model", state_dict)


def load_model(
    checkpoint_dir: Path, config: Config, quantize: str | None = None, device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> GPT:
    """The checkpoint's model (a technique's layers where `config` asks for them) with its weights: the one loader
    that the training modules, `evaluate_checkpoint` and export use. The model is built on the meta device and takes
    the memory-mapped tensors of `lit_model.pth` as its weights (no random initialisation of weights that are then
    overwritten, no copy where the stored dtype is the one asked for: processes loading one file share its pages);
    the technique's added parameters are then initialised in module order, so they start alike however the model
    is placed or sharded. Without `device`/`dtype` a plain model lies on the CPU in the default dtype (a strategy
    places it). With `quantize`, the base linear layers of the blocks become bitsandbytes layers, built one by one
    on `device` (see `quantize.py`)."""
    with torch.device("meta"):
        model = build_model(config)
    path = check_checkpoint_dir(checkpoint_dir) / WEIGHTS_FILE
    dtype = dtype or torch.get_default_dtype()
    if quantize is not None:
        device = torch.device(device or "cpu")
        load_quantized_weights(model, read_weights(path), path, quantize, device, dtype)
        init_adapters(model, device, dtype)
        return model.to(device=device, dtype=dtype)
    load_weights(model, read_weights(path), path)
    init_adapters(model, torch.device("cpu"), dtype)
    return model.to(device=device, dtype=dtype)


def load_weights(model: GPT, state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Make `state_dict`'s tensors the weights of `model` (built on the meta device); the parameters a technique adds
    to a base model are the only keys allowed to be absent."""
    result = model.load_state_dict(state_dict, strict=False, assign=True)
    technique = technique_of(model.config)
    missing = [key for key in result.missing_keys if technique is None or not technique.is_added(key)]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"Weights '{path}' do not match the model in {CONFIG_FILE}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {result.unexpected_keys[:5]}. "
            "The config and weights probably come from different models."
        )


def init_adapters(model: GPT, device: torch.device, dtype: torch.dtype) -> None:
    """Give the parameters a technique added to `model` that no weights filled their starting values on `device` (see
    `Technique.init_added`; e.g. LoRA's A and B matrices), and the model its RoPE cache."""
    technique = technique_of(model.config)
    if technique is not None:
        technique.init_added(model, device, dtype)
    model.cos, model.sin = model.rope_cache(device=device)
