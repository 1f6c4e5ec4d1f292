"""User-caused errors name the file, the 1-based row or line, and the fix."""

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from litgpt import Config, Tokenizer

from lightning_adapt import CheckpointError, DataError, FineTuning, Instructions, LoRA
from lightning_adapt.data.records import READ_BYTES, read_records
from lightning_adapt.icl import Generation, ICLTask, ICLTaskError, evaluate_checkpoint
from lightning_adapt.icl.plan import encode_task
from lightning_adapt.verdict.run import ReportError, load_run
from tests.helpers import OWN_INSTRUCTIONS, subprocess_env

ROWS = [{"instruction": f"Say {i}", "input": "", "output": f"{i}"} for i in range(4)]
LATIN1 = "caf\u00e9".encode("latin-1")  # not UTF-8


def reviews(n: int) -> list[dict]:
    return [{"text": f"review number {i}", "label": "Positive" if i % 2 else "Negative"} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def sentiment(queries: Path, **overrides) -> ICLTask:
    spec = dict(name="sent", queries=str(queries), template="Review: {text}\nSentiment:", target="label",
                choices=["Positive", "Negative"])
    return ICLTask(**(spec | overrides))


# --- non-UTF-8 data ------------------------------------------------------------------------------------------------


def test_non_utf8_jsonl_names_the_file_and_line_for_instructions_and_icl(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", ROWS)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"Say 2", b"Say " + LATIN1)
    path.write_bytes(b"".join(lines))
    expected = r"train.jsonl: line 3: bytes that are not valid UTF-8 \(.*\)\. Convert the file to UTF-8 \(e.g. `iconv"
    with pytest.raises(DataError, match=expected) as error:
        Instructions(str(path)).setup()
    assert "encoding_errors" not in str(error.value)  # a TextCorpus option: Instructions has none
    task = ICLTask(name="s", queries=str(path), template="{instruction}", target="output", generate=Generation())
    with pytest.raises(DataError, match=expected):
        task.load()


def test_non_utf8_json_names_the_line_of_the_bad_byte(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ROWS, indent=1))  # one field per line
    text = path.read_bytes()
    bad_line = text[: text.index(b'"Say 3"')].count(b"\n") + 1
    path.write_bytes(text.replace(b"Say 3", b"Say " + LATIN1))
    with pytest.raises(DataError, match=rf"train.json: line {bad_line}: bytes that are not valid UTF-8.*iconv"):
        Instructions(str(path)).setup()


def test_jsonl_lines_longer_than_one_read_and_multibyte_text_are_read_whole(tmp_path):
    long_text = "\u00e9t\u00e9 " * READ_BYTES  # several reads long; some reads end inside a 2-byte character
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": "short"}, {"text": long_text}, {"text": "last"}])
    records = read_records(path)
    assert [r.data["text"] for r in records] == ["short", long_text, "last"]
    assert [r.row for r in records] == [1, 2, 3]


# --- unreadable weights --------------------------------------------------------------------------------------------


def damaged_checkpoint(tiny_checkpoint: Path, tmp_path: Path, damage: str) -> Path:
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    weights = folder / "lit_model.pth"
    data = weights.read_bytes()
    weights.write_bytes(os.urandom(4096) if damage == "random" else data[: len(data) // 2])
    return folder


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_weights_that_are_not_a_pytorch_checkpoint_are_named_everywhere_they_load(tmp_path, tiny_checkpoint, damage):
    folder = damaged_checkpoint(tiny_checkpoint, tmp_path, damage)
    expected = r"Weights '.*ckpt/lit_model.pth' are not a PyTorch checkpoint.*truncated download.*Re-download"
    with pytest.raises(CheckpointError, match=expected):
        FineTuning(folder).configure_model()
    with pytest.raises(CheckpointError, match=expected):
        FineTuning(folder, lora=LoRA(r=4), quantize="nf4").configure_model()
    task = sentiment(write_jsonl(tmp_path / "queries.jsonl", reviews(4)))
    with pytest.raises(CheckpointError, match=expected):
        evaluate_checkpoint(folder, [task], progress=False)


# --- report --------------------------------------------------------------------------------------------------------


def test_metrics_csv_without_a_step_column_names_the_file_and_its_columns(tmp_path):
    log_dir = tmp_path / "run" / "logs" / "version_0"
    log_dir.mkdir(parents=True)
    (log_dir / "accounting.json").write_text(json.dumps({"method": "icl", "module": None}))
    with open(log_dir / "metrics.csv", "w", newline="") as fp:
        csv.writer(fp).writerows([["epoch", "train_loss"], [0, 1.5]])
    with pytest.raises(ReportError, match=r"metrics.csv' has no 'step' column \(its columns: epoch, train_loss\).*CSVLogger"):
        load_run(tmp_path / "run")


# --- ICL: the record's file and 1-based row -------------------------------------------------------------------------


def test_icl_errors_name_the_file_and_row_of_the_record(tmp_path):
    folder = tmp_path / "queries"
    write_jsonl(folder / "a.jsonl", reviews(3))
    write_jsonl(folder / "b.jsonl", reviews(2) + [{"text": "so-so", "label": "Neutral"}])
    with pytest.raises(ICLTaskError, match=r"'sent': query .*b.jsonl: row 3: target 'Neutral' is not among"):
        sentiment(folder).load()
    demos = write_jsonl(tmp_path / "demos.jsonl", reviews(3) + [{"label": "Positive"}])
    with pytest.raises(ICLTaskError, match=r"'sent': demo .*demos.jsonl: row 4: field\(s\) \['text'\] not found"):
        sentiment(folder / "a.jsonl", demos=str(demos)).load()


def test_a_subsampled_query_is_named_by_its_row_in_the_file(tmp_path):
    path = write_jsonl(tmp_path / "queries.jsonl", reviews(20))
    data = sentiment(path, max_queries=5, subsample_seed=3).load()
    assert data.query_where == [f"{path}: row {index + 1}" for index in data.query_rows]
    assert data.query_rows != list(range(5))  # the subset's own indices would name other rows


# --- ICL: a prompt longer than the model's context ------------------------------------------------------------------


@pytest.mark.parametrize("options", [dict(shots=[2], truncate_demos=True), dict(shots=[0])])
def test_a_query_too_long_without_demonstrations_does_not_suggest_truncate_demos(tmp_path, tiny_checkpoint, options):
    rows = reviews(4)
    rows[1]["text"] = "the quick brown fox jumps over the lazy dog " * 40
    data = sentiment(write_jsonl(tmp_path / "queries.jsonl", rows), seeds=[0], **options).load()
    block_size = Config.from_file(tiny_checkpoint / "model_config.yaml").block_size
    with pytest.raises(ICLTaskError) as error:
        encode_task(data, Tokenizer(tiny_checkpoint), block_size)
    message = str(error.value)
    assert "queries.jsonl: row 2 (k=" in message and f"the model's context of {block_size}" in message
    assert "even with no demonstrations the query is too long" in message and "longer context" in message
    assert "truncate_demos" not in message and "lower k" not in message


def test_text_corpus_reads_a_jsonl_row_longer_than_one_read(tmp_path):
    from lightning_adapt.data.documents import read_documents

    text = "é" * READ_BYTES  # 2 bytes each: the row spans several reads, cut inside characters
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n" + json.dumps({"text": "short"}) + "\n")
    assert [piece.text for piece in read_documents(str(path))] == [text, "short"]


# --- the command line: the message and the fix, no traceback, the subcommand's own help --------------------------

LORA_YAML = str(Path(__file__).parents[1] / "lightning_adapt" / "configs" / "finetune" / "lora.yaml")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_adapt", *args], capture_output=True, text=True, timeout=300,
        env=subprocess_env(PYTHONPATH=str(Path(__file__).parents[1]), PYTHONWARNINGS="ignore", **env),
    )  # fmt: skip


def finetune_cli_args(tiny_checkpoint, tmp_path, *extra: str) -> list[str]:
    from tests.helpers import write_instruction_file

    data = write_instruction_file(tmp_path / "train.jsonl")
    return ["finetune", "--config", LORA_YAML, "--model.checkpoint_dir", str(tiny_checkpoint), "--data.init_args.path",
            str(data), *OWN_INSTRUCTIONS, "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path / "run"), *extra]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.optimization.learning_rate", "-0.001"], "learning_rate=-0.001 must be positive"),
        (["--trainer.max_steps", "0"], r"would train 0 optimizer steps \(max_steps=0.*give max_steps a positive number"),
    ],
)
def test_bad_settings_name_the_setting_that_is_wrong(tiny_checkpoint, tmp_path, extra, message):
    from lightning_adapt.cli import main

    with pytest.raises(SystemExit, match=message):
        main(finetune_cli_args(tiny_checkpoint, tmp_path, *extra))


@pytest.mark.slow
def test_cli_errors_print_the_message_without_a_traceback_unless_asked(tmp_path):
    missing = str(tmp_path / "missing.ckpt")
    result = cli("export", missing, "--out_dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"lightning-adapt export: error: Checkpoint file '{missing}' does not exist." in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 2
    shown = cli("export", missing, "--out_dir", str(tmp_path / "out"), LIGHTNING_ADAPT_TRACEBACK="1")
    assert "Traceback" in shown.stderr and "CheckpointError" in shown.stderr


@pytest.mark.slow
def test_parse_errors_point_at_the_subcommands_own_help():
    result = cli("finetune", "--config", LORA_YAML, "--trainer.max_steps", "abc")
    assert result.returncode == 2
    assert "usage: lightning-adapt finetune" in result.stderr and 'Parser key "trainer.max_steps"' in result.stderr
    assert "usage: lightning-adapt [" not in result.stderr


@pytest.mark.parametrize("missing", ["model_config.yaml", "lit_model.pth"])
def test_the_same_broken_checkpoint_folder_gives_the_same_error_from_every_command(tmp_path, tiny_checkpoint, missing):
    from lightning_adapt.cli import main

    broken = Path(shutil.copytree(tiny_checkpoint, tmp_path / "broken"))
    (broken / missing).unlink()
    ckpt = tmp_path / "run.ckpt"
    torch.save({"lightning_adapt_module": "lightning_adapt.methods.finetune.FineTuning", "state_dict": {},
                "hyper_parameters": {"checkpoint_dir": str(broken)}}, ckpt)
    configs = Path(__file__).parents[1] / "lightning_adapt" / "configs"
    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "a", "output": "b"}\n')
    commands = {
        "finetune": ["--config", str(configs / "finetune" / "lora.yaml"), "--model.checkpoint_dir", str(broken),
                     "--data.init_args.path", str(data), *OWN_INSTRUCTIONS,
                     "--trainer.default_root_dir", str(tmp_path / "ft")],
        "cpt": ["--config", str(configs / "cpt" / "domain.yaml"), "--model.checkpoint_dir", str(broken),
                "--data.init_args.path", str(data), "--trainer.default_root_dir", str(tmp_path / "cpt")],
        "icl": ["--config", str(configs / "icl" / "sentiment.yaml"), "--checkpoint_dir", str(broken)],
        "export": [str(ckpt), "--out_dir", str(tmp_path / "exported")],
        "compare": ["--quick", "--checkpoint_dir", str(broken), "--out_dir", str(tmp_path / "compare")],
    }
    messages = {}
    for command, args in commands.items():
        with pytest.raises(SystemExit) as raised:
            main([command, *args])
        messages[command] = str(raised.value).split(": error: ", 1)[-1]
    expected = f"Checkpoint folder '{broken}' is missing {missing}."
    assert all(message.startswith(expected) for message in messages.values()), messages
    assert len(set(messages.values())) == 1, messages


# --- the reason first, before anything runs or is written (issue #31) ---------------------------------------------

HINT = "(set LIGHTNING_ADAPT_TRACEBACK=1 to see the traceback)"


def error_lines(stderr: str) -> list[str]:
    """What a failed command wrote to stderr, without the seed line LightningCLI logs before it builds anything."""
    return [line for line in stderr.splitlines() if not line.startswith("Seed set to ")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


HIDE_DEEPSPEED = """
import importlib.metadata as metadata, sys
sys.modules["deepspeed"] = None  # not importable, and not installed as far as importlib.metadata knows
from_name = metadata.Distribution.from_name.__func__
def hidden(cls, name):
    if name == "deepspeed":
        raise metadata.PackageNotFoundError(name)
    return from_name(cls, name)
metadata.Distribution.from_name = classmethod(hidden)
from lightning_adapt.cli import main
main()
"""


@pytest.mark.slow
def test_deepspeed_strategies_without_deepspeed_name_the_extra_to_install(tmp_path, tiny_checkpoint):
    args = finetune_cli_args(tiny_checkpoint, tmp_path, "--trainer.strategy", "deepspeed_stage_2")
    env = {k: v for k, v in subprocess_env().items() if k != "DS_ACCELERATOR"}  # on the CPU: refused too, once installed
    result = subprocess.run(
        [sys.executable, "-c", HIDE_DEEPSPEED, *args], capture_output=True, text=True, timeout=300,
        env={**env, "PYTHONPATH": str(Path(__file__).parents[1]), "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert error_lines(result.stderr) == [
        "lightning-adapt finetune: error: --trainer.strategy deepspeed_stage_2 needs DeepSpeed, which is not installed: "
        'pip install --no-build-isolation "lightning-adapt[deepspeed]" (it builds against the installed torch), or use '
        "--trainer.strategy fsdp2 (sharded) or ddp.",
        HINT,
    ]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def trained_checkpoints(tmp_path_factory, tiny_checkpoint) -> dict[str, Path]:
    """A `.ckpt` of a 2-step LoRA run and one of a 2-step full fine-tuning run on the tiny checkpoint."""
    from lightning_adapt.cli import main
    from tests.helpers import write_instruction_file

    root = tmp_path_factory.mktemp("resume")
    data = write_instruction_file(root / "train.jsonl")
    found = {}
    for method in ("lora", "full"):
        config = str(Path(LORA_YAML).with_name(f"{method}.yaml"))
        main(["finetune", "--config", config, "--model.checkpoint_dir", str(tiny_checkpoint), "--data.init_args.path",
              str(data), *OWN_INSTRUCTIONS, "--data.init_args.batch_size", "4", "--trainer.max_steps", "2", "--trainer.val_check_interval",
              "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
              "--trainer.default_root_dir", str(root / method)])
        (found[method],) = (root / method / "logs").rglob("*.ckpt")
    return found


def resume_args(tiny_checkpoint: Path, tmp_path: Path, config: str, ckpt: Path) -> list[str]:
    args = finetune_cli_args(tiny_checkpoint, tmp_path, "--ckpt_path", str(ckpt), "--trainer.max_steps", "4")
    args[args.index(LORA_YAML)] = str(Path(LORA_YAML).with_name(config))
    return args


@pytest.mark.parametrize(
    "config, saved, message",
    [
        ("lora.yaml", "full", "was written by FineTuning of every weight (lora: null), but this run is FineTuning with "
                              "LoRA (r=8 on query, value): its trainable weights and optimizer state do not fit."),
        ("full.yaml", "lora", "was written by FineTuning with LoRA (r=8 on query, value), but this run is FineTuning of "
                              "every weight (lora: null): its trainable weights and optimizer state do not fit."),
    ],
    ids=["full-ckpt-lora-config", "lora-ckpt-full-config"],
)
def test_resuming_another_method_names_the_file_and_both_methods(tmp_path, tiny_checkpoint, trained_checkpoints,
                                                                 config, saved, message):
    from lightning_adapt.cli import main

    ckpt = trained_checkpoints[saved]
    before = digest(ckpt)
    with pytest.raises(SystemExit) as raised:
        main(resume_args(tiny_checkpoint, tmp_path, config, ckpt))
    first, hint = str(raised.value).splitlines()
    assert first.startswith(f"lightning-adapt finetune: error: '{ckpt}' {message} Resume with the settings of the run")
    assert hint == HINT
    assert not (tmp_path / "run").exists() and digest(ckpt) == before


def test_resuming_another_method_from_python_is_refused_before_the_optimizer_state_is_loaded(
    tmp_path, tiny_checkpoint, trained_checkpoints
):
    from lightning_adapt import CheckpointError
    from tests.helpers import quiet_trainer, write_instruction_file

    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=8, targets=["query", "value"]), export=False)
    with pytest.raises(CheckpointError, match=r"The checkpoint being resumed was written by FineTuning of every weight "
                                              r"\(lora: null\), but this run is FineTuning with LoRA \(r=8 on query, value\)"):
        quiet_trainer(tmp_path, max_steps=4).fit(module, datamodule=data, ckpt_path=trained_checkpoints["full"])


class Pickled:
    """An object a checkpoint must not hold: loading it would call this class."""


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(extra=Pickled()),
         r"Cannot read checkpoint '.*bad.ckpt' as data only \(it names \S*Pickled\)\. "
         r"lightning-adapt's checkpoints hold tensors, numbers and strings, and nothing else is ever unpickled"),
        (lambda c: c["hyper_parameters"].update(out_dir=Path("out")),
         r"Cannot read checkpoint '.*bad.ckpt' as data only \(it names pathlib.PosixPath\)"),
        (lambda c: c["hyper_parameters"]["lora"].update(extra=1),
         r"'.*bad.ckpt': its lora settings hold \['extra'\], which LoRA does not have \(its fields: r, alpha, dropout, "
         r"targets\)\. The file was edited or written by another version of lightning-adapt"),
    ],
    ids=["pickled-object", "path-in-settings", "unknown-lora-field"],
)
def test_a_checkpoint_that_is_not_ours_as_data_is_refused_before_resume_and_export(
    tmp_path, tiny_checkpoint, trained_checkpoints, edit, message
):
    from lightning_adapt.cli import main

    checkpoint = torch.load(trained_checkpoints["lora"], weights_only=True)
    edit(checkpoint)
    ckpt = tmp_path / "bad.ckpt"
    torch.save(checkpoint, ckpt)
    before = digest(ckpt)
    for command, args in (("finetune", resume_args(tiny_checkpoint, tmp_path, "lora.yaml", ckpt)[1:]),
                          ("export", [str(ckpt), "--out_dir", str(tmp_path / "exported")])):
        with pytest.raises(SystemExit) as raised:
            main([command, *args])
        first, hint = str(raised.value).splitlines()
        assert re.match(f"lightning-adapt {command}: error: {message}", first), first
        assert hint == HINT
    assert not (tmp_path / "run").exists() and not (tmp_path / "exported").exists() and digest(ckpt) == before


def test_lm_eval_command_on_a_missing_checkpoint_folder_says_so_before_loading_tasks(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lightning_adapt_lm_eval")
    from lightning_adapt_lm_eval.cli import main

    missing = tmp_path / "missing"
    monkeypatch.setattr(sys, "argv", ["lightning-adapt-lm-eval", "--model", "lightning-adapt", "--model_args",
                                      f"checkpoint_dir={missing}", "--tasks", "arc_easy", "--output_path",
                                      str(tmp_path / "out")])
    with pytest.raises(SystemExit) as raised:
        main()
    first, hint = str(raised.value).splitlines()
    assert first.startswith(f"lightning-adapt-lm-eval: error: Checkpoint folder '{missing}' does not exist. Point ")
    assert hint == HINT
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Selected Tasks" not in err  # refused before lm-eval reads its task index
    assert not (tmp_path / "out").exists()


ICL_TASK_WITHOUT_CHOICES = """\
checkpoint_dir: {checkpoint_dir}
tasks:
  - name: sentiment
    queries: builtin:sentiment/test.jsonl
    template: "Review: {{text}}\\nSentiment:"
    target: label
"""


@pytest.mark.parametrize(
    "case, message",
    [
        ("batch_size", "lightning-adapt finetune: error: Instructions(batch_size=0) must be at least 1."),
        ("val_fraction", "lightning-adapt finetune: error: Instructions(val_fraction=0.0): give a fraction in (0, 1) "
                         "or a val_path."),
        ("lora", "lightning-adapt finetune: error: LoRA(r=0): the rank must be at least 1; use lora=None for full "
                 "fine-tuning."),
        ("icl", "lightning-adapt icl: error: ICL task 'sentiment': set exactly one of `choices` (log-likelihood) and "
                "`generate`"),
        ("methods", "lightning-adapt compare: error: Compare.methods: unknown method(s) ['finetun']; the methods are "
                    "icl, finetune, cpt, cpt+finetune."),
        ("metric", "lightning-adapt icl: error: ICL task 'sentiment': unknown `generate.metrics` ['exact']; the metrics "
                   "are exact_match, contains, chrf, rougeL, response_logprob"),
    ],
    ids=["batch_size", "val_fraction", "lora", "icl", "methods", "metric"],
)
def test_the_reason_a_class_gives_is_the_first_line_not_jsonargparses_union(tmp_path, tiny_checkpoint, case, message):
    from lightning_adapt.cli import main

    config = tmp_path / "icl.yaml"
    config.write_text(ICL_TASK_WITHOUT_CHOICES.format(checkpoint_dir=tiny_checkpoint))
    generation = tmp_path / "generation.yaml"  # an unknown metric: the task's message, not jsonargparse's
    generation.write_text(ICL_TASK_WITHOUT_CHOICES.format(checkpoint_dir=tiny_checkpoint) + "    generate: {metrics: [exact]}\n")
    one_row = tmp_path / "one.jsonl"
    one_row.write_text('{"instruction": "a", "output": "b"}\n')
    args = {
        "batch_size": finetune_cli_args(tiny_checkpoint, tmp_path, "--data.init_args.batch_size", "0"),
        "val_fraction": finetune_cli_args(tiny_checkpoint, tmp_path, "--data.init_args.path", str(one_row),
                                          "--data.init_args.val_fraction", "0"),
        "lora": finetune_cli_args(tiny_checkpoint, tmp_path, "--model.lora.r", "0"),
        "icl": ["icl", "--config", str(config)],
        "metric": ["icl", "--config", str(generation)],
        "methods": ["compare", "--quick", "--checkpoint_dir", str(tiny_checkpoint), "--out_dir", str(tmp_path / "c"),
                    "--methods", "[icl, finetun]"],
    }[case]
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert str(raised.value).splitlines() == [message, HINT]
    assert not (tmp_path / "run").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_the_first_line_on_stderr_is_the_reason_a_class_gives(tmp_path, tiny_checkpoint):
    config = tmp_path / "icl.yaml"
    config.write_text(ICL_TASK_WITHOUT_CHOICES.format(checkpoint_dir=tiny_checkpoint))
    result = cli("icl", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "lightning-adapt icl: error: ICL task 'sentiment': set exactly one of `choices` (log-likelihood) and `generate`",
        HINT,
    ]


def test_a_setting_of_a_few_strings_names_the_setting_and_its_choices():
    from lightning_adapt import TextCorpus

    with pytest.raises(ValueError, match=r"TextCorpus\(documents='lines'\): choose one of file, paragraph, line\."):
        TextCorpus("corpus.txt", documents="lines")
    with pytest.raises(ValueError, match=r"TextCorpus\(encoding_errors='ignore'\): choose one of strict, replace\."):
        TextCorpus("corpus.txt", encoding_errors="ignore")
