import json
import random
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from litgpt import GPT, Config, Tokenizer

from lightning_adapt.icl import ICLTask

_WORDS = "the food was great and service friendly film boring far too long quick brown fox lazy dog".split()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def reviews(n: int, seed: int) -> list[dict]:
    """Deterministic review records (text, label, domain), labels alternating."""
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9))),
            "label": "Positive" if i % 2 == 0 else "Negative",
            "domain": "food",
        }
        for i in range(n)
    ]


@pytest.fixture
def review_files(tmp_path) -> tuple[Path, Path]:
    """(demos.jsonl with 10 reviews, queries.jsonl with 7 reviews)."""
    return write_jsonl(tmp_path / "demos.jsonl", reviews(10, 0)), write_jsonl(tmp_path / "queries.jsonl", reviews(7, 1))


@pytest.fixture
def sentiment_task(review_files):
    def make(**overrides) -> ICLTask:
        demos, queries = review_files
        spec = dict(
            name="sent", queries=str(queries), demos=str(demos), template="Review: {text}\nSentiment:",
            target="label", choices=["Positive", "Negative"],
        )
        return ICLTask(**(spec | overrides))

    return make


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint) -> tuple[GPT, Tokenizer]:
    """The tiny checkpoint's model (eval mode; treat as read-only) and tokenizer."""
    return load_gpt(tiny_checkpoint).eval(), Tokenizer(tiny_checkpoint)


def load_gpt(checkpoint_dir: Path) -> GPT:
    model = GPT(Config.from_file(checkpoint_dir / "model_config.yaml"))
    model.load_state_dict(torch.load(checkpoint_dir / "lit_model.pth", weights_only=True))
    return model


class TinyGPTModule(L.LightningModule):
    """A minimal module satisfying the ICLEvaluation protocol: next-token loss on token batches."""

    def __init__(self, checkpoint_dir: Path) -> None:
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.tokenizer = Tokenizer(checkpoint_dir)
        self.train_tokens = 0
        self.losses: list[float] = []

    def configure_model(self) -> None:
        if not hasattr(self, "model"):
            self.model = load_gpt(self.checkpoint_dir)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (tokens,) = batch
        logits = self.model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss = loss + 1e-3 * torch.rand(())  # consumes the global RNG, so RNG leaks change the losses
        self.train_tokens += tokens.numel()
        self.losses.append(loss.item())
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        (tokens,) = batch
        logits = self.model(tokens[:, :-1])
        self.log("val_loss", torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.model.parameters(), lr=1e-2)


def token_loader(n: int = 8, length: int = 16, seed: int = 0) -> torch.utils.data.DataLoader:
    tokens = torch.randint(0, 384, (n, length), generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens), batch_size=2)


@pytest.fixture
def module_factory(tiny_checkpoint):
    return lambda: TinyGPTModule(tiny_checkpoint)


@pytest.fixture
def helpers() -> SimpleNamespace:
    """Plain helper functions for the tests (conftest modules are not importable)."""
    return SimpleNamespace(write_jsonl=write_jsonl, reviews=reviews, load_gpt=load_gpt, token_loader=token_loader)
