from pathlib import Path

from jsonargparse import ArgumentParser

from lightning_adapt.icl import ICLTask, evaluate_checkpoint, format_table
from lightning_adapt.icl.runner import ICLRunner

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "icl").glob("*.yaml"))


def test_every_icl_config_parses_against_evaluate_checkpoint():
    assert CONFIGS
    for path in CONFIGS:
        parser = ArgumentParser()
        parser.add_function_arguments(evaluate_checkpoint)
        config = parser.instantiate_classes(parser.parse_path(path))
        assert config.tasks and all(isinstance(task, ICLTask) for task in config.tasks), path


def test_sentiment_config_is_the_documented_task():
    parser = ArgumentParser()
    parser.add_function_arguments(evaluate_checkpoint)
    (task,) = parser.instantiate_classes(parser.parse_path(CONFIGS[[p.name for p in CONFIGS].index("sentiment.yaml")])).tasks
    assert task.template == "Review: {text}\nSentiment:" and task.choices == ["Positive", "Negative"]
    assert task.shots == [0, 1, 4, 8] and task.seeds == [0, 1, 2] and task.calibrate


def test_evaluate_checkpoint_runs_the_callback_code_path(tiny_checkpoint, tiny_model, sentiment_task):
    model, tokenizer = tiny_model
    task = sentiment_task(shots=[0, 2], seeds=[0, 1, 2], calibrate=True)
    results = evaluate_checkpoint(tiny_checkpoint, [task], seeds=[0, 1], batch_size=4)
    runner = ICLRunner([sentiment_task(shots=[0, 2], seeds=[0, 1], calibrate=True)])
    runner.prepare(tokenizer, model.config.block_size)
    assert results.rows == runner.run(model, tokenizer, batch_size=4).rows
    assert {(row["k"], row["seed"]) for row in results.rows} == {(0, 0), (0, 1), (2, 0), (2, 1)}
    lines = format_table(results).splitlines()
    assert lines[0].startswith("sent (2 seed(s), ")
    assert [c.strip() for c in lines[1].split(" | ")] == ["k", "acc", "acc_norm", "acc_calibrated", "prompt_tokens"]
    assert [line.split(" | ")[0].strip() for line in lines[3:]] == ["0", "2"]
