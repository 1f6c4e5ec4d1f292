from pathlib import Path

import pytest
import yaml

from lightning_adapt.cli import check_config, estimated_command, main
from lightning_adapt.compare.command import with_profile
from lightning_adapt.configs import CONFIGS_DIR, builtin_config_names, resolve_config_args
from lightning_adapt.data.records import resolve_builtin

CONFIGS = sorted(CONFIGS_DIR.rglob("*.yaml"))
NAMES = builtin_config_names()


def test_configs_exist():
    assert {"builtin:finetune/lora.yaml", "builtin:finetune/full.yaml", "builtin:cpt/domain.yaml",
            "builtin:icl/sentiment.yaml", "builtin:compare/demo.yaml"} <= set(NAMES)
    assert (Path(__file__).parents[1] / "configs").resolve() == CONFIGS_DIR.resolve()  # the repository's configs/


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_config_parses_against_current_signatures(path):
    config = check_config(path)
    assert config is not None


@pytest.mark.parametrize("name", NAMES)
def test_every_config_is_named_from_any_folder_by_the_command_its_first_line_gives(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout
    (path,) = resolve_config_args(["--config", name])[1:]
    first_line = Path(path).read_text().splitlines()[0].split()
    assert first_line[3:5] == ["--config", name]  # the command line it starts with runs as written
    assert resolve_config_args([f"--config={name}"]) == [f"--config={path}"]
    assert check_config(path) is not None
    if first_line[2] in ("finetune", "cpt"):
        assert estimated_command(resolve_config_args(["--config", name])) == (first_line[2], ["--config", path])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_the_data_a_config_names_is_shipped_or_the_config_says_how_to_write_it(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = path.read_text()
    values = list(_paths(yaml.safe_load(text)))
    for _, value in values:
        if value.startswith("builtin:"):
            assert Path(resolve_builtin(value)).is_file(), f"{path.name}: {value}"
    data_paths = [value for key, value in values if key in ("path", "val_path", "queries", "demos")]
    written = [value for value in data_paths if not value.startswith("builtin:")]
    for value in written:  # data a config writes itself (compare's biographies) or says how to write
        assert "biographies" in value and ("biographies:" in text or "python -m lightning_adapt.data.biographies" in text)


def _paths(config, key=None):
    """Every string of a config, with the key it is the value of."""
    if isinstance(config, dict):
        for child_key, child in config.items():
            yield from _paths(child, child_key)
    elif isinstance(config, list):
        for child in config:
            yield from _paths(child, key)
    elif isinstance(config, str):
        yield key, config


def test_an_unknown_shipped_config_is_refused_with_the_shipped_names(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["finetune", "--config", "builtin:finetune/lorra.yaml"])
    assert "--config builtin:finetune/lorra.yaml: no such shipped config" in str(refused.value)
    assert "builtin:finetune/lora.yaml" in str(refused.value)


def test_compare_takes_a_shipped_config_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert with_profile(["--config", "builtin:compare/sweep.yaml"]) == ["--config", str(CONFIGS_DIR / "compare" / "sweep.yaml")]


def test_print_config_of_a_shipped_config_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["finetune", "--config", "builtin:finetune/full.yaml", "--print_config"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "path: builtin:sentiment/train.jsonl" in printed and "lora: null" in printed


def test_a_misspelt_key_fails_to_parse(tmp_path):
    source = CONFIGS_DIR / "finetune" / "lora.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text(source.read_text().replace("learning_rate:", "learning_rat:"))
    with pytest.raises(SystemExit):
        check_config(broken)
