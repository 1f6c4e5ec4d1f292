"""The base model: LitGPT checkpoint folders (config, weights, tokenizer, prompt style) and quantization."""
