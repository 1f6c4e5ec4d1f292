import json

import pytest

from tests.helpers import run_processes

SCRIPT = '''
import json, sys
from datetime import timedelta
from lightning.pytorch.strategies import DDPStrategy
import lightning as L, torch
from litgpt import GPT, Config, Tokenizer
from lightning.pytorch.loggers import CSVLogger
from lightning_adapt.icl import ICLEvaluation, ICLTask, evaluate_checkpoint

checkpoint, data, out = sys.argv[1], sys.argv[2], sys.argv[3]

class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.tokenizer = Tokenizer(checkpoint)
    def configure_model(self):
        self.model = GPT(Config.from_file(f"{checkpoint}/model_config.yaml"))
        self.model.load_state_dict(torch.load(f"{checkpoint}/lit_model.pth", weights_only=True))
    def training_step(self, batch, _):
        logits = self.model(batch[0][:, :-1])
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[0][:, 1:].flatten())
    def validation_step(self, batch, _):
        self.log("val_loss", self.training_step(batch, 0), sync_dist=True)
    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=1e-2)

tokens = torch.randint(0, 384, (8, 16), generator=torch.Generator().manual_seed(0))
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(tokens), batch_size=2)
task = ICLTask(name="sent", queries=f"{data}/queries.jsonl", demos=f"{data}/demos.jsonl", template="Review: {text}\\nSentiment:",
               target="label", choices=["Positive", "Negative"], shots=[0, 1], seeds=[0, 1], calibrate=True)
callback = ICLEvaluation(task, batch_size=4)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(timeout=timedelta(seconds=90)), max_steps=2, val_check_interval=1, limit_val_batches=1,
                    num_sanity_val_steps=0, logger=CSVLogger(out, name="run"), callbacks=[callback],
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Module(), loader, loader)
if trainer.is_global_zero:
    baseline = evaluate_checkpoint(checkpoint, [task], batch_size=4)
    print("STEP0", json.dumps(baseline.rows))
print(f"RANK{trainer.global_rank}", json.dumps(callback.results.rows), flush=True)
'''


@pytest.mark.slow
def test_ddp_ranks_shard_gather_and_log_without_deadlock(tmp_path, tiny_checkpoint, review_files):
    stdout = run_processes(SCRIPT, [str(tiny_checkpoint), str(review_files[0].parent), str(tmp_path)], tmp_path)
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines()
             if line.startswith(("RANK", "STEP0"))}
    assert lines["RANK0"] == lines["RANK1"]  # both ranks end with the gathered, complete results
    assert {(row["k"], row["seed"]) for row in lines["RANK0"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    files = sorted((tmp_path / "run" / "version_0" / "icl_predictions").glob("*.jsonl"))
    assert [f.name for f in files] == ["step-00000000.jsonl", "step-00000001.jsonl", "step-00000002.jsonl"]
    step0 = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(step0) == 7 * 2 * 2  # every query once, gathered from both ranks
    assert lines["STEP0"][0]["acc"] == pytest.approx(
        sum(r["acc"] for r in step0 if r["k"] == 0 and r["seed"] == 0) / 7
    )
