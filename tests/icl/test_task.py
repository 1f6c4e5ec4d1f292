import pytest
from jsonargparse import ArgumentParser

from lightning_adapt import DataError
from lightning_adapt.icl import DataSource, Generation, ICLEvaluation, ICLTask, ICLTaskError


def test_unknown_template_field_names_task_item_and_field(sentiment_task):
    with pytest.raises(ICLTaskError, match=r"ICL task 'sent': query .*queries.jsonl: row 1: field\(s\) \['txt'\] not found"):
        sentiment_task(template="Review: {txt}\nSentiment:").load()
    with pytest.raises(ICLTaskError, match=r"ICL task 'sent': query .*queries.jsonl: row 1: .*\['rating'\] not found"):
        ICLEvaluation(sentiment_task(target="rating"))  # raised when the callback is constructed


def test_target_not_among_choices_names_the_item(sentiment_task, review_files, helpers):
    _, queries_path = review_files
    records = helpers.reviews(4, 3)
    records[2]["label"] = "Neutral"
    helpers.write_jsonl(queries_path, records)
    with pytest.raises(ICLTaskError, match=r"'sent': query .*queries.jsonl: row 3: target 'Neutral' is not among the choices"):
        sentiment_task().load()


def test_per_example_choices_and_integer_targets(tmp_path, helpers):
    path = helpers.write_jsonl(tmp_path / "mc.jsonl", [{"q": "2+2", "options": ["3", "4"], "answer": 1}])
    task = ICLTask(name="mc", queries=str(path), template="{q} =", target="answer", choices="options", selection=None)
    data = task.load()
    assert task.choices_for(data.queries[0]) == ["3", "4"] and task.answer(data.queries[0]) == (1, "4")
    helpers.write_jsonl(path, [{"q": "2+2", "options": ["3", "4"], "answer": 2}])
    with pytest.raises(ICLTaskError, match=r"'mc': query .*mc.jsonl: row 1: target index 2 is out of range"):
        task.load()


def test_k_larger_than_the_pool_minus_the_query_itself(sentiment_task):
    sentiment_task(demos=None, shots=[6]).load()  # 7 queries: 6 others each
    with pytest.raises(ICLTaskError, match=r"'sent': k=7 .*pool has 7 \(6 once query .*queries.jsonl: row 1 itself is excluded\)"):
        sentiment_task(demos=None, shots=[0, 7]).load()
    with pytest.raises(ICLTaskError, match=r"'sent': k=11 .*pool has 10$"):
        sentiment_task(shots=[11]).load()


def test_balanced_needs_enough_examples_of_every_label(sentiment_task, review_files, helpers):
    demos_path, _ = review_files
    helpers.write_jsonl(demos_path, [r | {"label": "Positive"} for r in helpers.reviews(8, 5)] + helpers.reviews(2, 6))
    sentiment_task(shots=[6]).load()
    with pytest.raises(ICLTaskError, match=r"'sent': balanced k=6 needs 3 .*labelled 'Negative' for query .*queries.jsonl: row 1, .* only 1"):
        sentiment_task(shots=[6], balanced=True).load()


def test_empty_query_set_and_empty_subsample(sentiment_task, review_files):
    _, queries_path = review_files
    queries_path.write_text("")
    with pytest.raises(ICLTaskError, match=r"'sent': the query set .*queries.jsonl is empty"):
        sentiment_task().load()
    with pytest.raises(ICLTaskError, match="max_queries"):
        sentiment_task(max_queries=0)


def test_static_specification_errors(sentiment_task):
    with pytest.raises(ICLTaskError, match="exactly one of `choices`"):
        sentiment_task(generate=Generation())
    with pytest.raises(ICLTaskError, match="named fields"):
        sentiment_task(template="Review: {}")
    with pytest.raises(ICLTaskError, match="need a fixed list of `choices`"):
        sentiment_task(choices="options", calibrate=True)
    with pytest.raises(ICLTaskError, match="shots"):
        sentiment_task(shots=[-1])


def test_max_queries_is_a_seeded_subsample(sentiment_task):
    full = sentiment_task().load().queries
    data = sentiment_task(max_queries=3).load()
    subset = data.queries
    assert len(subset) == 3 and subset == [full[row] for row in data.query_rows]
    assert subset == sentiment_task(max_queries=3).load().queries
    assert subset != sentiment_task(max_queries=3, subsample_seed=1).load().queries


def test_task_from_yaml_through_jsonargparse(review_files):
    demos, queries = review_files
    parser = ArgumentParser()
    parser.add_argument("--task", type=ICLTask)
    config = parser.parse_string(
        f"task:\n  name: sent\n  queries: {queries}\n  demos: {{path: {demos}, split: train}}\n"
        "  template: \"Review: {text}\\nSentiment:\"\n  target: label\n  choices: [Positive, Negative]\n"
        "  shots: [0, 2]\n  calibrate: true\n"
    )
    task = parser.instantiate_classes(config).task
    assert isinstance(task, ICLTask) and task.demos == DataSource(str(demos)) and task.shots == [0, 2]
    assert task.template == "Review: {text}\nSentiment:" and len(task.load().queries) == 7


def test_sources_read_like_training_data_builtin_names_and_bad_rows(tmp_path):
    task = ICLTask(
        name="sentiment", queries="builtin:sentiment/test.jsonl", demos="builtin:sentiment/demos.jsonl",
        template="Review: {text}\nSentiment:", target="label", choices=["Positive", "Negative"], shots=[4],
    )
    data = task.load()
    assert len(data.queries) == 120 and len(data.demos) == 40
    bad = tmp_path / "queries.jsonl"
    bad.write_text('{"text": "fine", "label": "Positive"}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"queries.jsonl: row 2: not valid JSON"):
        ICLTask(name="s", queries=str(bad), template="{text}", target="label", choices=["Positive"]).load()
