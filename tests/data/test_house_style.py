"""The house-style support data: the shipped splits are the generator's output, the style is the one the compare
configs check, the splits share no customer or wording, and the demo's replies and training examples fit SmolLM2
(tests/icl/test_bos.py checks that the support task's prompts and the lora-support examples are token-identical)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lightning_adapt import Instructions
from lightning_adapt.configs import CONFIGS_DIR
from lightning_adapt.data import house_style
from lightning_adapt.data.house_style import CATEGORIES, ITEMS, SIGN_OFF, SPLIT_SIZES, support_splits
from lightning_adapt.model.loading import load_tokenizer

SHIPPED = Path(house_style.__file__).parent / "builtin" / "support"
SPLITS = tuple(SPLIT_SIZES)
CONFIGS = [path for path in sorted((CONFIGS_DIR / "compare").glob("*.yaml"))
           if any(task["name"] == "support" for task in yaml.safe_load(path.read_text())["tasks"])]
PLAIN_REPLY = "Thanks for reaching out! We will look into your order and get back to you soon."


def load(split: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def support_task(path: Path) -> dict:
    return next(task for task in yaml.safe_load(path.read_text())["tasks"] if task["name"] == "support")


def support_run(path: Path) -> dict:
    return next(run for run in yaml.safe_load(path.read_text())["finetune"] if run["name"] == "lora-support")


def passes(check: dict, reply: str) -> bool:
    """A check as the contract defines it: the regex searched in the whitespace-stripped reply."""
    return re.search(check["regex"], reply.strip()) is not None


def phrasing_of(row: dict) -> str:
    """The category phrasing a request was written from (its opener, closer and product aside)."""
    (phrasing,) = [p for p in CATEGORIES[row["category"]].requests
                   if any(p.format(item=item) in row["request"] for item in ITEMS)]
    return phrasing


def test_the_shipped_files_are_the_generators_output(tmp_path):
    written = house_style.write_support_data(tmp_path)
    assert sorted(written) == sorted(SPLITS)
    for split, path in written.items():
        assert path.read_bytes() == (SHIPPED / f"{split}.jsonl").read_bytes(), (
            f"builtin/support/{split}.jsonl differs from the generator: run python -m lightning_adapt.data.house_style")
    assert support_splits(1) != support_splits(0) == support_splits(0)


def test_every_split_holds_every_category_equally():
    for split, size in SPLIT_SIZES.items():
        rows = load(split)
        assert len(rows) == size * len(CATEGORIES)
        assert all(set(row) == {"name", "request", "reply", "category"} for row in rows), split
        assert {category: sum(r["category"] == category for r in rows) for category in CATEGORIES} == dict.fromkeys(
            CATEGORIES, size)
        assert len({row["category"] for row in rows[:8]}) >= 4  # shuffled: a prefix (max_queries) mixes categories


def test_every_reply_is_in_the_house_style():
    tickets = []
    for split in SPLITS:
        for row in load(split):
            first = row["name"].split()[0]
            code = CATEGORIES[row["category"]].code
            match = re.fullmatch(rf"Hello {first},\n([^\n]+)\. Your ticket is #{code}-(\d{{4}})\.\n{SIGN_OFF}",
                                 row["reply"])
            assert match, row
            tickets.append(match[2])
            if "{item}" in CATEGORIES[row["category"]].acknowledgement:  # it names the product asked about
                (item,) = [item for item in ITEMS if re.search(rf"\b{item}\b", row["request"])]
                assert f"your {item}" in match[1], row
    assert len(set(tickets)) == len(tickets)  # every ticket number is issued once


def test_the_splits_share_no_customer_request_or_phrasing():
    rows = {split: load(split) for split in SPLITS}
    names = [row["name"] for split in SPLITS for row in rows[split]]
    assert len(set(names)) == len(names)
    for key in ("first name", "request", "phrasing"):
        seen: dict[str, str] = {}
        for split in SPLITS:
            values = {row["name"].split()[0] if key == "first name" else row["request"] if key == "request"
                      else phrasing_of(row) for row in rows[split]}
            shared = values & set(seen)
            assert not shared, f"{key}s {sorted(shared)[:3]} are in {split} and {seen[next(iter(shared))]}"
            seen |= dict.fromkeys(values, split)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_configs_checks_pass_on_every_reference_and_fail_on_a_plain_reply(path):
    checks = support_task(path)["generate"]["checks"]
    assert [check["name"] for check in checks] == ["greeting", "ticket_id", "signs_off"]
    for split in SPLITS:
        for row in load(split):
            assert all(passes(check, row["reply"]) for check in checks), (path.name, row["reply"])
            assert all(passes(check, row["reply"] + "\n") for check in checks)  # trailing whitespace is stripped
    assert not any(passes(check, PLAIN_REPLY) for check in checks)
    reply = load("test")[0]["reply"]
    broken = {"greeting": reply.replace("Hello ", "Hi "), "ticket_id": re.sub(r"#(\w\w)-", r"#\1", reply),
              "signs_off": reply.replace("Best regards,\n", "Best regards, ")}
    for check in checks:  # each check fails on a reply missing its own element only
        assert [passes(other, broken[check["name"]]) for other in checks] == [other is not check for other in checks]


def test_demo_and_quick_both_have_the_support_task_and_its_lora_run():
    assert {path.name for path in CONFIGS} == {"demo.yaml", "quick.yaml"}
    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        assert config["metric"]["support"] == "checks"
        assert support_run(path)["data"]["path"] == "builtin:support/train.jsonl"
        assert [run["name"] for run in config["finetune"]][0] == "lora"  # CPT→FT continues the sentiment LoRA


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_replies_fit_the_generation_budget_and_training_examples_fit_max_seq_length(path, smollm2_dir):
    task, run = support_task(path), support_run(path)
    tokenizer = load_tokenizer(smollm2_dir)
    stop = task["generate"]["stop"]
    lengths = [len(tokenizer.encode(task["target_delimiter"] + row["reply"] + stop[0])) for split in SPLITS
               for row in load(split)]
    assert 40 <= min(lengths) and max(lengths) <= min(61, task["generate"]["max_new_tokens"])  # the stop fits too
    data = run["data"]
    examples = Instructions(str(SHIPPED / "train.jsonl"), val_path=str(SHIPPED / "validation.jsonl"),
                            instruction_template=data["instruction_template"], output_template=data["output_template"],
                            prompt_style=data["prompt_style"])
    examples.connect(tokenizer=tokenizer, max_seq_length=run["max_seq_length"])
    examples.setup()  # refuses an example longer than max_seq_length
    longest = max(len(example["input_ids"]) for example in examples.train_dataset)
    assert run["max_seq_length"] - 8 <= longest <= run["max_seq_length"]  # enough, and not far more

