import pytest

from lightning_adapt.icl import ICLResults
from lightning_adapt.icl.keys import ICLKey, icl_key, parse_icl_key


@pytest.mark.parametrize(
    "key",
    [ICLKey("sent", "acc", 4), ICLKey("sent", "acc", 4, std=True), ICLKey("sent", "acc_calibrated", 0),
     ICLKey("org/task", "exact_match", 8), ICLKey("sent", "seconds")],
)
def test_a_key_reads_back_as_what_built_it(key):
    assert parse_icl_key(icl_key(key.task, key.metric, key.k, key.std)) == key


@pytest.mark.parametrize("key", ["train/loss", "icl/sent", "icl/sent/acc@kx", "icl/sent/acc", "val/general_loss"])
def test_other_keys_are_not_icl_keys(key):
    assert parse_icl_key(key) is None


def test_results_log_under_the_key_vocabulary():
    results = ICLResults(rows=[{"task": "sent", "k": 4, "seed": s, "acc": a} for s, a in ((0, 0.5), (1, 0.7))],
                         seconds={"sent": 2.0})
    assert {parse_icl_key(key) for key in results.metrics()} == {
        ICLKey("sent", "acc", 4), ICLKey("sent", "acc", 4, std=True), ICLKey("sent", "seconds")}
