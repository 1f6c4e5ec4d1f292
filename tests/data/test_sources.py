"""One set of rules for what a data source names, whichever reader uses it (Instructions, ICL tasks, TextCorpus)."""

import json

import pytest

from lightning_adapt.data.documents import read_documents
from lightning_adapt.data.records import DataError, read_records, resolve_files


def write_rows(path, texts):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps({"text": text}) for text in texts) + "\n")


def test_folders_are_read_recursively_in_order_without_hidden_files(tmp_path):
    write_rows(tmp_path / "data" / "b.jsonl", ["b"])
    write_rows(tmp_path / "data" / "a" / "a.jsonl", ["a"])
    write_rows(tmp_path / "data" / ".hidden.jsonl", ["hidden"])
    (tmp_path / "data" / "notes.md").write_text("not rows")
    assert [r.data["text"] for r in read_records(tmp_path / "data")] == ["a", "b"]
    assert [p.text for p in read_documents(str(tmp_path / "data"))] == ["a", "b", "not rows"]


@pytest.mark.parametrize("reader", [read_records, lambda source: list(read_documents(source))])
def test_missing_local_paths_are_errors_and_hub_names_are_hub_names(tmp_path, reader):
    for missing in (str(tmp_path / "nope.jsonl"), str(tmp_path / "nope"), "./nope", "builtin:nope.jsonl"):
        with pytest.raises(DataError, match="does not exist"):
            reader(missing)
    with pytest.raises(DataError, match="No file matches"):
        reader(str(tmp_path / "*.jsonl"))
    assert resolve_files("imdb") is None and resolve_files("stanfordnlp/imdb") is None
