"""Formats a trained model is written in: LitGPT, Hugging Face, PEFT (GGUF through its plugin)."""
