"""FSDP2 (`--trainer.strategy fsdp2`) and FSDP1 (`--trainer.strategy fsdp`, here `FSDP1Strategy` on the CPU, which
Lightning allows for a subclass of `FSDPStrategy` only) on two CPU processes over gloo, against DDP on the same data:
losses, the ICL timeline, counts, checkpoints, resume (2 -> 2 and 2 -> 1 processes), export, two nodes on localhost,
and the strategies refused before training."""

import csv
import json
import socket
from pathlib import Path

import pytest
import torch

from lightning_adapt import LoRA
from lightning_adapt.cli import main
from lightning_adapt.icl.callback import check_strategy
from lightning_adapt.distributed.sharding import FSDP1Strategy, FSDP2Strategy, StrategyError, check_world_size
from lightning_adapt.distributed.strategies import check_training_strategy
from tests.helpers import COLOURS, finish, launch_cli, run_processes, write_instruction_file, OWN_INSTRUCTIONS
from tests.methods.conftest import write_sharding_data

ROOT = Path(__file__).parents[2]
FINETUNE = ROOT / "lightning_adapt" / "configs" / "finetune"

SCRIPT = '''
import json, sys
from datetime import timedelta
from functools import partial
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning_adapt import (Accounting, DeepSpeedStrategy, FineTuning, FSDP1Strategy, FSDP2Strategy, ICLEvaluation,
                             ICLTask, Instructions, LoRA)
from lightning_adapt.icl.task import Generation

kind, checkpoint, data, out, method = sys.argv[1:6]
resume_from = sys.argv[6] if len(sys.argv) > 6 else None
timeout = timedelta(seconds=90)
strategies = {"fsdp2": FSDP2Strategy, "fsdp1": FSDP1Strategy, "ddp": DDPStrategy,
              "deepspeed_stage_2": partial(DeepSpeedStrategy, stage=2), "deepspeed_stage_3": partial(DeepSpeedStrategy, stage=3)}
strategy = strategies[kind](timeout=timeout)
if kind.startswith("deepspeed"):  # DeepSpeed's CPU accelerator would JIT-compile (~30 s per fresh venv) a shared-
    import deepspeed.ops            # memory all-reduce for itself; gloo's own collectives serve these runs
    deepspeed.ops.__compatible_ops__ = {**deepspeed.ops.__compatible_ops__, "deepspeed_shm_comm": False}
L.seed_everything(3)
module = FineTuning(checkpoint, lora=LoRA(r=4, targets=["query", "value", "mlp"]) if method != "full" else None,
                    quantize=method if method in ("nf4", "int8") else None, max_seq_length=48, general_val=f"{data}/general.txt", general_val_blocks=3, out_dir=out,
                    activation_checkpointing=kind != "ddp")
common = dict(queries=f"{data}/queries.jsonl", template="Review: {text}\\nSentiment:", target="label")
tasks = [ICLTask(name="sent", demos=f"{data}/demos.jsonl", choices=["Positive", "Negative"], shots=[0, 2],
                 seeds=[0, 1], **common),
         ICLTask(name="gen", demos=f"{data}/demos.jsonl", generate=Generation(max_new_tokens=3), shots=[1], **common)]
icl = ICLEvaluation(tasks, batch_size=3)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=6, val_check_interval=3,
                    limit_val_batches=2, num_sanity_val_steps=0, logger=CSVLogger(out, name="", version=""),
                    callbacks=[icl, Accounting(), ModelCheckpoint(every_n_train_steps=3, save_top_k=-1)],
                    log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False, default_root_dir=out)
trainer.fit(module, datamodule=Instructions(f"{data}/train.jsonl", batch_size=2, val_fraction=0.25), ckpt_path=resume_from)
with open(f"{out}/rank{trainer.global_rank}.json", "w") as fp:
    json.dump(icl.results.rows, fp)
'''


def metrics(run: Path) -> dict[str, dict[int, float]]:
    """Every logged metric of a run, by name and step."""
    found: dict[str, dict[int, float]] = {}
    with open(run / "metrics.csv") as fp:
        for row in csv.DictReader(fp):
            for name, value in row.items():
                if value and name not in ("step", "epoch"):
                    found.setdefault(name, {})[int(float(row["step"]))] = float(value)
    return found


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)
    return state.get("model", state)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        torch.testing.assert_close(a[name], b[name], atol=tolerance, rtol=0, msg=name)


@pytest.fixture
def data(tmp_path) -> Path:
    return write_sharding_data(tmp_path / "data")


@pytest.mark.slow
@pytest.mark.parametrize("model, method, sharded", [
    ("tiny_biased_checkpoint", "full", ("fsdp2", "fsdp1")), ("tiny_biased_checkpoint", "nf4", ("fsdp2", "fsdp1")),
    ("tiny_checkpoint", "int8", ("fsdp2", "fsdp1")),
])
def test_sharded_runs_train_evaluate_count_and_export_as_ddp_does(script_run, request, model, method, sharded):
    """FSDP2 and FSDP1 against DDP: biases and odd shapes (72-wide embedding, MLP of 100: uneven shards) in full
    fine-tuning and in QLoRA nf4, and QLoRA int8 on the llama-style model (the quantized base is kept whole on every
    process, the rest sharded); activation checkpointing on under sharding only, so it must not change a number
    either. Plain LoRA against DDP: the compare test and the resume tests below."""
    checkpoint = request.getfixturevalue(model)
    runs = {kind: script_run(kind, checkpoint, method) for kind in ("ddp", *sharded)}
    ddp = metrics(runs["ddp"])
    saved = {kind: torch.load(out / "checkpoints" / "epoch=0-step=6.ckpt", weights_only=True) for kind, out in runs.items()}
    for kind in sharded:
        found = assert_same_timeline(runs[kind], ddp)
        assert_same_weights(weights(runs[kind] / "final" / "lit_model.pth"), weights(runs["ddp"] / "final" / "lit_model.pth"))
        assert_same_weights(saved[kind]["state_dict"], saved["ddp"]["state_dict"])  # trainable only, full shapes
        if method != "full":
            assert all("lora_" in name for name in saved[kind]["state_dict"])
            assert_same_weights(weights(runs[kind] / "final" / "lit_model.pth.lora"),
                                weights(runs["ddp"] / "final" / "lit_model.pth.lora"))
        assert_same_optimizer_state(saved[kind]["optimizer_states"][0], saved["ddp"]["optimizer_states"][0])
        assert len(saved[kind]["optimizer_states"][0]["state"]) == len(saved[kind]["state_dict"])
        held = found["memory/model_bytes"][0]
        assert held < 0.75 * ddp["memory/model_bytes"][0]  # a process holds its shards (and, for QLoRA, the 4-bit base)
        if method in ("nf4", "int8"):  # the model's count, not the packed 4-bit storage's
            from lightning_adapt.model.loading import build_model, load_config

            with torch.device("meta"):
                unquantized = build_model(load_config(checkpoint, LoRA(r=4, targets=["query", "value", "mlp"])))
            assert found["params/total"][0] == sum(p.numel() for p in unquantized.parameters())


def assert_same_timeline(run: Path, ddp: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    """A SCRIPT run logged DDP's losses, counts, FLOPs and ICL scores at DDP's steps (within 2e-5), and every
    process ended with all ICL results; its metrics."""
    found = metrics(run)
    assert found.keys() == ddp.keys(), run
    icl = [name for name in ddp if name.startswith("icl/") and not name.endswith("seconds")]
    assert "icl/sent/acc@k2" in icl and "icl/gen/exact_match@k1" in icl
    for name in ["train/loss", "val/domain_loss", "val/general_loss", "params/total", "params/trainable",
                 "params/changed_bytes", "flops/train", *icl]:
        assert found[name].keys() == ddp[name].keys(), (run, name)
        assert found[name] == pytest.approx(ddp[name], abs=2e-5), (run, name)
    assert sorted(found["icl/sent/acc@k0"]) == [0, 3, 6] and sorted(found["val/general_loss"]) == [0, 3, 6]
    ranks = [json.loads((run / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # every process ends with all results
    return found


def assert_same_optimizer_state(a: dict, b: dict, tolerance: float = 1e-6) -> None:
    """The same states in the same order (the numbers may differ: a torch optimizer loads a state by its position in
    the param groups, so a one-process run can resume from either)."""
    assert len(a["param_groups"]) == len(b["param_groups"])
    for group_a, group_b in zip(a["param_groups"], b["param_groups"]):
        assert {k: v for k, v in group_a.items() if k != "params"} == {k: v for k, v in group_b.items() if k != "params"}
        assert len(group_a["params"]) == len(group_b["params"])
        for id_a, id_b in zip(group_a["params"], group_b["params"]):
            assert a["state"][id_a].keys() == b["state"][id_b].keys()
            for name, value in b["state"][id_b].items():
                torch.testing.assert_close(a["state"][id_a][name], value, atol=tolerance, rtol=0, msg=(id_b, name))


def fsdp2_args(checkpoint: Path, data: Path, root: Path, devices: int = 2,
               strategy: str = "lightning_adapt.FSDP2Strategy") -> list[str]:
    return [
        "finetune", "--config", str(FINETUNE / "lora.yaml"), "--model.checkpoint_dir", str(checkpoint),
        "--model.max_seq_length", "48", "--data.init_args.path", str(data), *OWN_INSTRUCTIONS, "--data.init_args.batch_size", "2",
        "--trainer.max_steps", "4", "--trainer.val_check_interval", "4", "--trainer.limit_val_batches", "2",
        "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.enable_progress_bar", "false",
        "--trainer.strategy", strategy, "--trainer.strategy.timeout", "0:01:30",
        "--trainer.default_root_dir", str(root), "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.every_n_train_steps=2", "--trainer.callbacks.save_top_k=-1",
    ]  # fmt: skip


def icl_args(data: Path) -> list[str]:
    """CLI arguments adding an ICLEvaluation of the colour task (4 queries, 0-shot) to a run."""
    task = {"name": "colour", "queries": str(data), "template": "{instruction}", "target": "output",
            "choices": COLOURS, "max_queries": 4}
    return ["--trainer.callbacks+=lightning_adapt.ICLEvaluation", "--trainer.callbacks.tasks", json.dumps([task])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp_resumes_on_two_and_on_one_process_exports_and_runs_on_two_nodes(tmp_path, tiny_checkpoint):
    """LoRA from the CLI: FSDP2 resumed 2 -> 2 and 2 -> 1, exported, and on two "nodes"; FSDP1 the same run as FSDP2,
    resumed 2 -> 2 and 2 -> 1 and exported. The one-process runs also score ICL (world size 1 is still sharded)."""
    data = write_instruction_file(tmp_path / "train.jsonl", n=48)
    expected = {}
    for kind, strategy in (("fsdp2", "lightning_adapt.FSDP2Strategy"), ("fsdp1", "lightning_adapt.FSDP1Strategy")):
        straight = tmp_path / kind / "straight"
        finish(launch_cli(fsdp2_args(tiny_checkpoint, data, straight, strategy=strategy), tmp_path, processes=2))
        logs = straight / "logs" / "version_0"
        expected[kind] = metrics(logs)["train/loss"]
        assert sorted(expected[kind]) == [1, 2, 3, 4]
        step2 = logs / "checkpoints" / "epoch=0-step=2.ckpt"

        resumed = tmp_path / kind / "resumed"  # 2 -> 2 processes: exactly where the straight run went
        finish(launch_cli([*fsdp2_args(tiny_checkpoint, data, resumed, strategy=strategy), "--ckpt_path", str(step2)],
                          tmp_path, processes=2))
        again = metrics(resumed / "logs" / "version_0")["train/loss"]
        assert again == pytest.approx({step: expected[kind][step] for step in (3, 4)}, abs=1e-6, rel=0), kind
        assert_same_weights(weights(resumed / "final" / "lit_model.pth.lora"),
                            weights(straight / "final" / "lit_model.pth.lora"))

        one = tmp_path / kind / "one"  # 2 -> 1 process: the state loads into one shard and training goes on,
        finish(launch_cli([*fsdp2_args(tiny_checkpoint, data, one, devices=1, strategy=strategy), "--ckpt_path",
                           str(step2), *icl_args(data)], tmp_path))  # scoring ICL on the world-size-1 shards
        continued = metrics(one / "logs" / "version_0")
        assert sorted(continued["train/loss"]) == [3, 4] and all(0 < v < 10 for v in continued["train/loss"].values())
        assert sorted(continued["icl/colour/acc@k0"]) == [2, 4]

        exported = tmp_path / kind / "exported"  # one process, no strategy: the .ckpt's trainable weights on the base
        main(["export", str(logs / "checkpoints" / "epoch=0-step=4.ckpt"), "--out_dir", str(exported)])
        assert_same_weights(weights(exported / "lit_model.pth"), weights(straight / "final" / "lit_model.pth"))
    assert expected["fsdp1"] == pytest.approx(expected["fsdp2"], abs=1e-6, rel=0)
    assert_same_weights(weights(tmp_path / "fsdp1" / "straight" / "final" / "lit_model.pth.lora"),
                        weights(tmp_path / "fsdp2" / "straight" / "final" / "lit_model.pth.lora"))

    nodes = tmp_path / "nodes"  # two "nodes" of one device each, on localhost: the same run as two local devices
    args = [*fsdp2_args(tiny_checkpoint, data, nodes, devices=1), "--trainer.num_nodes", "2"]
    port = str(free_port())
    finish(*[launch_cli(args, tmp_path, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank))
             for rank in (0, 1)])
    assert metrics(nodes / "logs" / "version_0")["train/loss"] == pytest.approx(expected["fsdp2"], abs=1e-6, rel=0)


def test_strategies_that_cannot_train_are_refused_by_class_not_name():
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    class MyDDP(DDPStrategy):
        pass

    class MyFSDP(FSDPStrategy):
        pass

    class MyFSDP2(FSDP2Strategy):
        pass

    import lightning as L

    named = L.Trainer(strategy="fsdp2", accelerator="cpu", devices=1, logger=False).strategy  # the CLI/YAML spelling
    assert isinstance(named, FSDP2Strategy)
    class MyFSDP1(FSDP1Strategy):
        pass

    from lightning.pytorch.strategies import StrategyRegistry

    assert StrategyRegistry["fsdp"]["strategy"] is FSDP1Strategy  # `--trainer.strategy fsdp` (Lightning: GPU only)
    for strategy in (DDPStrategy(), MyDDP(), named, MyFSDP2(), FSDP1Strategy(), MyFSDP1()):
        check_training_strategy(strategy)
    with pytest.raises(StrategyError, match="ModelParallelStrategy is not supported.*--trainer.strategy fsdp2"):
        check_training_strategy(ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1))
    with pytest.raises(StrategyError, match="MyFSDP is not supported: use --trainer.strategy fsdp \\(lightning_adapt"):
        check_training_strategy(MyFSDP())
    with pytest.raises(StrategyError, match="DeepSpeedStrategy \\(ZeRO stage 2\\) is not supported: use --trainer.strategy "
                                            "deepspeed_stage_2 or deepspeed_stage_3 \\(lightning_adapt.DeepSpeedStrategy"):
        check_training_strategy(DeepSpeedStrategy())  # Lightning's own: its checkpoints would hold the frozen base
    with pytest.raises(StrategyError, match="started 3 processes, but .* num_nodes=2 x devices=2 = 4"):
        check_world_size(3, 2, 2)


def test_icl_evaluation_refuses_other_fsdp1_strategies_and_accepts_unsharded_models(tiny_checkpoint):
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    from lightning_adapt.model.loading import load_config, load_model

    class MyFSDP(FSDPStrategy):
        pass

    model = load_model(tiny_checkpoint, load_config(tiny_checkpoint))
    check_strategy(DDPStrategy(), model)
    check_strategy(FSDP2Strategy(), model)
    with pytest.raises(NotImplementedError, match="does not support MyFSDP yet: train with --trainer.strategy fsdp2 or"):
        check_strategy(MyFSDP(), model)
    with pytest.raises(NotImplementedError, match="FSDP1 models only when every transformer block is its own unit"):
        check_strategy(FSDP1Strategy(), model)  # an unwrapped model under FSDP1: not what the strategy builds


def test_the_cli_refuses_an_unsupported_strategy_before_training(tmp_path, tiny_checkpoint, monkeypatch):
    from tests.helpers import LAUNCH_VARIABLES

    for name in LAUNCH_VARIABLES:  # what the one-process group set up here puts there is removed afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    data = write_instruction_file(tmp_path / "train.jsonl")
    args = fsdp2_args(tiny_checkpoint, data, tmp_path / "run", devices=1)
    at = args.index("lightning_adapt.FSDP2Strategy")
    args[at : at + 3] = ["lightning.pytorch.strategies.ModelParallelStrategy", "--trainer.strategy.tensor_parallel_size", "1"]
    try:
        with pytest.raises(SystemExit, match="ModelParallelStrategy is not supported"):
            main(args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert not list((tmp_path / "run").rglob("*.ckpt"))


def test_activation_checkpointing_changes_no_number(tmp_path, tiny_biased_checkpoint):
    from lightning_adapt import FineTuning, Instructions, LoRA
    from tests.helpers import quiet_trainer

    data = write_instruction_file(tmp_path / "train.jsonl", n=16)
    losses = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module = FineTuning(tiny_biased_checkpoint, lora=LoRA(r=4, dropout=0.1), max_seq_length=48, export=False,
                            activation_checkpointing=checkpointing)
        trainer = quiet_trainer(tmp_path / str(checkpointing), max_steps=3, limit_val_batches=0, enable_checkpointing=False)
        trainer.fit(module, datamodule=Instructions(str(data), batch_size=4, val_fraction=0.25))
        losses.append(metrics(Path(trainer.logger.log_dir))["train/loss"])
    assert losses[0] == pytest.approx(losses[1], abs=1e-6) and len(losses[0]) == 3


@pytest.mark.slow
def test_streaming_cpt_with_uneven_validation_shards_trains_under_fsdp2_as_under_ddp(tmp_path, tiny_checkpoint):
    """Documents of very different lengths, sharded by document: the processes' validation shards differ in length
    and are topped up with empty blocks, so every process runs as many forward passes (else FSDP2 would hang)."""
    from tests.methods.test_resume import cpt_args

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(9):
        (corpus / f"doc{i}.txt").write_text(f"Record {i}: the river Vell runs past Wrenmouth. " * (1 + 7 * (i % 3 == 0)))
    strategies = {"fsdp2": ["lightning_adapt.FSDP2Strategy"], "ddp": ["lightning.pytorch.strategies.DDPStrategy"]}
    found = {}
    for kind, strategy in strategies.items():
        root = tmp_path / kind
        args = [*cpt_args(tiny_checkpoint, corpus, streaming=True), "--data.init_args.val_fraction", "0.5",
                "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "null",
                "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", *strategy,
                "--trainer.strategy.timeout", "0:01:30", "--trainer.enable_progress_bar", "false",
                "--trainer.default_root_dir", str(root), "--model.export", "false"]  # fmt: skip
        finish(launch_cli(args, tmp_path, processes=2))
        found[kind] = metrics(root / "logs" / "version_0")
    for name in ("train/loss", "val/domain_loss", "val/general_loss"):
        assert sorted(found["fsdp2"][name]) == sorted(found["ddp"][name]) and found["fsdp2"][name], name
        assert found["fsdp2"][name] == pytest.approx(found["ddp"][name], abs=2e-5), name


COMPARE_SCRIPT = '''
import sys
from datetime import timedelta
from lightning.pytorch.strategies import DDPStrategy
from lightning_adapt import Compare, FSDP2Strategy, ICLTask, Instructions, LoRA, Optimization, run_compare
from lightning_adapt.compare.settings import FineTuneSettings

kind, checkpoint, data, out = sys.argv[1:5]
strategy = (FSDP2Strategy if kind == "fsdp2" else DDPStrategy)(timeout=timedelta(seconds=90))
common = dict(template="Review: {text}\\nSentiment:", target="label", choices=["Positive", "Negative"])
finetune = FineTuneSettings(Instructions(f"{data}/train.jsonl", val_fraction=0.25, batch_size=2), lora=LoRA(r=4),
                            max_steps=4, val_check_interval=2, optimization=Optimization(learning_rate=3e-3,
                            warmup_steps=1), max_seq_length=48)
compare = Compare(checkpoint_dir=checkpoint, out_dir=out, methods=["icl", "finetune"], finetune=finetune,
                  tasks=[ICLTask(name="sent", queries=f"{data}/queries.jsonl", demos=f"{data}/demos.jsonl",
                                 shots=[0, 1], **common)],
                  general_tasks=[ICLTask(name="general", queries=f"{data}/demos.jsonl", **common)],
                  trainer={"accelerator": "cpu", "devices": 2, "strategy": strategy, "enable_progress_bar": False})
run_compare(compare)
'''


@pytest.mark.slow
def test_compare_trains_under_fsdp2_on_two_processes_and_one_writes_the_report(tmp_path, data, tiny_checkpoint):
    reports = {}
    for kind in ("fsdp2", "ddp"):
        out = tmp_path / kind
        stdout = run_processes(COMPARE_SCRIPT, [kind, str(tiny_checkpoint), str(data), str(out)], tmp_path)
        assert stdout.count("report: ") == 1  # global rank 0 alone prints and writes it
        reports[kind] = json.loads((out / "report" / "report.json").read_text())
    flat = {kind: dict(leaves(report, ("runs", "tasks", "general_tasks"))) for kind, report in reports.items()}
    assert flat["fsdp2"].keys() == flat["ddp"].keys()
    measured = [key for key in flat["ddp"] if not any(word in key for word in TIMINGS)]
    assert any("general_loss" in key for key in measured) and any("training_flops" in key for key in measured)
    for key in measured:
        assert flat["fsdp2"][key] == pytest.approx(flat["ddp"][key], abs=2e-5), key


TIMINGS = ("seconds", "_s/", "tokens_per_s", "peak_memory", "path", "log_dir", "/spec/")


def leaves(value, keep: tuple[str, ...] = (), prefix: str = ""):
    """(path, value) of every number and string in a report, under the top-level keys `keep`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if prefix or not keep or key in keep:
                yield from leaves(item, (), f"{prefix}{key}/")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from leaves(item, (), f"{prefix}{n}/")
    else:
        yield prefix, value
