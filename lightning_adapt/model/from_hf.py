"""A Hugging Face `transformers` model folder (`save_pretrained`'s config.json, weights and tokenizer) turned into a
LitGPT checkpoint folder by LitGPT's own converter (`litgpt.scripts.convert_hf_checkpoint`), for a model of an
architecture and size LitGPT knows (a fine-tuned or otherwise retrained version of one of its models):
`lightning-adapt convert hf FOLDER --out DIR`. Everything is checked before any weight is read."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

from litgpt import Config
from litgpt.config import configs
from litgpt.scripts.convert_hf_checkpoint import convert_hf_checkpoint
from litgpt.utils import copy_config_files

from lightning_adapt.core.atomic import atomic_directory, check_output_dir
from lightning_adapt.model.loading import TOKENIZER_FILES

HF_CONFIG_FILE = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
NOT_WEIGHTS = ("training_args.bin",)
"""Files with a weight suffix that hold no weights (LitGPT's converter skips them too)."""
SHAPE = {
    "num_hidden_layers": "n_layer", "hidden_size": "n_embd", "num_attention_heads": "n_head",
    "num_key_value_heads": "n_query_groups", "intermediate_size": "intermediate_size", "vocab_size": "padded_vocab_size",
}
"""config.json's size fields and the LitGPT config field each must equal (the weights' shapes follow from them)."""
DTYPES = ("float32", "bfloat16", "float16")


class HFConversionError(ValueError):
    """A Hugging Face folder that cannot be converted as asked; the message names the file or field and the way out."""


def read_hf_folder(folder: Path) -> dict[str, Any]:
    """The `config.json` of a transformers model folder, after checking the folder holds weights and a tokenizer."""
    if not folder.is_dir():
        raise HFConversionError(f"'{folder}' is not a folder: give the folder `save_pretrained` wrote.")
    path = folder / HF_CONFIG_FILE
    if not path.is_file():
        raise HFConversionError(
            f"'{folder}' has no {HF_CONFIG_FILE}, so it is no transformers model folder: save the model with "
            "model.save_pretrained(FOLDER), which writes config.json beside the weights."
        )
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise HFConversionError(f"'{path}' is not valid JSON: {error}.") from None
    if not weight_files(folder):
        raise HFConversionError(f"'{folder}' holds no weights (*.safetensors or *.bin): save the model with "
                                "model.save_pretrained(FOLDER).")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise HFConversionError(f"'{folder}' has no {' or '.join(TOKENIZER_FILES)}: save the tokenizer into it too, "
                                "tokenizer.save_pretrained(FOLDER).")
    return hf


def weight_files(folder: Path) -> list[Path]:
    """The files of `folder` LitGPT's converter reads weights from (and the index of sharded weights)."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name.endswith(".index.json"))
        and path.name not in NOT_WEIGHTS
    )


def hf_shape(hf: dict[str, Any]) -> dict[str, int]:
    """The sizes config.json gives (a multimodal model's from its `text_config`), under LitGPT's field names."""
    text = {**hf.get("text_config", {}), **hf}
    return {litgpt: text[key] for key, litgpt in SHAPE.items() if isinstance(text.get(key), int)}


def shape_differences(shape: dict[str, int], config: Config) -> list[str]:
    """Each size of `shape` the LitGPT `config` does not have, as `field: value (LitGPT NAME: value)`."""
    return [f"{hf_key}: {shape[field]} (LitGPT {config.name}: {getattr(config, field)})"
            for hf_key, field in SHAPE.items() if field in shape and shape[field] != getattr(config, field)]


def known_names() -> list[str]:
    """Every model name LitGPT's configs know (what `--model_name` takes)."""
    return sorted((config["name"] for config in configs), key=str.lower)


def described(hf: dict[str, Any]) -> str:
    """The architecture and sizes config.json gives, for messages."""
    architecture = ", ".join(hf.get("architectures") or [str(hf.get("model_type", "unknown architecture"))])
    shape = hf_shape(hf)
    sizes = ", ".join(f"{key} {shape[field]}" for key, field in SHAPE.items() if field in shape)
    return f"{architecture}: {sizes}" if sizes else architecture


def litgpt_model_name(folder: Path, hf: dict[str, Any], model_name: str | None = None) -> str:
    """The LitGPT model whose architecture and sizes the folder's model has: `model_name` when given (checked), else
    the one its folder or `_name_or_path` names, else the only LitGPT model of its sizes."""
    shape = hf_shape(hf)
    if model_name is not None:
        try:
            config = Config.from_name(model_name)
        except ValueError:
            raise HFConversionError(
                f"--model_name {model_name}: LitGPT knows no such model. {same_shape_hint(hf)}"
            ) from None
        wrong = shape_differences(shape, config)
        if wrong:
            raise HFConversionError(
                f"'{folder / HF_CONFIG_FILE}' does not have the sizes of LitGPT's {config.name}: {'; '.join(wrong)}. "
                f"{same_shape_hint(hf)}"
            )
        return config.name
    for name in (folder.name, str(hf.get("_name_or_path", "")).rstrip("/").split("/")[-1]):
        matching = [config["name"] for config in configs if config["name"].lower() == name.lower()]
        if matching and not shape_differences(shape, Config.from_name(matching[0])):
            return matching[0]
    same = same_shape(shape)
    if len(same) == 1:
        return same[0]
    if same:
        raise HFConversionError(
            f"'{folder / HF_CONFIG_FILE}' ({described(hf)}) has the sizes of several LitGPT models: "
            f"{', '.join(same)}. Name the one it is a version of with --model_name NAME (it also picks the chat "
            "prompt style `litgpt chat` and our fine-tuning use)."
        )
    raise HFConversionError(
        f"'{folder / HF_CONFIG_FILE}' ({described(hf)}) has the sizes of no model LitGPT knows, so LitGPT's "
        "converter cannot read it (a llama or Qwen2 model of any size converts with `lightning-adapt export FOLDER "
        "--format litgpt --out_dir DIR`). If it is a version of one of LitGPT's models, name it with --model_name "
        f"NAME; LitGPT knows: {', '.join(known_names())}."
    )


def same_shape(shape: dict[str, int]) -> list[str]:
    """The LitGPT models with every size of `shape`."""
    return [config["name"] for config in configs if shape and not shape_differences(shape, Config(**config))]


def same_shape_hint(hf: dict[str, Any]) -> str:
    """Which LitGPT models have the folder's sizes, for a message about a wrong or unknown --model_name."""
    same = same_shape(hf_shape(hf))
    if same:
        return f"Models of its sizes ({described(hf)}): {', '.join(same)}."
    return f"No LitGPT model has its sizes ({described(hf)}); LitGPT knows: {', '.join(known_names())}."


def convert_from_hf(folder: str | Path, *, out: str | Path, model_name: str | None = None,
                    dtype: str | None = None) -> Path:
    """Convert a transformers model folder into a LitGPT checkpoint folder with LitGPT's converter.

    Args:
        folder: The folder `save_pretrained` wrote: config.json, *.safetensors (or *.bin) and the tokenizer files.
        out: The LitGPT checkpoint folder to write (lit_model.pth, model_config.yaml, the tokenizer files).
        model_name: The LitGPT model it is a version of, e.g. SmolLM2-135M-Instruct (default: the one its folder
            name or config.json names, else the only LitGPT model of its sizes).
        dtype: Store the weights as float32, bfloat16 or float16 (default: as the folder stores them).
    """
    folder, out = Path(folder), Path(out)
    if dtype not in (None, *DTYPES):
        raise HFConversionError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}, or none to keep the folder's.")
    hf = read_hf_folder(folder)
    name = litgpt_model_name(folder, hf, model_name)
    check_output_dir(out, "checkpoint", inputs=[folder])
    print(f"Converting '{folder}' as LitGPT's {name} into '{out}' ...", flush=True)
    with atomic_directory(out, "checkpoint", inputs=[folder]) as staging:
        links = [staging / path.name for path in weight_files(folder)]
        for link, path in zip(links, weight_files(folder)):
            link.symlink_to(path.absolute())
        copy_config_files(folder, staging)
        with contextlib.redirect_stdout(io.StringIO()):  # LitGPT prints its arguments and the staging folder
            convert_hf_checkpoint(staging, model_name=name, dtype=dtype)
        for link in links:
            link.unlink()
    return out
