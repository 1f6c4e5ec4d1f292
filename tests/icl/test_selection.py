"""The held-out split of a task's queries: disjoint, seeded, independent of the file's order, from a file of its own,
and written into every prediction record."""

import pytest
from jsonargparse import ArgumentParser

from lightning_adapt.icl import ICLTask, ICLTaskError, Selection, evaluate_checkpoint
from lightning_adapt.icl.task import record_key
from lightning_adapt.record.predictions import SELECTION, TEST, outcomes


def parts_by_text(data) -> dict[str, str]:
    return {query["text"]: part for query, part in zip(data.queries, data.query_parts)}


@pytest.fixture
def many_queries(review_files, helpers):
    """Write 20 distinct reviews as the queries."""
    _, queries_path = review_files
    records = [r | {"text": f"{r['text']} {i}"} for i, r in enumerate(helpers.reviews(20, 4))]
    helpers.write_jsonl(queries_path, records)
    return records


def test_the_split_is_disjoint_sized_and_seeded(sentiment_task, many_queries):
    data = sentiment_task().load()
    assert len(data.query_parts) == 20 and data.query_parts.count(SELECTION) == 5  # 25% of 20
    assert set(data.query_parts) == {SELECTION, TEST}
    same = sentiment_task(selection=Selection(seed=0)).load()
    assert same.query_parts == data.query_parts
    other = sentiment_task(selection=Selection(seed=1)).load()
    assert other.query_parts != data.query_parts
    half = sentiment_task(selection={"fraction": 0.5, "seed": 1}).load()
    assert half.query_parts.count(SELECTION) == 10


def test_the_split_does_not_depend_on_the_order_of_the_query_file(sentiment_task, review_files, many_queries, helpers):
    before = parts_by_text(sentiment_task().load())
    helpers.write_jsonl(review_files[1], many_queries[::-1])
    after = parts_by_text(sentiment_task().load())
    assert after == before


def test_max_queries_are_drawn_before_the_split(sentiment_task, many_queries):
    data = sentiment_task(max_queries=8).load()
    assert len(data.queries) == 8 and data.query_parts.count(SELECTION) == 2


def test_a_selection_file_holds_the_selection_part(sentiment_task, review_files, tmp_path, helpers, tiny_checkpoint):
    extra = helpers.write_jsonl(tmp_path / "selection.jsonl", helpers.reviews(3, 9))
    task = sentiment_task(selection={"path": str(extra)})
    data = task.load()
    assert data.query_parts == [TEST] * 7 + [SELECTION] * 3
    assert data.query_rows == list(range(7)) + [0, 1, 2]
    assert data.query_where[-1].endswith("selection.jsonl: row 3")
    results = evaluate_checkpoint(tiny_checkpoint, [task], progress=False)
    records = results.predictions
    assert [(r["query"], r["part"]) for r in records if r["part"] == SELECTION] == [(0, SELECTION), (1, SELECTION),
                                                                                    (2, SELECTION)]
    assert sorted(outcomes(records, "sent", "acc", 0, part=SELECTION)[0]) == [(None, 0), (None, 1), (None, 2)]
    assert sorted(outcomes(records, "sent", "acc", 0, part=TEST)[0]) == [(None, i) for i in range(7)]
    assert results.rows[0]["acc"] == pytest.approx(sum(r["acc"] for r in records) / 10)  # logged: every query


def test_bad_selection_files_are_named(sentiment_task, tmp_path, helpers):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ICLTaskError, match=r"'sent': the selection queries .*empty.jsonl \(selection.path\) are empty"):
        sentiment_task(selection={"path": str(empty)}).load()
    bad = helpers.write_jsonl(tmp_path / "bad.jsonl", [{"txt": "x", "label": "Positive"}])
    with pytest.raises(ICLTaskError, match=r"'sent': query .*bad.jsonl: row 1: field\(s\) \['text'\] not found"):
        sentiment_task(selection={"path": str(bad)}).load()


def test_a_split_that_leaves_a_part_empty_names_the_task(sentiment_task, review_files, helpers):
    helpers.write_jsonl(review_files[1], helpers.reviews(1, 0))
    with pytest.raises(ICLTaskError, match=r"ICL task 'sent': selection.fraction=0.25 of 1 queries leaves no test"):
        sentiment_task().load()
    assert sentiment_task(selection=None).load().query_parts is None
    with pytest.raises(ICLTaskError, match="must lie strictly between 0 and 1"):
        sentiment_task(selection={"fraction": 1.0})


def test_identical_queries_share_their_part(sentiment_task, review_files, helpers):
    records = helpers.reviews(8, 2)
    helpers.write_jsonl(review_files[1], records + records)
    data = sentiment_task().load()
    parts = {}
    for query, part in zip(data.queries, data.query_parts):
        assert parts.setdefault(record_key(query), part) == part


def test_predictions_name_their_part_and_no_split_writes_none(sentiment_task, tiny_checkpoint):
    split = evaluate_checkpoint(tiny_checkpoint, [sentiment_task()], progress=False).predictions
    assert sorted(r["part"] for r in split) == [SELECTION] * 2 + [TEST] * 5  # 7 queries: round(1.75) = 2
    plain = evaluate_checkpoint(tiny_checkpoint, [sentiment_task(selection=None)], progress=False).predictions
    assert all("part" not in r for r in plain)


def test_a_config_gives_the_selection(review_files):
    parser = ArgumentParser()
    parser.add_argument("--task", type=ICLTask)
    demos, queries = review_files
    parsed = parser.parse_args(["--task", f'{{"name": "s", "queries": "{queries}", "template": "{{text}}", '
                                          '"target": "label", "choices": ["Positive", "Negative"], '
                                          '"selection": {"fraction": 0.5, "seed": 2}}'])
    task = parser.instantiate_classes(parsed).task
    assert task.selection == Selection(fraction=0.5, seed=2)
    assert ICLTask(name="s", queries=str(queries), template="{text}", target="label", choices=["a"]).selection == \
        Selection()
