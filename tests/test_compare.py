import contextlib
import csv
import dataclasses
import io
import os
import re
import subprocess
import sys
import json
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import pytest
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch.loggers import CSVLogger
from litgpt import Tokenizer

from lightning_adapt import AdapterV2, FineTuning, Instructions, LoRA, Optimization, Replay, Rewarming, TextCorpus
from lightning_adapt.record.accounting import Accounting
from lightning_adapt.cli import main
from lightning_adapt.compare import Compare, run_compare
from lightning_adapt.compare.command import PROFILES, compare_command, parse_compare, with_profile
from lightning_adapt.compare.run import check_sweep_data, dry_run
from lightning_adapt.compare.settings import Biographies, CPTSettings, FineTuneSettings, SweepSizes
from lightning_adapt.icl import ICLEvaluation, ICLTask
from lightning_adapt.compare.config import SHARED_DEFAULTS
from lightning_adapt.compare.launch import build_run
from lightning_adapt.compare.settings import SET_PER_RUN, SHARED
from lightning_adapt.methods import ContinualPretraining
from lightning_adapt.methods.cpt import GENERAL_TEXT
from lightning_adapt.verdict import run as verdict_run
from lightning_adapt.verdict.command import report_command
from lightning_adapt.verdict.run import load_run
from lightning_adapt.verdict.summary import report_data

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "compare").glob("*.yaml"))
WORDS = {"Positive": "the food was great and the service friendly", "Negative": "the film was boring and far too long"}


def reviews(n: int, offset: int = 0) -> list[dict]:
    """Short reviews the tiny tokenizer knows, labels alternating."""
    labels = list(WORDS)
    return [{"text": f"{WORDS[labels[i % 2]]} {i + offset}", "label": labels[i % 2]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_checkpoint):
    """A tiny comparison, run once for the module's tests: every method, a few steps each, and two fine-tuning
    variants side by side (LoRA; full fine-tuning swept over 4 and 8 training examples; Adapter V2)."""
    root = tmp_path_factory.mktemp("compare")
    bio = root / "bio"
    tasks = [
        ICLTask(name="sent", queries=write_jsonl(root / "queries.jsonl", reviews(8, 100)),
                demos=write_jsonl(root / "demos.jsonl", reviews(6, 200)), template="Review: {text}\nSentiment:",
                target="label", choices=["Positive", "Negative"], shots=[0, 1], seeds=[0, 1], calibrate=True),
        ICLTask(name="probe", queries=str(bio / "probe.jsonl"), template="{prompt}", target="answer", choices="choices",
                max_queries=8),
    ]
    finetune = FineTuneSettings(
        Instructions(write_jsonl(root / "train.jsonl", reviews(16)), val_path=write_jsonl(root / "val.jsonl", reviews(4, 50)),
                     instruction_template="Review: {text}\nSentiment:", output_field="label", batch_size=4),
        lora=LoRA(r=4), max_steps=4, val_check_interval=2,
        optimization=Optimization(learning_rate=3e-3, warmup_steps=1), max_seq_length=64,
    )
    full = replace(finetune, lora=None, name="full", optimization=Optimization(learning_rate=1e-3, warmup_steps=1))
    adapter = replace(finetune, lora=None, technique=AdapterV2(adapter_prompt_length=4, adapter_start_layer=1))
    cpt = CPTSettings(TextCorpus(str(bio / "corpus"), val_path=str(bio / "heldout"), batch_size=4,
                                 replay=Replay("builtin:general_text.txt", 0.25)),
                      max_steps=4, val_check_interval=2, optimization=Rewarming(learning_rate=3e-3, warmup_steps=1),
                      max_seq_length=32)
    compare = Compare(
        checkpoint_dir=tiny_checkpoint, tasks=tasks, out_dir=root / "out", methods=["icl", "finetune", "cpt", "cpt+finetune"],
        finetune=[finetune, full, adapter], cpt=cpt, sweep={"full": SweepSizes(examples=[4, 8])},
        biographies=Biographies(str(bio), n_people=4), general_val_blocks=1,
        general_tasks=[ICLTask(name="general", queries=write_jsonl(root / "general.jsonl", reviews(6, 300)),
                               template="Text: {text}\nLabel:", target="label", choices=["Positive", "Negative"])],
        trainer={"accelerator": "cpu", "enable_progress_bar": False, "limit_val_batches": 1},
    )
    console = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:  # compare reports from what it measured, never from its files
        for reader in ("load_run", "read_metrics", "read_predictions"):
            patch.setattr(verdict_run, reader, refuse_reading)
        with contextlib.redirect_stdout(console):
            report_dir = run_compare(compare)
    (root / CONSOLE).write_text(console.getvalue())
    return compare, report_dir


CONSOLE = "console.txt"
"""What the module's comparison printed, beside its out_dir."""


def refuse_reading(*args, **kwargs):
    raise AssertionError(f"compare read a run's files back: {args}")


def metrics(log_dir: Path) -> list[dict]:
    with open(log_dir / "metrics.csv") as fp:
        return list(csv.DictReader(fp))


def values(log_dir: Path, key: str) -> list[float]:
    return [float(row[key]) for row in metrics(log_dir) if row.get(key)]


def mean_on_test_queries(log_dir: Path, step: int, k: int) -> float:
    """The mean accuracy on task sent's test queries (every seed) in the predictions file of the evaluation at `step`."""
    records = [json.loads(line) for line in (log_dir / "icl_predictions" / f"step-{step:08d}.jsonl").read_text().splitlines()]
    scores = [r["acc"] for r in records if (r["task"], r["k"], r.get("docs", 0), r["part"]) == ("sent", k, 0, "test")]
    return sum(scores) / len(scores)


def test_compare_writes_every_run_and_the_report(setup):
    compare, report_dir = setup
    assert sorted(p.name for p in report_dir.iterdir()) == [
        ".lightning-adapt-output.json", "cost.png", "data.png", "forgetting.png", "report.html", "report.json", "report.md",
        "timeline.png"]
    runs = compare.out_dir / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["adapter_v2", "cpt", "cpt+lora", "full-n4", "full-n8", "icl", "lora"]
    for name in ("icl", "lora", "full-n4", "full-n8", "adapter_v2", "cpt", "cpt+lora"):
        assert (runs / name / "logs" / "version_0" / "accounting.json").is_file()
    assert (runs / "cpt" / "final" / "lit_model.pth").is_file() and (runs / "lora" / "final" / "lit_model.pth.lora").is_file()
    report = json.loads((report_dir / "report.json").read_text())
    assert (runs / "adapter_v2" / "final" / "lit_model.pth.adapter_v2").is_file()
    assert [r["method"] for r in report["runs"]] == ["icl", "lora", "full-n4", "full-n8", "adapter_v2", "cpt", "cpt+lora"]
    assert report["compare"]["methods"] == ["icl", "finetune", "cpt", "cpt+finetune"]
    assert set(report["tasks"]) == {"sent", "probe"}
    assert "## Six dimensions, measured" in (report_dir / "report.md").read_text()


def test_general_tasks_are_scored_on_every_trained_run_and_shown_as_forgetting(setup):
    compare, report_dir = setup
    report = json.loads((report_dir / "report.json").read_text())
    assert "general" not in report["tasks"]  # not compared between methods
    general = report["general_tasks"]["general"]
    assert (general["metric"], general["k"]) == ("acc", 0)
    assert sorted(general["runs"]) == ["adapter_v2", "cpt", "cpt+lora", "full-n4", "full-n8", "lora"]
    runs = {r["method"]: r for r in report["runs"]}
    for name, curve in general["runs"].items():
        scores = values(Path(runs[name]["log_dir"]), "icl/general/acc@k0")
        assert [p["score"] for p in curve] == scores and [p["step"] for p in curve] == [0, 2, 4]
    lora, cpt, chained = general["runs"]["lora"], general["runs"]["cpt"], general["runs"]["cpt+lora"]
    assert lora[0]["change"] == 0.0 and lora[-1]["change"] == pytest.approx(lora[-1]["score"] - lora[0]["score"])
    assert chained[0]["change"] == pytest.approx(cpt[-1]["change"])  # CPT→FT continues from CPT's change
    assert not (Path(runs["icl"]["log_dir"]) / "general_predictions").exists()
    assert (Path(runs["lora"]["log_dir"]) / "general_predictions" / "step-00000004.jsonl").is_file()
    text = (report_dir / "report.md").read_text()
    assert "General-ability tasks" in text and "| lora | general acc (k=0) |" in text


def test_report_numbers_agree_with_the_loggers(setup):
    compare, report_dir = setup
    report = json.loads((report_dir / "report.json").read_text())
    runs = {r["method"]: r for r in report["runs"]}
    for name in ("lora", "cpt", "cpt+lora"):
        log_dir = Path(runs[name]["log_dir"])
        assert runs[name]["training_flops"] == values(log_dir, "flops/train")[-1]
        assert runs[name]["train_tokens"] == values(log_dir, "train/tokens")[-1]
        assert runs[name]["wall_seconds"] == values(log_dir, "time/wall_s")[-1]
        assert runs[name]["train_seconds"] == values(log_dir, "time/train_s")[-1]
        assert runs[name]["eval_seconds"] == values(log_dir, "time/eval_s")[-1]
        assert runs[name]["peak_memory_bytes"] == max(values(log_dir, "memory/peak_bytes"))
        assert runs[name]["params_trainable"] == values(log_dir, "params/trainable")[0]
        steps = [int(row["step"]) for row in metrics(log_dir) if row.get("icl/sent/acc@k0")]
        timeline = report["tasks"]["sent"]["arms"][name]["timeline"]
        assert [(p["step"], p["score"]) for p in timeline] == [(step, mean_on_test_queries(log_dir, step, k=0)) for step in steps]
        assert steps == [0, 2, 4]
    assert runs["cpt+lora"]["cumulative_flops"] == runs["cpt"]["training_flops"] + runs["cpt+lora"]["training_flops"]
    icl_log = Path(runs["icl"]["log_dir"])
    shots = report["tasks"]["sent"]["icl"]["points"]
    assert shots["k=1"]["mean"] == pytest.approx(mean_on_test_queries(icl_log, 0, k=1))  # the test part of every seed's queries
    assert shots["k=1"]["prompt_tokens"] == values(icl_log, "icl/sent/prompt_tokens@k1")[0]
    # the LoRA run's step-0 evaluation is the base model's 0-shot ICL score
    assert report["tasks"]["sent"]["arms"]["lora"]["timeline"][0]["score"] == shots["k=0"]["mean"]
    # the ICL-only run wrote its step-0 predictions as ICLEvaluation does, so every score has a 95% interval
    assert (icl_log / "icl_predictions" / "step-00000000.jsonl").is_file()
    assert all(v["interval"][0] <= v["mean"] <= v["interval"][1] for v in shots.values())
    assert all(p["interval"] for p in report["tasks"]["sent"]["arms"]["lora"]["timeline"])
    assert all("queries" in line for line in report["tasks"]["sent"]["recommendation"]["reasons"])  # paired


def test_the_report_compare_built_in_memory_is_the_one_its_files_give(setup):
    """What compare measured in memory (metrics, predictions, records) is what `lightning-adapt report` reads back from
    the same run folders: report.json is the same, number for number."""
    compare, report_dir = setup
    written = json.loads((report_dir / "report.json").read_text())
    runs = [load_run(run["log_dir"]) for run in written["runs"]]
    from_files = report_data(runs, compare.metric, compare.answer_tokens, compare.margin, extra=None)
    assert from_files == {key: value for key, value in written.items() if key != "compare"}


def module_defaults(module_class) -> dict:
    """Every constructor option of a training module and its default, as the module's own command reads them."""
    parser = ArgumentParser()
    parser.add_class_arguments(module_class, "model", fail_untyped=False)
    return parser.get_defaults().model.as_dict()


def plain(value):
    return asdict(value) if dataclasses.is_dataclass(value) else value


@pytest.mark.parametrize("settings_class", [FineTuneSettings, CPTSettings], ids=["finetune", "cpt"])
def test_every_module_option_is_a_compare_setting_with_the_modules_default(settings_class):
    module = settings_class.module_class
    fields = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
              for f in dataclasses.fields(settings_class)}
    compare_fields = {f.name: f.default for f in dataclasses.fields(Compare)}
    for option, default in module_defaults(module).items():
        if option in SET_PER_RUN:  # the base and folder of each run
            continue
        if option in SHARED:  # one value for every run: ContinualPretraining's default, forgetting measured in each
            assert compare_fields[option] == SHARED_DEFAULTS[option] == module_defaults(ContinualPretraining)[option]
            assert default == compare_fields[option] or (module.__name__, option) == ("FineTuning", "general_val")
            continue
        assert option in fields, f"{module.__name__}({option}=...) cannot be set from a compare config"
        assert plain(fields[option]) == default, option
    assert compare_fields["general_val"] == GENERAL_TEXT and compare_fields["general_val_blocks"] == 8
    assert compare_fields["general_val_length"] is None  # the modules' bounded default, one length for every run
    assert set(fields) - set(module_defaults(module)) == {"data", "max_steps", "val_check_interval", "name", "search"}


def test_every_setting_of_a_run_reaches_its_module(setup, tmp_path, tiny_checkpoint):
    compare, _ = setup
    lora = replace(compare.variants("finetune")[0], activation_checkpointing=True, max_seq_length=48)
    changed = replace(compare, finetune=lora, sweep={}, general_val_blocks=2, general_val_length=24, export=False)
    run = next(run for run in changed.planned_runs() if run.name == "lora")
    module, data = build_run(changed, run, tiny_checkpoint, tmp_path / "lora")
    assert module.hparams.activation_checkpointing and module.max_seq_length == 48
    assert module.hparams.general_val_blocks == 2 and module.export_settings is None
    assert module.general_val_length == 24
    assert Path(module.hparams.out_dir) == tmp_path / "lora"
    assert data == lora.data and data is not lora.data


def single_finetune_quick(folder: Path) -> str:
    """The shipped quick profile with one fine-tuning settings (its first, LoRA on the reviews, named by its technique)
    instead of a list, whose keys the command line can then set one by one (`--finetune.max_steps 20`)."""
    config = yaml.safe_load(next(p for p in CONFIGS if p.name == "quick.yaml").read_text())
    config["finetune"] = {key: value for key, value in config["finetune"][0].items() if key != "name"}
    path = folder / "quick-single.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_module_option_is_a_key_of_a_compare_yaml(tmp_path):
    quick = single_finetune_quick(tmp_path)
    compare = parse_compare(["--config", quick, "--finetune.activation_checkpointing", "true"])
    assert compare.finetune.activation_checkpointing and not compare.cpt.activation_checkpointing
    assert compare.general_val_blocks == 4  # the shipped quick profile sets it


@pytest.mark.slow
def test_report_from_separately_launched_runs_matches_compare(setup, tmp_path, tiny_checkpoint):
    """A LoRA run launched in Python and a CPT run launched with `lightning-adapt cpt`, each with its own Trainer
    settings, give the same numbers as compare's runs (times and memory aside)."""
    compare, report_dir = setup
    tasks = [replace(task, shots=[0], seeds=[0]) for task in compare.tasks]
    ft = compare.variants("finetune")[0]
    L.seed_everything(compare.seed)
    module = FineTuning(tiny_checkpoint, lora=ft.lora, optimization=ft.optimization,
                        max_seq_length=ft.max_seq_length, general_val=compare.general_val, general_val_blocks=1,
                        export=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=4, val_check_interval=2, check_val_every_n_epoch=None,
                        limit_val_batches=1, logger=CSVLogger(tmp_path / "lora"), enable_progress_bar=False,
                        callbacks=[ICLEvaluation(tasks), Accounting("lora")])
    trainer.fit(module, datamodule=replace(ft.data))

    cpt = compare.cpt
    config = {
        "seed_everything": compare.seed,
        "model": {"checkpoint_dir": str(tiny_checkpoint), "optimization": asdict(cpt.optimization),
                  "max_seq_length": cpt.max_seq_length, "general_val_blocks": 1},
        "data": {"class_path": "lightning_adapt.TextCorpus",
                 "init_args": {"path": cpt.data.path, "val_path": cpt.data.val_path, "batch_size": 4,
                               "replay": {"source": "builtin:general_text.txt", "ratio": 0.25}}},
        "trainer": {"accelerator": "cpu", "max_steps": 4, "val_check_interval": 2, "check_val_every_n_epoch": None,
                    "limit_val_batches": 1, "enable_progress_bar": False, "default_root_dir": str(tmp_path / "cpt"),
                    "callbacks": [
                        {"class_path": "lightning_adapt.record.accounting.Accounting", "init_args": {"method": "cpt"}},
                        {"class_path": "lightning_adapt.icl.ICLEvaluation",
                         "init_args": {"tasks": [asdict(t) for t in tasks]}},
                    ]},
    }
    (tmp_path / "cpt.yaml").write_text(yaml.safe_dump(config))
    main(["cpt", "--config", str(tmp_path / "cpt.yaml")])

    icl_run = compare.out_dir / "runs" / "icl"
    separate = build_and_load(tmp_path, [icl_run, tmp_path / "lora", tmp_path / "cpt"])
    together = json.loads((report_dir / "report.json").read_text())
    for task in ("sent", "probe"):
        for method in ("lora", "cpt"):
            mine, theirs = separate["tasks"][task]["arms"][method], together["tasks"][task]["arms"][method]
            assert [(p["step"], p["score"], p["tokens"], p["flops"]) for p in mine["timeline"]] == \
                   [(p["step"], p["score"], p["tokens"], p["flops"]) for p in theirs["timeline"]]
            assert mine["break_even"] == theirs["break_even"]
            timeless = [{k: v for k, v in arm["chosen"].items() if not k.endswith("_seconds")} for arm in (mine, theirs)]
            assert timeless[0] == timeless[1]  # chosen on the same selection queries, scored on the same test
        assert separate["tasks"][task]["icl"] == together["tasks"][task]["icl"]
    for method in ("lora", "cpt"):
        mine = next(r for r in separate["runs"] if r["method"] == method)
        theirs = next(r for r in together["runs"] if r["method"] == method)
        for key in ("params_trainable", "changed_bytes", "train_examples", "train_tokens", "training_flops"):
            assert mine[key] == theirs[key], key
        assert [p["loss"] for p in mine["general_loss"]] == pytest.approx([p["loss"] for p in theirs["general_loss"]])


def build_and_load(tmp_path: Path, run_dirs: list[Path]) -> dict:
    report_command([*map(str, run_dirs), "--out_dir", str(tmp_path / "report")])
    return json.loads((tmp_path / "report" / "report.json").read_text())


def test_report_command_prints_the_recommendation(setup, tmp_path, capsys):
    compare, _ = setup
    report_command([str(compare.out_dir / "runs" / m) for m in ("icl", "lora")] + ["--out_dir", str(tmp_path / "r")])
    printed = capsys.readouterr().out
    assert f"Wrote {tmp_path / 'r' / 'report.md'}" in printed
    assert "sent: recommend " in printed and "probe: recommend " in printed


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_parse(path):
    assert path.read_text().splitlines()[0] == f"# lightning-adapt compare --config builtin:compare/{path.name}"
    compare = parse_compare(["--config", str(path)])
    assert compare.methods[:2] == ["icl", "finetune"] and compare.variants("finetune")[0].lora is not None
    assert compare.tasks[0].name == "sentiment" and ("cpt" not in compare.methods or compare.cpt.data.replay.ratio > 0)
    if path.name == "sweep.yaml":
        runs = compare.planned_runs()
        searched = [(name, lr, seed) for name, rates in (("lora-128", (0.0005, 0.002)), ("full", (0.000025, 0.0001)))
                    for lr in rates for seed in (0, 1)]
        assert [(r.name, r.settings.data.max_examples, r.settings.max_steps) for r in runs] == [
            ("lora-n8", 8, 30), ("lora-n32", 32, 30), ("lora-n128", 128, 30),
            *((f"{name}-lr{lr:g}-s{seed}", 128, 30) for name, lr, seed in searched)]
        assert [(r.search["of"], r.settings.optimization.learning_rate, r.search["seed"]) for r in runs[3:]] == searched
        assert runs[-1].settings.lora is None and runs[-1].settings.data.path == runs[0].settings.data.path


def test_no_arguments_run_the_shipped_demo_and_quick_is_one_flag(capsys):
    assert with_profile([]) == ["--config", str(PROFILES / "demo.yaml")]
    assert with_profile(["--quick", "--seed", "1"]) == ["--config", str(PROFILES / "quick.yaml"), "--seed", "1"]
    assert with_profile(["--config", "mine.yaml"]) == ["--config", "mine.yaml"]
    with pytest.raises(SystemExit):
        compare_command(["--quick", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["out_dir"] == "out/compare/quick"
    assert (Path(__file__).parents[1] / "configs/compare/demo.yaml").resolve() == (PROFILES / "demo.yaml").resolve()


def test_overrides_and_print_config(capsys, tmp_path):
    quick = single_finetune_quick(tmp_path)
    compare = parse_compare(["--config", quick, "--finetune.max_steps", "20", "--finetune", "{lora: null}"])
    assert compare.finetune.max_steps == 20 and compare.finetune.run_name == "full"  # full fine-tuning
    assert compare.finetune.data.path == "builtin:sentiment/train.jsonl"
    with pytest.raises(SystemExit):
        compare_command(["--config", quick, "--cpt.max_steps", "30", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["cpt"]["max_steps"] == 30 and printed["methods"] == ["icl", "finetune", "cpt"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"methods": ["icl", "finetune", "icl"]}, r"\['icl'\] listed twice"),
        ({"methods": ["icl", "cpt+finetune"]}, "cpt\\+finetune fine-tunes the cpt run's result"),
        ({"methods": []}, "list at least one"),
        ({"finetune": None}, r"method\(s\) \['finetune', 'cpt\+finetune'\] need the `finetune` settings"),
        ({"trainer": {"max_steps": 5}}, r"sets \['max_steps'\], which compare controls"),
    ],
)
def test_bad_compare_configs_are_refused(setup, change, message):
    compare, _ = setup
    with pytest.raises(ValueError, match=message):
        replace(compare, **change)


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("finetune", {"max_steps": 0}, "a budget of zero trains nothing"),
        ("cpt", {"val_check_interval": 0}, "must be at least 1"),
        ("cpt", {"max_steps": 5, "val_check_interval": 2}, "must divide max_steps=5"),
        ("cpt", {"lora": None, "quantize": "nf4"}, "Compare.cpt: quantize='nf4' needs LoRA"),
        ("finetune", {"quantize": "nf3"}, "Compare.finetune: quantize='nf3' is not supported"),
    ],
)
def test_bad_budgets_are_refused(setup, section, change, message):
    compare, _ = setup
    with pytest.raises(ValueError, match=message):
        replace(compare, **{section: replace(compare.variants(section)[0], **change)})


@pytest.mark.parametrize(
    ("formats", "message"),
    [
        (["litgpt", "hf"], r"Compare.export: run adapter_v2: An Adapter V2 model cannot be written in the hf format"),
        (["peft"], r"Compare.export: run full-n4: peft writes a LoRA adapter alone"),
    ],
)
def test_an_export_format_a_run_cannot_be_written_in_is_refused_before_any_run(setup, formats, message):
    compare, _ = setup
    with pytest.raises(ValueError, match=message):
        replace(compare, export={"formats": formats})


def test_cpt_takes_quantize_for_qlora_cpt(setup):
    compare, _ = setup
    qlora_cpt = replace(compare, cpt=replace(compare.cpt, lora=LoRA(r=4), quantize="nf4"))
    assert qlora_cpt.cpt.run_name == "cpt-qlora" and [r.name for r in qlora_cpt.planned_runs()][-2:] == ["cpt-qlora", "cpt-qlora+lora"]


def test_variants_run_side_by_side_and_each_sweep_size_is_a_run_on_nested_data(setup, tiny_checkpoint):
    compare, report_dir = setup
    assert [(r.name, r.sweep) for r in compare.planned_runs()] == [
        ("lora", None), ("full-n4", {"of": "full", "examples": 4, "seed": 0}),
        ("full-n8", {"of": "full", "examples": 8, "seed": 0}), ("adapter_v2", None), ("cpt", None), ("cpt+lora", None)]
    report = json.loads((report_dir / "report.json").read_text())
    runs = {r["method"]: r for r in report["runs"]}
    assert runs["lora"]["params_trainable"] != runs["adapter_v2"]["params_trainable"] < runs["full-n4"]["params_trainable"]
    assert set(report["tasks"]["sent"]["arms"]) >= {"lora", "full-n8", "adapter_v2"}
    assert runs["full-n4"]["train_file"] == {"examples": 4} and runs["lora"]["train_file"] == {"examples": 16}
    assert runs["full-n4"]["params_trainable"] == runs["full-n4"]["params_total"] > runs["lora"]["params_trainable"]
    for name in ("full-n4", "full-n8"):  # every size trains for the same budget of optimizer steps
        assert values(Path(runs[name]["log_dir"]), "train/examples")[-1] == 4 * 4
    info = json.loads((Path(runs["full-n8"]["log_dir"]) / "accounting.json").read_text())
    assert info["sweep"] == {"of": "full", "examples": 8, "seed": 0} and info["data"]["max_examples"] == 8

    full = next(r for r in compare.planned_runs() if r.name == "full-n8").settings.data
    rows = lambda n, seed=0: [r.data["text"] for r in replace(full, max_examples=n, subset_seed=seed).read_splits()[0]]  # noqa: E731
    assert set(rows(4)) < set(rows(8)) < set(rows(16)) and len(rows(8)) == 8 and rows(4) != rows(4, seed=1)
    corpus = replace(compare.cpt.data, replay=None)
    blocks = {}
    for tokens in (31 * 2, 31 * 5):
        data = replace(corpus, max_tokens=tokens)
        data.connect(Tokenizer(tiny_checkpoint), max_seq_length=31)
        data.setup()
        blocks[tokens] = {tuple(block.tolist()) for block in data.train_blocks.cached[0]}
        assert data.train_size == {"tokens": tokens}
    assert len(blocks[62]) == 2 and blocks[62] < blocks[155]

    sent = report["data_efficiency"]["sent"]
    assert [p["size"] for p in sent["curves"]["full"]["points"]] == [4, 8] and sent["curves"]["full"]["swept"]
    # an arm not swept: its own timeline, the examples seen up to each evaluation (steps 2 and 4 of batches of 4)
    assert [p["size"] for p in sent["curves"]["lora"]["points"]] == [8, 16] and not sent["curves"]["lora"]["swept"]
    task = report["tasks"]["sent"]
    best = task["arms"]["full-n8"]["chosen"]["score"]
    assert sent["curves"]["full"]["points"][1]["mean"] == best and sent["target"] == task["icl"]["points"][sent["target_point"]]["mean"]
    text = (report_dir / "report.md").read_text()
    assert "## Data efficiency" in text and "| sent | full | 4 examples: " in text
    assert "| full-n4 " not in text.split("## Six dimensions")[0]  # the recommendation names runs, not table rows


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"full": SweepSizes(examples=[8, 4])}, r"sizes must be positive and increasing"),
        ({"nope": SweepSizes(examples=[4])}, r"'nope', which is neither a planned run"),
        ({"cpt": SweepSizes(examples=[4])}, r"cpt runs are swept by `tokens`"),
        ({"finetune": SweepSizes(examples=[4]), "full": SweepSizes(examples=[4])}, "names both 'finetune'"),
        ({"cpt": SweepSizes(tokens=[40])}, "cpt\\+finetune fine-tunes the first CPT run's result, which is swept"),
    ],
)
def test_bad_sweeps_are_refused(setup, sweep, message):
    compare, _ = setup
    with pytest.raises(ValueError, match=message):
        replace(compare, sweep=sweep)


def test_a_sweep_larger_than_the_data_is_refused_before_any_run(setup):
    compare, _ = setup
    with pytest.raises(ValueError, match=r"Compare.sweep.full: .*has 16 training example\(s\); ask for at most 16"):
        check_sweep_data(replace(compare, sweep={"full": SweepSizes(examples=[4, 17])}))
    with pytest.raises(ValueError, match=r"Compare.sweep.cpt: .*gives \d+ training blocks of 32 tokens"):
        check_sweep_data(replace(compare, methods=["icl", "cpt"], sweep={"cpt": SweepSizes(tokens=[10**7])}))


def test_two_variants_with_one_name_are_refused(setup):
    compare, _ = setup
    lora = compare.variants("finetune")[0]
    with pytest.raises(ValueError, match=r"run name\(s\) \['lora'\] given to more than one run"):
        replace(compare, finetune=[lora, replace(lora, optimization=Optimization(learning_rate=1e-4))], sweep={})
    with pytest.raises(ValueError, match=r"run name\(s\) \['cpt\+lora/x', 'lora/x'\] must be folder names"):
        replace(compare, finetune=[replace(lora, name="lora/x")], sweep={})


def test_every_run_is_estimated_before_it_trains_and_the_report_shows_predicted_vs_measured(setup):
    compare, report_dir = setup
    report = json.loads((report_dir / "report.json").read_text())
    trained = [r for r in report["runs"] if r["module"]]
    assert trained and all(r["estimate"] for r in trained)
    for run in trained:
        estimate = run["estimate"]
        assert estimate["training_flops"] == pytest.approx(run["training_flops"], rel=1e-9)
        assert estimate["tokens_per_step"] * estimate["max_steps"] == pytest.approx(run["train_tokens"], rel=1e-9)
        assert (estimate["params_trainable"], estimate["params_total"]) == (run["params_trainable"], run["params_total"])
        assert estimate["max_steps"] == 4 and estimate["probe_steps"] == 3
    text = (report_dir / "report.md").read_text()
    assert "## Predicted vs measured" in text and "| full-n8 | " in text.split("## Predicted vs measured")[1]


def test_dry_run_prints_every_planned_run_and_trains_nothing(setup, tmp_path, capsys):
    compare, _ = setup
    planned = replace(compare, out_dir=tmp_path / "out", methods=["icl", "finetune", "cpt", "cpt+finetune"])
    text = dry_run(planned)
    for name in ("lora", "full-n4", "full-n8", "adapter_v2", "cpt", "cpt+lora"):
        assert f"== {name} (" in text
    assert "examples 4" in text and "starts from cpt's result (estimated on the base model)" in text
    assert "== icl" in text and "  sent | 1 | " in text
    assert len(re.findall(r"Training estimate, one process on cpu \(probe: 2 warm-up \+ 3 timed steps, [0-9.]+ s\)",
                          text)) == 6
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="compare --dry_run estimates one process"):
        dry_run(replace(planned, trainer=compare.trainer | {"devices": 2}))


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("{finetune: {examples: []}}", r"Compare.sweep.finetune.examples is empty: list the sizes to train on, "
                                       r"increasing \(e.g. examples: \[16, 64, 256\]\), or remove finetune from sweep."),
        ("{cpt: {seeds: [0]}}", r"Compare.sweep.cpt.tokens is not given: list the sizes"),
    ],
    ids=["empty", "not-given"],
)
def test_a_sweep_without_sizes_says_so(sweep, message):
    with pytest.raises(ValueError, match=message):
        parse_compare(with_profile(["--quick", "--sweep", sweep]))


def test_an_unknown_lm_eval_task_is_refused_before_any_run(tmp_path, tiny_checkpoint):
    pytest.importorskip("lightning_adapt_lm_eval")
    args = ["--quick", "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "out"),
            "--biographies.out_dir", str(tmp_path / "bio"), "--general_tasks", "[arc_easyy]", "--trainer.accelerator",
            "cpu"]
    with pytest.raises(SystemExit) as raised:
        main(["compare", *args])
    first = str(raised.value).splitlines()[0]
    assert first.startswith("lightning-adapt compare: error: lm-eval task 'arc_easyy': lm-eval knows no task, group or "
                            "tag 'arc_easyy' (close matches: arc_easy")
    assert not (tmp_path / "out").exists() and not (tmp_path / "bio").exists()  # no ICL-only run, no biographies


def test_a_report_folder_holding_a_users_file_is_refused_before_any_run(tmp_path, tiny_checkpoint):
    (tmp_path / "out" / "report").mkdir(parents=True)
    (tmp_path / "out" / "report" / "notes.md").write_text("mine")
    args = ["--quick", "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "out"),
            "--biographies.out_dir", str(tmp_path / "bio"), "--trainer.accelerator", "cpu"]
    with pytest.raises(SystemExit) as raised:
        main(["compare", *args])
    assert str(raised.value).splitlines()[0].startswith(
        f"lightning-adapt compare: error: Output folder '{tmp_path / 'out' / 'report'}' exists and was not written by "
        "lightning-adapt (it has no .lightning-adapt-output.json); it is never replaced.")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report"] and not (tmp_path / "bio").exists()
    assert (tmp_path / "out" / "report" / "notes.md").read_text() == "mine"


def test_every_run_evaluates_general_text_in_blocks_of_one_length(setup):
    """LoRA trains at max_seq_length 64, CPT at 32: both read general text in blocks of the same length, so the
    runs that start from the base model agree on its general-text loss before training."""
    compare, report_dir = setup
    runs = compare.out_dir / "runs"
    trained = ["lora", "full-n4", "full-n8", "adapter_v2", "cpt", "cpt+lora"]
    info = {name: json.loads((runs / name / "logs" / "version_0" / "accounting.json").read_text()) for name in trained}
    assert {info[name]["hparams"]["general_val_length"] for name in trained} == {256}
    assert {info[name]["hparams"]["max_seq_length"] for name in ("lora", "cpt")} == {64, 32}
    before = {name: values(runs / name / "logs" / "version_0", "val/general_loss")[0] for name in trained[:5]}
    assert max(before.values()) - min(before.values()) < 1e-4 * min(before.values())


def test_the_console_announces_each_estimate_splits_each_runs_time_and_ends_with_what_to_try(setup):
    compare, report_dir = setup
    lines = (compare.out_dir.parent / CONSOLE).read_text().splitlines()
    for name in ("lora", "full-n4", "cpt"):
        announced = lines.index(next(line for line in lines if line.startswith(f"[compare] {name}: estimating")))
        assert lines[announced + 1].startswith(f"[compare] {name}: estimated in ")
        assert re.match(rf"\[compare\] {re.escape(name)}: .* s \(training [0-9.]+ s, evaluation [0-9.]+ s\) — ",
                        next(line for line in lines[announced + 2:] if line.startswith(f"[compare] {name}: ")))
    report = json.loads((report_dir / "report.json").read_text())
    recommended = report["tasks"]["sent"]["recommendation"]["method"]
    tried = recommended if (compare.out_dir / "runs" / recommended / "final").is_dir() else "lora"
    final = compare.out_dir / "runs" / tried / "final"
    chat = [] if tried == "adapter_v2" else [f"[compare]   or: litgpt chat {final}"]
    end = lines[-3 - len(chat):]
    assert end[:2] == [
        f"[compare] report: {report_dir / 'report.html'} (report.md, report.json and the pictures beside it)",
        f"[compare] runs: {compare.out_dir / 'runs'}/<run>/ (each: logs/version_*/metrics.csv and accounting.json; "
        "final/ when exported)"]
    assert end[2].startswith(f"[compare] try {tried}'s trained model: litgpt generate") and end[3:] == chat


@pytest.mark.slow
def test_the_command_compare_ends_with_tries_the_trained_model(setup):
    compare, _ = setup
    lines = (compare.out_dir.parent / CONSOLE).read_text().splitlines()
    line = next(line for line in lines if line.startswith("[compare] try "))
    final = compare.out_dir / "runs" / line.split("[compare] try ", 1)[1].split("'s trained model", 1)[0] / "final"
    command = line.split(": ", 1)[1] + " --max_new_tokens 2"
    assert f"{final} " in command and " --prompt $'Review: " in command
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # litgpt as installed beside this Python
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=240, env=os.environ | {"PATH": path})
    assert done.returncode == 0, done.stderr
    prompt = json.loads(Path(compare.tasks[0].queries.path).read_text().splitlines()[0])["text"]
    assert f"Review: {prompt}\nSentiment:" in done.stdout  # litgpt prints the prompt it was given, then its answer
