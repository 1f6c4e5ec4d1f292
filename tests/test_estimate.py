"""`estimate`: what a run will cost, predicted before it runs, against what `Accounting` measures when it runs."""

import csv
import gc
import json
import logging
import re
import tempfile
import time
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lightning_adapt import (
    Accounting,
    ContinualPretraining,
    FineTuning,
    ICLTask,
    Instructions,
    LoRA,
    TextCorpus,
    estimate_icl,
    estimate_training,
    evaluate_checkpoint,
)
from lightning_adapt import estimate
from lightning_adapt.cli import main
from lightning_adapt.record.flops import inference_flops, training_flops
from lightning_adapt.icl.keys import PROMPT_TOKENS
from lightning_adapt.distributed.sharding import checkpoint_activations, local_bytes
from lightning_adapt.testing import make_tiny_checkpoint, tiny_config
from tests.helpers import COLOURS, quiet_trainer, run_cli_capped, run_processes, write_instruction_file

CPU = {"accelerator": "cpu", "devices": 1, "limit_val_batches": 0}
MID = tiny_config("tiny-mid", n_layer=4, n_embd=256, intermediate_size=688)
"""3.1 M parameters: weights, gradients, optimizer state and activations show in the RSS next to the process's
baseline, and 25 steps still train in seconds."""


@pytest.fixture(scope="module")
def mid_checkpoint(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("checkpoints") / "tiny-mid", config=MID)


@pytest.fixture
def corpus(tmp_path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"Person {i} was born in {1900 + i} and paints {COLOURS[i % 5]}." for i in range(80)))
    return str(path)


def metrics(path: Path) -> dict[str, list[float]]:
    """Every logged value of each key of a metrics.csv, in order."""
    with open(path) as fp:
        rows = list(csv.DictReader(fp))
    return {key: [float(row[key]) for row in rows if row.get(key)] for key in rows[0]}


# One script, two fresh processes: the estimate, then the run it predicts (each as `lightning-adapt` would start it).
RUN = """
import json, sys
import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning_adapt import Accounting, FineTuning, Instructions, estimate_training
from lightning_adapt.record.accounting import memory_bytes

torch.set_num_threads(1)  # two shared cores time steadily with one thread each, not with oversubscribed thread pools
mode, checkpoint, data, steps, root = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
module = FineTuning(checkpoint, general_val=None, export=False, max_seq_length=64)
datamodule = Instructions(data, batch_size=8)
flags = dict(accelerator="cpu", devices=1, limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)


class Tensors(L.Callback):
    def setup(self, trainer, pl_module, stage):
        self.baseline = memory_bytes(trainer.strategy.root_device)  # before the model loads

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.gradients = sum(grad.numel() * grad.element_size() for grad in grads)
        self.optimizer = sum(v.numel() * v.element_size() for state in trainer.optimizers[0].state.values()
                             for v in state.values())


if mode == "estimate":
    print(json.dumps(estimate_training(module, datamodule, flags, steps).to_dict()))
else:
    tensors = Tensors()
    trainer = L.Trainer(**flags, max_steps=steps, logger=CSVLogger(root, name="", version=""),
                        enable_checkpointing=False, callbacks=[Accounting(), tensors])
    trainer.fit(module, datamodule=datamodule)
    trainable = [p for p in module.parameters() if p.requires_grad]
    adamw = sum(2 * p.numel() * p.element_size() + 4 for p in trainable)  # 2 moments, a float32 step count per tensor
    print(json.dumps({"baseline": tensors.baseline, "gradients": tensors.gradients, "optimizer": tensors.optimizer,
                      "adamw": adamw}))
"""


@pytest.mark.slow
def test_the_estimate_predicts_what_accounting_measures(tmp_path, mid_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=96)  # 11 batches an epoch: 25 steps span three
    args = [str(mid_checkpoint), str(data), "25", str(tmp_path / "run")]
    predicted = json.loads(run_processes(RUN, ["estimate", *args], tmp_path).splitlines()[-1])
    run = json.loads(run_processes(RUN, ["train", *args], tmp_path).splitlines()[-1])
    measured = metrics(tmp_path / "run" / "metrics.csv")
    memory = predicted["memory"]

    assert predicted["training_flops"] == pytest.approx(measured["flops/train"][-1], rel=1e-12)
    assert predicted["params_trainable"] == measured["params/trainable"][0] == 3_098_880
    assert predicted["params_total"] == measured["params/total"][0]
    assert memory["model_bytes"] == measured["memory/model_bytes"][0]
    assert memory["gradient_bytes"] == run["gradients"] == memory["trainable_bytes"] == 4 * 3_098_880
    assert memory["optimizer_bytes"] == run["optimizer"] == run["adamw"]  # 2 moments per weight, a step per tensor

    peak, baseline = max(measured["memory/peak_bytes"]), run["baseline"]
    assert predicted["predicted_peak_bytes"] == pytest.approx(peak, rel=0.20)
    assert predicted["predicted_peak_bytes"] - memory["baseline_bytes"] == pytest.approx(peak - baseline, rel=0.25)
    # timing on two shared cores is noisy: 25 steps of one thread each are usually within a few percent
    assert predicted["predicted_train_s"] == pytest.approx(measured["time/train_s"][-1], rel=0.25)


def test_lora_on_a_biased_model_flops_parameters_and_state_are_exactly_what_training_holds(tmp_path,
                                                                                           tiny_biased_checkpoint):
    data = write_instruction_file(tmp_path / "train.jsonl", n=24)

    def parts():
        return (FineTuning(tiny_biased_checkpoint, lora=LoRA(r=4, targets=["query", "value", "mlp"]), general_val=None,
                           export=False), Instructions(str(data), batch_size=4, val_fraction=0.2))

    flags = CPU | {"accumulate_grad_batches": 2}
    predicted = estimate_training(*parts(), flags, max_steps=6, probe_steps=1)
    module, datamodule = parts()
    trainer = quiet_trainer(tmp_path, max_steps=6, limit_val_batches=0, accumulate_grad_batches=2,
                            callbacks=[Accounting()])
    trainer.fit(module, datamodule=datamodule)
    measured = metrics(tmp_path / "logs" / "metrics.csv")

    assert predicted.training_flops == pytest.approx(measured["flops/train"][-1], rel=1e-12)
    # the tokens it predicts are the training tokens the run counts (padded micro-batches: padding left out)
    assert predicted.tokens_per_step * 6 == measured["train/tokens"][-1]
    assert predicted.params_trainable == measured["params/trainable"][0]
    assert predicted.params_total == measured["params/total"][0]
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert predicted.memory.gradient_bytes == sum(p.grad.numel() * p.grad.element_size() for p in trainable)
    state = sum(v.numel() * v.element_size() for s in trainer.optimizers[0].state.values() for v in s.values())
    assert predicted.memory.optimizer_bytes == state == sum(2 * p.numel() * p.element_size() + 4 for p in trainable)
    assert predicted.memory.model_bytes == local_bytes(module.model)  # with LoRA's index buffers, made on first use
    assert predicted.probe_steps == 1 and predicted.max_steps == 6
    assert set(predicted.to_dict()) >= {"params_trainable", "params_total", "memory", "peak_bytes",
                                        "peak_bytes_checkpointed", "training_flops", "tokens_per_step", "probe_steps",
                                        "probe_seconds_per_step", "predicted_train_s"}
    json.dumps(predicted.to_dict())


def forward_bytes(module, batch) -> int:
    """Bytes a forward pass and its loss leave allocated (what autograd keeps for backward), by the profiler."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        loss, _ = module.loss_and_count(batch, 0)
    del loss
    return sum(event.self_cpu_memory_usage for event in profiler.events())


def test_cpt_activations_match_what_a_forward_pass_keeps_with_and_without_checkpointing(mid_checkpoint, corpus):
    def module(checkpointing: bool):
        return ContinualPretraining(mid_checkpoint, general_val=None, export=False, max_seq_length=48,
                                    activation_checkpointing=checkpointing)

    data = TextCorpus(corpus, documents="paragraph", batch_size=4)
    predicted = estimate_training(module(True), data, CPU, max_steps=5, probe_steps=1)
    config = MID  # the checkpoint's
    assert predicted.tokens_per_step == 4 * 48  # every block of a TextCorpus is full: no padding
    assert predicted.training_flops == 5 * 4 * training_flops(config, 48)
    assert predicted.activation_checkpointing and predicted.predicted_peak_bytes == predicted.peak_bytes_checkpointed

    reference = module(False)
    reference.configure_model()
    batch = {"input_ids": torch.randint(0, config.padded_vocab_size, (4, 49))}
    batch["labels"] = batch["input_ids"]
    full = forward_bytes(reference, batch)
    checkpoint_activations(reference.model)
    kept = forward_bytes(reference, batch)  # each block's input and what lies outside the blocks
    assert predicted.memory.activation_bytes == pytest.approx(full, rel=0.01)
    one_block = (full - kept) / config.n_layer  # the blocks are alike; backward recomputes one at a time
    assert predicted.memory.activation_bytes_checkpointed == pytest.approx(kept + one_block, rel=0.05)


def icl_task(data: Path) -> ICLTask:
    return ICLTask(name="colour", queries=str(data), template="{instruction}", target="output", choices=COLOURS,
                   max_queries=6, shots=[0, 2], seeds=[0, 1])


def test_icl_estimate_is_what_an_icl_evaluation_logs(tmp_path, tiny_checkpoint):
    task = icl_task(write_instruction_file(tmp_path / "train.jsonl", n=24))
    estimates = estimate_icl([task], tiny_checkpoint)
    results = evaluate_checkpoint(tiny_checkpoint, [task], progress=False)
    logged = {row["k"]: row["metrics"][PROMPT_TOKENS][0] for row in results.summary()}
    config = tiny_config()
    assert [(e.task, e.k) for e in estimates] == [("colour", 0), ("colour", 2)]
    for estimate in estimates:
        assert estimate.prompt_tokens == pytest.approx(logged[estimate.k])
        assert estimate.query_flops == inference_flops(config, estimate.prompt_tokens, 1)


TINY_YAML = """# lightning-adapt finetune --config {path}
model:
  checkpoint_dir: {checkpoint}
  lora: {{r: 4, alpha: 8, targets: [query, value]}}
  max_seq_length: 64
  general_val: null
data:
  class_path: lightning_adapt.Instructions
  init_args: {{path: {data}, batch_size: 4}}
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 20
  val_check_interval: 5
  check_val_every_n_epoch: null
  limit_val_batches: 2
  default_root_dir: {root}
  callbacks:
    - class_path: lightning_adapt.ICLEvaluation
      init_args:
        tasks:
          - {{name: colour, queries: {data}, template: "{{instruction}}", target: output, choices: {choices},
             max_queries: 4, shots: [0, 2]}}
"""


def tiny_yaml(tmp_path: Path, checkpoint: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    data = write_instruction_file(tmp_path / "train.jsonl", n=24)
    path.write_text(TINY_YAML.format(path=path, checkpoint=checkpoint, data=data, root=tmp_path / "out",
                                     choices=json.dumps(COLOURS)))
    return path


def listing(*folders: Path) -> list[tuple[str, float]]:
    return sorted((str(p), p.stat().st_mtime) for folder in folders for p in [folder, *folder.rglob("*")])


def probe_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("lightning-adapt-estimate-*")}


def test_estimate_command_prints_the_estimate_and_writes_nothing(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    config = tiny_yaml(tmp_path, tiny_checkpoint)
    monkeypatch.chdir(tmp_path)
    before, probes = listing(tmp_path, tiny_checkpoint), probe_folders()
    main(["estimate", "--config", str(config)])
    printed = capsys.readouterr().out
    assert listing(tmp_path, tiny_checkpoint) == before and probe_folders() == probes
    numbers = {name: float(value.replace(",", "")) for name, value in re.findall(
        r"(parameters|FLOPs|training time|peak memory|colour \| \d) +\|? *([\d.,e+]+)", printed)}
    assert set(numbers) == {"parameters", "FLOPs", "training time", "peak memory", "colour | 0", "colour | 2"}, printed
    assert all(value > 0 for value in numbers.values())
    assert "2 warm-up + 3 timed steps" in printed and "(20 steps x" in printed
    assert "5 held-out evaluations" in printed  # step 0, then every 5 of the 20 steps


@pytest.mark.parametrize("override, message", [
    (["--model.checkpoint_dir", "missing/folder"], "Checkpoint folder 'missing/folder' does not exist"),
    (["--trainer.devices", "2"], "estimate predicts one process, but these Trainer flags start 2"),
    (["--trainer.max_steps", "-1"], "max_steps=-1: the estimate needs"),
])
def test_estimate_command_refuses_before_anything_runs(tmp_path, tiny_checkpoint, monkeypatch, override, message):
    config = tiny_yaml(tmp_path, tiny_checkpoint)
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(SystemExit) as raised:
        main(["estimate", "--config", str(config), *override])
    assert str(raised.value).startswith("lightning-adapt estimate: error: ") and message in str(raised.value)
    assert listing(tmp_path) == before


def test_estimate_command_needs_to_know_the_training_command(tmp_path, tiny_checkpoint):
    config = tiny_yaml(tmp_path, tiny_checkpoint)
    config.write_text("\n".join(config.read_text().splitlines()[1:]))
    with pytest.raises(SystemExit, match="name the command to estimate"):
        main(["estimate", "--config", str(config)])


def test_flops_follow_the_trainers_batches_over_epochs_when_examples_differ_in_length(tmp_path, tiny_checkpoint):
    """Padded micro-batches of very different lengths, four epochs: each step's shapes must be the Trainer's own
    (a DataLoader drawn outside a Trainer orders later epochs differently)."""
    rows = [{"instruction": "Which colour is number %d?%s" % (i, " really" * (7 * (i % 4))), "input": "",
             "output": COLOURS[i % 5]} for i in range(20)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    def parts():
        return (FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False),
                Instructions(str(data), batch_size=4, val_fraction=0.2))

    predicted = estimate_training(*parts(), CPU, max_steps=16, probe_steps=1)
    module, datamodule = parts()
    quiet_trainer(tmp_path, max_steps=16, limit_val_batches=0, callbacks=[Accounting()]).fit(module, datamodule=datamodule)
    flops = metrics(tmp_path / "logs" / "metrics.csv")["flops/train"]
    steps = [b - a for a, b in zip([0.0, *flops], flops)]
    assert len(set(steps)) > 2  # the lengths do differ from step to step
    assert predicted.training_flops == pytest.approx(flops[-1], rel=1e-12)


# --- refusing a probe that cannot fit in memory (issue #31) ----------------------------------------------------------

CPT_YAML = """# lightning-adapt cpt --config {path}
model:
  checkpoint_dir: {checkpoint}
  max_seq_length: 48
  general_val: null
  export: false
data:
  class_path: lightning_adapt.TextCorpus
  init_args: {{path: {corpus}, documents: paragraph, batch_size: 4}}
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 5
  limit_val_batches: 0
  default_root_dir: {root}
"""
REFUSING_RSS = 1.5e9
"""The most a refusing estimate may hold: its imports, the tiny model and corpus (about 0.6 GB on this project's CPU);
the old probe built the micro-batch of a million blocks and stopped at CAPPED_DATA, failing to allocate its logits."""
CAPPED_DATA = 3 * 2**30
"""The estimate's data segment (RLIMIT_DATA): a process that builds the micro-batch fails here, not on the machine."""
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def cpt_yaml(tmp_path: Path, checkpoint: Path, corpus: str) -> Path:
    path = tmp_path / "cpt.yaml"
    path.write_text(CPT_YAML.format(path=path, checkpoint=checkpoint, corpus=corpus, root=tmp_path / "out"))
    return path


@pytest.mark.slow
def test_estimate_refuses_a_micro_batch_that_cannot_fit_while_the_process_is_small(tmp_path, tiny_checkpoint, corpus):
    """A million blocks per micro-batch is refused before any is built: the field and both numbers named, by a
    process no larger than its imports, model and corpus (the probe used to build it and run it until killed)."""
    config = cpt_yaml(tmp_path, tiny_checkpoint, corpus)
    code, output, peak = run_cli_capped(["estimate", "--config", str(config), "--data.batch_size", "1000000"],
                                        CAPPED_DATA, cwd=tmp_path, data_only=True)
    errors = [line for line in output.splitlines() if line.startswith("lightning-adapt estimate: error: ")]
    assert code == 1 and errors, output[-3000:]
    found = re.search(r"would need ([\d.]+) (\w+) of memory on cpu, but ([\d.]+) (\w+) is available", errors[0])
    assert found, errors[0]
    needed, available = (float(found[i]) * UNITS[found[i + 1]] for i in (1, 3))
    logits = 1_000_000 * 48 * tiny_config().padded_vocab_size * 4  # float32 logits alone, kept for the loss
    assert needed >= logits > available > 0
    assert "a micro-batch of 1,000,000 rows x 48 tokens" in errors[0] and "Lower data.batch_size" in errors[0]
    assert "--force" in errors[0]
    assert peak < REFUSING_RSS, f"peak RSS {peak / 1e9:.2f} GB while refusing"


def test_the_memory_check_predicts_the_parts_the_probe_measures(tiny_biased_checkpoint, corpus, monkeypatch):
    """The check's prediction, made before the first micro-batch, is the estimate's: the same fixed parts exactly
    (the optimizer's state predicted before it exists), activations from one and two short rows within 2%."""
    made = []
    need = estimate._need
    monkeypatch.setattr(estimate, "_need", lambda *args: made.append(need(*args)) or made[-1])
    module = ContinualPretraining(tiny_biased_checkpoint, lora=LoRA(r=4, targets=["query", "value", "mlp"]),
                                  general_val=None, export=False, max_seq_length=48, activation_checkpointing=True)
    predicted = estimate_training(module, TextCorpus(corpus, documents="paragraph", batch_size=4), CPU, max_steps=2,
                                  probe_steps=1)
    memory, (check,) = predicted.memory, made
    assert check.fixed == memory.baseline_bytes + memory.model_bytes + memory.gradient_bytes + memory.optimizer_bytes
    for checkpointed, activations in ((False, memory.activation_bytes), (True, memory.activation_bytes_checkpointed)):
        assert check.constant[checkpointed] + check.per_position[checkpointed] * 4 * 48 == pytest.approx(
            activations, rel=0.02)


def test_no_memory_left_refuses_the_probe_unless_forced(tmp_path, tiny_checkpoint, corpus, monkeypatch, capsys):
    config = cpt_yaml(tmp_path, tiny_checkpoint, corpus)
    monkeypatch.setattr(estimate, "_memory_left", lambda device: (1000, 0))
    with pytest.raises(SystemExit) as raised:
        main(["estimate", "--config", str(config)])
    assert str(raised.value).startswith("lightning-adapt estimate: error: The estimate's probe would need ")
    assert "but 1.0 kB is available (1.0 kB held by this process, 0.0 B free)" in str(raised.value)
    main(["estimate", "--force", "--config", str(config)])
    assert "Training estimate, one process on cpu" in capsys.readouterr().out


def test_a_batch_size_beyond_the_data_is_not_refused(tmp_path, tiny_checkpoint, monkeypatch):
    """A map-style micro-batch holds at most every example: the check counts the rows the loader gives, not
    batch_size."""
    data = write_instruction_file(tmp_path / "train.jsonl", n=24)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False, max_seq_length=64)
    checked, check = [], estimate._Need.check

    def recording(need, rows, positions, checkpointed):
        checked.append(rows)
        check(need, rows, positions, checkpointed)  # and refuses as it would

    monkeypatch.setattr(estimate._Need, "check", recording)
    predicted = estimate_training(module, Instructions(str(data), batch_size=1_000_000), CPU, max_steps=2,
                                  probe_steps=1)
    assert checked[0] == 22 and predicted.tokens_per_step < 22 * 64  # 24 examples, 2 held out


def test_the_probe_leaves_nothing_of_its_model_alive(tmp_path, tiny_checkpoint, monkeypatch):
    """The probe measures what autograd saves with saved-tensor hooks; a hook that kept the tensor itself made each
    saved output hold its own graph, a cycle through C++ that gc never frees: every later run in the process (compare
    estimates each run before it trains) measured the probe's model as its own memory."""
    data = write_instruction_file(tmp_path / "train.jsonl", n=16)
    weights, configure = [], FineTuning.configure_model

    def configure_and_watch(self: FineTuning) -> None:
        configure(self)
        weights.extend(weakref.ref(parameter) for parameter in self.model.parameters())

    monkeypatch.setattr(FineTuning, "configure_model", configure_and_watch)
    module = FineTuning(tiny_checkpoint, general_val=None, export=False)
    estimate_training(module, Instructions(str(data), batch_size=4), CPU, max_steps=2, probe_steps=1)
    del module
    gc.collect()
    assert weights and sum(weight() is not None for weight in weights) == 0


def test_the_probe_is_quiet_and_says_how_long_it_took(tmp_path, tiny_checkpoint):
    """The probe's Trainers print none of Lightning's setup lines, nor the warnings of a module that only draws
    batches or of a warmup longer than the probe (the run itself warns of its own warmup), and the estimate says
    what it cost."""
    data = write_instruction_file(tmp_path / "train.jsonl", n=16)
    module = FineTuning(tiny_checkpoint, general_val=None, export=False)  # warmup_steps=10: longer than the probe
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always")
            start = time.perf_counter()
            predicted = estimate_training(module, Instructions(str(data), batch_size=4), CPU | {"limit_val_batches": 1},
                                          max_steps=20, probe_steps=1)
            elapsed = time.perf_counter() - start
    finally:
        logger.removeHandler(handler)
    assert not [line for line in lines if line.startswith(("GPU available", "`Trainer.fit` stopped", "💡 Tip"))]
    shown = [str(warning.message) for warning in raised]
    assert not [text for text in shown if "warmup_steps" in text or "validation_step" in text or "LeafSpec" in text]
    assert 0 < predicted.probe_s <= elapsed and predicted.to_dict()["probe_s"] == predicted.probe_s
    assert f"timed steps, {predicted.probe_s:.1f} s)" in estimate.format_estimate(predicted)
