"""The console filters: what a tiny real Trainer.fit prints, in a fresh process, with and without them."""

import subprocess
import sys

import pytest

from lightning_adapt.core.quiet import StepRichProgressBar, progress_bar
from tests.helpers import subprocess_env

FIT = """
import sys, warnings
import lightning as L, torch
from torch.utils.data import DataLoader
from lightning_adapt.core.quiet import quiet_console, quiet_probe


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.weight(batch["x"]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit():
    data = DataLoader([{"x": torch.ones(2)} for _ in range(4)], batch_size=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=sys.argv[1])
    trainer.fit(Module(), data, data)


with quiet_probe():
    warnings.warn("a warning of our own", UserWarning)
    fit()
print("--- a plain Trainer", file=sys.stderr, flush=True)
fit()
print("--- after quiet_console", file=sys.stderr, flush=True)
quiet_console()
quiet_console()
warnings.warn("a warning of our own", UserWarning)
fit()
"""

TIP = "💡 Tip: For seamless cloud logging"
TRAINER = ["GPU available: ", "TPU available: ", "`Trainer(limit_val_batches=1)` was configured so",
           "`Trainer.fit` stopped: `max_steps=2` reached."]
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated"
NO_STEP = "You passed in a `val_dataloader` but have no `validation_step`"


@pytest.fixture(scope="module")
def printed(tmp_path_factory) -> dict[str, str]:
    """What the script prints in each part: the probe, a plain Trainer, after quiet_console (every warning shown each
    time it is raised, so that a warning hidden in one part is not merely a repeat)."""
    root = tmp_path_factory.mktemp("quiet")
    script = root / "fit.py"
    script.write_text(FIT)
    done = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True,
                          env=subprocess_env(PYTHONWARNINGS="always"), timeout=240)
    assert done.returncode == 0, done.stderr
    parts = (done.stdout + done.stderr).split("--- ")
    return dict(zip(("probe", "plain", "quiet"), parts))


@pytest.mark.slow
def test_quiet_console_hides_lightnings_lines_by_their_text_and_keeps_other_warnings(printed):
    for line in [TIP, *TRAINER, LEAFSPEC, NO_STEP]:  # what a plain Trainer prints: the test is about these
        assert line in printed["plain"]
    for line in [TIP, *TRAINER, LEAFSPEC]:
        assert line not in printed["quiet"]
    assert "a warning of our own" in printed["quiet"]  # warnings are filtered by their text, not all at once
    assert NO_STEP in printed["quiet"]  # a user's module without validation_step is still told so outside a probe


@pytest.mark.slow
def test_quiet_probe_hides_a_probes_lines_and_leaves_the_console_as_it_was(printed):
    for line in [TIP, *TRAINER, LEAFSPEC, NO_STEP]:
        assert line not in printed["probe"]
    assert "a warning of our own" in printed["probe"]
    for line in [TIP, *TRAINER, LEAFSPEC, NO_STEP]:  # shown again once the probe is over
        assert line in printed["plain"]


class Trainer:
    def __init__(self, max_epochs):
        self.max_epochs = max_epochs


@pytest.mark.parametrize(("max_epochs", "description"), [(-1, "Epoch 3"), (5, "Epoch 3/4")])
def test_progress_bar_names_no_epoch_total_when_epochs_are_unbounded(max_epochs, description):
    bar = progress_bar()
    assert isinstance(bar, StepRichProgressBar)
    bar._trainer = Trainer(max_epochs)
    assert bar._get_train_description(3).strip() == description
