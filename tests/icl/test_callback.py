import csv
import json

import lightning as L
import pytest
from lightning.pytorch.loggers import CSVLogger

from lightning_adapt.record.accounting import Accounting
from lightning_adapt.icl import ICLEvaluation, ICLTaskError, evaluate_checkpoint


def _trainer(tmp_path, callbacks, **kwargs):
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=4, val_check_interval=2, limit_val_batches=1,
        num_sanity_val_steps=1, logger=CSVLogger(tmp_path, name="run"), callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )


def test_callback_logs_step_zero_and_every_validation(tmp_path, tiny_checkpoint, module_factory, sentiment_task, helpers):
    task = sentiment_task(shots=[0, 1], seeds=[0, 1], calibrate=True)
    callback = ICLEvaluation(task, batch_size=4)
    trainer = _trainer(tmp_path, [callback, Accounting()])
    trainer.fit(module_factory(), helpers.token_loader(), helpers.token_loader(seed=1))

    with open(f"{trainer.log_dir}/metrics.csv") as f:
        logged = list(csv.DictReader(f))
    rows = [row for row in logged if row.get("icl/sent/acc@k0")]
    assert [int(row["step"]) for row in rows] == [0, 2, 4]  # baseline + two validations, no sanity check
    assert all(not row.get("train/tokens") for row in rows)  # Accounting alone logs tokens, at the same steps
    tokens = {int(row["step"]): float(row["train/tokens"]) for row in logged if row.get("train/tokens")}
    assert [tokens[int(row["step"])] for row in rows] == [0.0, 64.0, 128.0]  # 2 batches of 2 x 16 tokens
    for name in ("acc@k1", "acc_std@k1", "acc_norm@k0", "acc_calibrated@k1", "prompt_tokens@k1", "seconds"):
        assert rows[0][f"icl/sent/{name}"] != ""
    baseline = evaluate_checkpoint(tiny_checkpoint, [task], batch_size=4).metrics()
    assert float(rows[0]["icl/sent/acc_calibrated@k1"]) == pytest.approx(baseline["icl/sent/acc_calibrated@k1"])
    assert float(trainer.callback_metrics["icl/sent/acc@k0"]) == pytest.approx(float(rows[-1]["icl/sent/acc@k0"]))

    files = sorted((tmp_path / "run" / "version_0" / "icl_predictions").glob("*.jsonl"))
    assert [f.name for f in files] == ["step-00000000.jsonl", "step-00000002.jsonl", "step-00000004.jsonl"]
    first, last = ([json.loads(line) for line in f.read_text().splitlines()] for f in (files[0], files[-1]))
    assert len(first) == 7 * 2 * 2  # queries x shots x seeds
    assert {"query", "demos", "choices", "loglikelihoods", "prediction", "target", "acc"} <= set(first[0])
    assert first[0]["loglikelihoods"] != last[0]["loglikelihoods"]  # scored on the live, trained weights


def test_every_n_validations(tmp_path, module_factory, sentiment_task, helpers):
    trainer = _trainer(tmp_path, [ICLEvaluation(sentiment_task(), every_n_validations=2, log_predictions=False)])
    trainer.fit(module_factory(), helpers.token_loader(), helpers.token_loader(seed=1))
    with open(f"{trainer.log_dir}/metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("icl/sent/acc@k0")]
    assert steps == [0, 4]
    assert not (tmp_path / "run" / "version_0" / "icl_predictions").exists()


def test_training_is_identical_with_and_without_the_callback(tmp_path, module_factory, sentiment_task, helpers):
    losses = []
    for callbacks in ([], [ICLEvaluation(sentiment_task(shots=[0, 2], calibrate=True), batch_size=3)]):
        L.seed_everything(7)
        module = module_factory()
        _trainer(tmp_path, callbacks).fit(module, helpers.token_loader(), helpers.token_loader(seed=1))
        losses.append(module.losses)
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_too_long_prompt_fails_at_fit_start_before_any_step(tmp_path, module_factory, sentiment_task, review_files, helpers):
    _, queries_path = review_files
    records = helpers.reviews(3, 2)
    records[2]["text"] = "the lazy dog " * 100
    helpers.write_jsonl(queries_path, records)
    module = module_factory()
    trainer = _trainer(tmp_path, [ICLEvaluation(sentiment_task())])
    with pytest.raises(ICLTaskError, match=r"'sent': query .*queries.jsonl: row 3 \(k=0, seed=0\) needs \d+ tokens"):
        trainer.fit(module, helpers.token_loader(), helpers.token_loader(seed=1))
    assert module.losses == []


def test_module_without_the_protocol_is_rejected(tmp_path, module_factory, sentiment_task, helpers):
    module = module_factory()
    module.tokenizer = None
    with pytest.raises(TypeError, match="expose `model`.*and `tokenizer`"):
        _trainer(tmp_path, [ICLEvaluation(sentiment_task())]).fit(module, helpers.token_loader())


def test_two_callbacks_share_a_trainer(tmp_path, module_factory, sentiment_task, helpers):
    cheap, full = ICLEvaluation(sentiment_task(), log_predictions=False), ICLEvaluation(
        sentiment_task(name="full", shots=[0, 2], seeds=[0, 1]), every_n_validations=2, log_predictions=False)
    assert cheap.state_key != full.state_key
    trainer = _trainer(tmp_path, [cheap, full])
    trainer.fit(module_factory(), helpers.token_loader(), helpers.token_loader(seed=1))
    with open(f"{trainer.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r.get("icl/full/acc@k2")] == [0, 4]
    assert [int(r["step"]) for r in rows if r.get("icl/sent/acc@k0")] == [0, 2, 4]
