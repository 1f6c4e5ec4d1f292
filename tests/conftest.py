from pathlib import Path

import pytest

from lightning_adapt.testing import make_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random LitGPT checkpoint folder shared by the whole session (treat as read-only)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-llama")
