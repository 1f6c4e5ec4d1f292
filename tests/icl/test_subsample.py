"""`ICLEvaluation(subsample=N)`: a seeded subset of N queries per task at the evaluations between step 0 and the last
(the same subset every time and in every run), every query at step 0 and at the run's last point; resumed runs
continue alike; `compare`'s `icl_subsample` reaches every trained run's callback."""

import csv
import json
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from lightning_adapt.compare.launch import evaluations
from lightning_adapt.icl import ICLEvaluation
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.compare.command import parse_compare
from tests.test_compare_search import SEARCH_YAML, comparison

QUERIES = 7  # the sentiment fixture's query file
SUBSAMPLE = 3


def _trainer(root: Path, callbacks: list, **kwargs) -> L.Trainer:
    flags = dict(accelerator="cpu", devices=1, max_steps=6, val_check_interval=2, limit_val_batches=1,
                 num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False)
    return L.Trainer(**(flags | kwargs), logger=CSVLogger(root, name="run"), callbacks=callbacks)


def _fit(trainer: L.Trainer, module_factory, helpers, **kwargs) -> L.LightningModule:
    module = module_factory()
    trainer.fit(module, helpers.token_loader(), helpers.token_loader(seed=1), **kwargs)
    return module


def _queries_by_step(trainer: L.Trainer) -> dict[int, int]:
    with open(f"{trainer.log_dir}/metrics.csv") as f:
        return {int(row["step"]): int(float(row["icl/sent/queries"])) for row in csv.DictReader(f)
                if row.get("icl/sent/queries")}


def _scored(trainer: L.Trainer) -> dict[int, list[int]]:
    """step -> the query rows its predictions file holds (seed 0, k=0)."""
    found = {}
    for path in sorted(Path(trainer.log_dir, "icl_predictions").glob("step-*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        found[int(path.stem.removeprefix("step-"))] = [r["query"] for r in records if (r["k"], r["seed"]) == (0, 0)]
    return found


def test_the_subset_is_seeded_sorted_and_the_same_on_every_load(sentiment_task):
    first, again = sentiment_task().load(), sentiment_task().load()
    chosen = first.subsample(SUBSAMPLE)
    assert chosen == again.subsample(SUBSAMPLE) == sorted(chosen) and len(set(chosen)) == SUBSAMPLE
    assert first.subsample(QUERIES) == first.subsample(QUERIES + 5) == list(range(QUERIES))  # no subset to draw
    assert sentiment_task(subsample_seed=1).load().subsample(SUBSAMPLE) != chosen  # the task's subsample_seed


def test_a_subsampled_run_scores_exactly_the_subset_of_a_full_run(sentiment_task, tiny_model):
    model, tokenizer = tiny_model
    task = sentiment_task(shots=[0, 2], seeds=[0, 1], calibrate=True)
    runner = ICLRunner([task])
    runner.prepare(tokenizer, model.config.block_size)
    full, part = runner.run(model, tokenizer, 4), runner.run(model, tokenizer, 4, subsample=SUBSAMPLE)
    chosen = runner.data[0].subsample(SUBSAMPLE)
    assert (full.queries, part.queries) == ({"sent": QUERIES}, {"sent": SUBSAMPLE})
    assert full.metrics()["icl/sent/queries"] == QUERIES and part.metrics()["icl/sent/queries"] == SUBSAMPLE
    expected = [r for r in full.predictions if r["query"] in chosen]
    assert len(part.predictions) == SUBSAMPLE * 2 * 2  # queries x shots x seeds
    for mine, theirs in zip(part.predictions, expected):  # the same prompts, the same numbers
        assert {key: mine[key] for key in ("k", "seed", "query", "demos", "prediction", "acc", "acc_calibrated")} == {
            key: theirs[key] for key in ("k", "seed", "query", "demos", "prediction", "acc", "acc_calibrated")}
        assert mine["loglikelihoods"] == pytest.approx(theirs["loglikelihoods"], abs=1e-5)


def test_full_at_step_zero_and_at_max_steps_the_same_subset_between(tmp_path, module_factory, sentiment_task, helpers):
    trainer = _trainer(tmp_path, [ICLEvaluation(sentiment_task(), batch_size=4, subsample=SUBSAMPLE)])
    _fit(trainer, module_factory, helpers)
    assert _queries_by_step(trainer) == {0: QUERIES, 2: SUBSAMPLE, 4: SUBSAMPLE, 6: QUERIES}
    scored = _scored(trainer)
    assert scored[0] == scored[6] == list(range(QUERIES))
    assert scored[2] == scored[4] == sentiment_task().load().subsample(SUBSAMPLE)

    again = _trainer(tmp_path / "again", [ICLEvaluation(sentiment_task(), subsample=SUBSAMPLE)])  # another run
    _fit(again, module_factory, helpers)
    assert _scored(again)[2] == scored[2]


def test_a_run_that_ends_after_its_last_evaluation_is_scored_whole_at_the_end(tmp_path, module_factory,
                                                                               sentiment_task, helpers):
    """Validations at 2, 4, 6 with every other one evaluated: step 4 subsampled, the final step 6 at train end."""
    callback = ICLEvaluation(sentiment_task(), every_n_validations=2, subsample=SUBSAMPLE)
    trainer = _trainer(tmp_path, [callback])
    _fit(trainer, module_factory, helpers)
    assert _queries_by_step(trainer) == {0: QUERIES, 4: SUBSAMPLE, 6: QUERIES}
    assert callback.results.queries == {"sent": QUERIES}

    plain = _trainer(tmp_path / "plain", [ICLEvaluation(sentiment_task(), every_n_validations=2)])
    _fit(plain, module_factory, helpers)  # without a subsample nothing changes: no evaluation at the end
    assert _queries_by_step(plain) == {0: QUERIES, 4: QUERIES}


def test_a_resumed_run_continues_its_count_and_its_subset(tmp_path, module_factory, sentiment_task, helpers):
    """Stopped at step 2 and resumed to 8 with every other validation evaluated: the restored count evaluates at 4 and
    8 (not 6), the resumed start (step 2) and step 4 on the same subset, the end whole."""
    def callback() -> ICLEvaluation:
        return ICLEvaluation(sentiment_task(), every_n_validations=2, subsample=SUBSAMPLE)

    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)
    first = _trainer(tmp_path / "first", [callback(), checkpoints], max_steps=2, enable_checkpointing=True)
    _fit(first, module_factory, helpers)
    resumed = _trainer(tmp_path / "resumed", [callback()], max_steps=8)
    _fit(resumed, module_factory, helpers, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert _queries_by_step(resumed) == {2: SUBSAMPLE, 4: SUBSAMPLE, 8: QUERIES}
    subset = sentiment_task().load().subsample(SUBSAMPLE)
    assert _scored(resumed) == {2: subset, 4: subset, 8: list(range(QUERIES))}


def test_the_subsample_is_part_of_the_state_key(sentiment_task):
    plain, budget = ICLEvaluation(sentiment_task()), ICLEvaluation(sentiment_task(), subsample=SUBSAMPLE)
    assert plain.state_key != budget.state_key
    assert "subsample" not in plain.state_key  # the keys of checkpoints written without one are unchanged


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_a_subsample_of_no_queries_is_refused(sentiment_task, value):
    with pytest.raises(ValueError, match=rf"^ICLEvaluation\(subsample={value!r}\): give the number of queries per "
                                         r"task \(an integer >= 1\)"):
        ICLEvaluation(sentiment_task(), subsample=value)


def test_compare_passes_its_icl_subsample_to_every_trained_runs_callback(sentiment_task):
    tasks = {"tasks": [sentiment_task()], "general_tasks": [sentiment_task(name="general")]}
    [compared, forgetting] = evaluations(comparison(icl_subsample=16, **tasks))
    assert (compared.subsample, forgetting.subsample) == (16, None)  # general tasks: every query, every time
    assert evaluations(comparison(**tasks))[0].subsample is None
    with pytest.raises(ValueError, match=r"^Compare.icl_subsample=0: give the number of queries per task \(>= 1\)"):
        comparison(icl_subsample=0)


def test_a_compare_yaml_sets_icl_subsample(tmp_path):
    (tmp_path / "compare.yaml").write_text(SEARCH_YAML + "icl_subsample: 16\n")
    assert parse_compare(["--config", str(tmp_path / "compare.yaml")]).icl_subsample == 16
