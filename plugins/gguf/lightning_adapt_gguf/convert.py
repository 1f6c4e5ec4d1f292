"""Convert a GGUF file into a LitGPT checkpoint folder, written atomically."""

import json
from pathlib import Path

import torch
from litgpt.prompts import ChatML, Default, PromptStyle, model_name_to_prompt_style, save_prompt_style
from litgpt.utils import save_config

from lightning_adapt.core.atomic import atomic_directory, check_output_dir

from lightning_adapt_gguf.config import config_from_metadata
from lightning_adapt_gguf.errors import GGUFImportError
from lightning_adapt_gguf.reader import open_gguf, read_metadata
from lightning_adapt_gguf.tokenizer import build_tokenizer, generation_config, tokenizer_config
from lightning_adapt_gguf.weights import state_dict_from_tensors


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Write the LitGPT checkpoint folder `out_dir` for the llama or qwen2 GGUF file `gguf_path`.

    The folder holds `lit_model.pth` (float32), `model_config.yaml`, `tokenizer.json`,
    `tokenizer_config.json`, `generation_config.json` and `prompt_style.yaml`. It appears only once
    complete: on any error or kill nothing is left at `out_dir`. An existing `out_dir` is refused, never replaced.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it or choose another output folder")
    check_output_dir(out_dir, "checkpoint", inputs=[gguf_path])  # an unwritable place, before reading the file
    reader = open_gguf(gguf_path)
    meta = read_metadata(reader)
    try:
        embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
        if embedding is None:
            raise GGUFImportError("missing tensor 'token_embd.weight'")
        config = config_from_metadata(meta, vocab_rows=int(embedding.shape[-1]), preferred_name=out_dir.name)
        tokenizer = build_tokenizer(meta)
        state_dict = state_dict_from_tensors(reader.tensors, config, meta["general.architecture"])
    except GGUFImportError as e:
        raise type(e)(f"{gguf_path}: {e}") from None

    with atomic_directory(out_dir, "checkpoint", inputs=[gguf_path]) as staging:
        torch.save(state_dict, staging / "lit_model.pth")
        save_config(config, staging)
        tokenizer.save(str(staging / "tokenizer.json"))
        _write_json(tokenizer_config(meta, config.block_size), staging / "tokenizer_config.json")
        _write_json(generation_config(meta), staging / "generation_config.json")
        save_prompt_style(prompt_style(config.name, meta.get("tokenizer.chat_template", "")), staging)
    return out_dir


def prompt_style(model_name: str, chat_template: str) -> PromptStyle:
    """LitGPT's prompt style for `model_name`; plain ChatML for an unknown model with a ChatML template."""
    style = model_name_to_prompt_style(model_name)
    if isinstance(style, Default) and "<|im_start|>" in chat_template:
        return ChatML()
    return style


def _write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
