"""The installed packages read every input format the README documents.

A broken combination of packages (e.g. numpy 1.x beside a pyarrow that needs numpy 2) fails here, fast and with
a message that names the packages, instead of deep inside a data module."""

import json
from importlib.metadata import version

import numpy as np
import pytest

from lightning_adapt.data.documents import read_documents
from lightning_adapt.data.records import read_hub_dataset, read_records

ROWS = [{"instruction": "Name the colour", "output": "red"}, {"instruction": "Name the fruit", "output": "pear"}]
REINSTALL = "Reinstall with the README's setup command, which installs the tested set (constraints.txt)."


def test_pyarrow_and_pandas_import_beside_the_installed_numpy():
    try:
        import pandas
        import pyarrow
    except ImportError as error:
        pytest.fail(f"pyarrow/pandas cannot be imported beside numpy {np.__version__}: {error}. {REINSTALL}")
    table = pyarrow.table({"x": np.arange(3)})
    assert table.to_pandas()["x"].tolist() == [0, 1, 2]
    assert pandas.DataFrame(ROWS).shape == (2, 2)


def test_litgpt_is_not_a_version_that_pins_numpy_below_2():
    litgpt = tuple(int(part) for part in version("litgpt").split(".")[:3])
    assert litgpt >= (0, 5, 13), f"litgpt {version('litgpt')} is older than the tested 0.5.13. {REINSTALL}"
    assert int(np.__version__.split(".")[0]) >= 2, f"numpy {np.__version__}: pyarrow needs numpy >= 2. {REINSTALL}"


def write(path, suffix, rows=ROWS):
    import pandas

    if suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    elif suffix == ".csv":
        pandas.DataFrame(rows).to_csv(path, index=False)
    else:
        pandas.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_each_documented_local_format_reads(tmp_path, suffix):
    records = read_records(write(tmp_path / f"rows{suffix}", suffix))
    assert [record.data for record in records] == ROWS
    assert [record.row for record in records] == [1, 2]


def test_a_datasets_folder_reads_through_the_hub_loader(tmp_path):
    """`datasets.load_dataset(NAME)` is the path a hub name takes; a local dataset folder runs it offline."""
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write(folder / "train.csv", ".csv")
    records = read_hub_dataset(str(folder), split="train")
    assert [record.data for record in records] == ROWS


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_text_corpus_reader_reads_each_row_format(tmp_path, suffix):
    texts = [row["instruction"] for row in ROWS]
    path = write(tmp_path / f"corpus{suffix}", suffix, rows=[{"text": text} for text in texts])
    assert [piece.text for piece in read_documents(str(path))] == texts


def test_litgpt_samples_greedily_at_temperature_zero():
    """litgpt <= 0.5.12 samples at temperature 1 when asked for temperature 0 (litgpt issue #2238): `litgpt
    generate --temperature 0` then answers SmolLM2's "capital of France" with a random continuation."""
    import torch
    from litgpt.generate.base import sample

    logits = torch.tensor([[[0.5, -1.2, 3.1, 0.8, -0.3, 2.7, -0.9, 1.4]]])
    torch.manual_seed(0)
    assert {sample(logits, temperature=0.0).item() for _ in range(50)} == {2}, f"litgpt {version('litgpt')}. {REINSTALL}"
