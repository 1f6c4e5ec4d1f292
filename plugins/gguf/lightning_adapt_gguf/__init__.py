"""Import GGUF checkpoints into LitGPT format; SmolLM2-135M-Instruct as lightning-adapt's default model."""

from lightning_adapt_gguf.convert import convert_gguf
from lightning_adapt_gguf.download import download_smollm2
from lightning_adapt_gguf.errors import ChecksumError, DownloadError, GGUFImportError, NotSupportedError

__all__ = ["ChecksumError", "DownloadError", "GGUFImportError", "NotSupportedError", "convert_gguf", "download_smollm2"]
