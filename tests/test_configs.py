from pathlib import Path

import pytest

from lightning_adapt.cli import check_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))


def test_configs_exist():
    assert {"finetune/lora.yaml", "finetune/full.yaml"} <= {str(p.relative_to(p.parents[1])) for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_every_config_parses_against_current_signatures(path):
    config = check_config(path)
    assert config is not None


def test_a_misspelt_key_fails_to_parse(tmp_path):
    source = Path(__file__).parents[1] / "configs" / "finetune" / "lora.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text(source.read_text().replace("learning_rate:", "learning_rat:"))
    with pytest.raises(SystemExit):
        check_config(broken)
