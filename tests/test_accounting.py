import csv
import json
import sys
import time
from dataclasses import asdict

import lightning as L
from lightning.pytorch.loggers import Logger
import litgpt.lora
import pytest
import torch
from litgpt import GPT, Config
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lightning_adapt import FineTuning, Instructions, LoRA
from lightning_adapt.record.accounting import Accounting, batch_shape, labelled_positions, record_evaluation
from lightning_adapt.record.flops import forward_flops, inference_flops, micro_batch_flops, training_flops
from lightning_adapt.record.runs import input_tokens, run_info
from lightning_adapt.verdict.run import load_run
from lightning_adapt.icl import ICLEvaluation, ICLTask
from lightning_adapt.testing import tiny_config
from tests.helpers import quiet_trainer, write_instruction_file

BATCH, LENGTH = 2, 64


def measured(model, backward: bool, length: int = LENGTH) -> int:
    """FLOPs torch counts for a forward (and backward) pass; the math SDPA kernel makes attention countable."""
    x = torch.randint(0, model.config.padded_vocab_size, (BATCH, length))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(x)
        if backward:
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), x.flatten()).backward()
    return counter.get_total_flops()


def lora_model(targets: list[str]) -> GPT:
    config = litgpt.lora.Config(**asdict(tiny_config()), **LoRA(r=4, targets=targets).config_kwargs())
    model = litgpt.lora.GPT(config)
    litgpt.lora.mark_only_lora_as_trainable(model)
    return model


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward+backward"])
def test_full_fine_tuning_flops_match_the_flop_counter(backward):
    model = GPT(tiny_config())
    estimate = training_flops if backward else forward_flops
    predicted = BATCH * estimate(model.config, LENGTH, causal=False)
    assert predicted == pytest.approx(measured(model, backward), rel=0.10)
    assert predicted == pytest.approx(measured(model, backward), rel=0.01)  # in fact exact up to rounding


@pytest.mark.parametrize("targets", [["query", "value"], ["mlp"], ["query", "key", "value", "projection", "mlp", "head"]])
def test_lora_flops_match_the_flop_counter_and_backward_skips_frozen_weight_gradients(targets):
    model = lora_model(targets)
    predicted = BATCH * training_flops(model.config, LENGTH, causal=False)
    actual = measured(model, backward=True)
    assert predicted == pytest.approx(actual, rel=0.10)
    assert predicted == pytest.approx(actual, rel=0.01)
    forward = BATCH * forward_flops(model.config, LENGTH, causal=False)
    assert forward == measured(model, backward=False)
    assert 1.75 < predicted / forward < 2.25  # LoRA: ~2x forward (adapters and the layers before them vary it)
    full = BATCH * training_flops(tiny_config(), LENGTH, causal=False)
    assert full == pytest.approx(3 * BATCH * forward_flops(tiny_config(), LENGTH, causal=False))


def test_adapters_cost_two_flops_per_parameter_per_token():
    model = lora_model(["query", "value", "mlp"])
    adapter_params = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    extra = forward_flops(model.config, 10) - forward_flops(tiny_config(), 10)
    assert extra == 2 * adapter_params * 10


def test_forward_and_inference_flops_on_a_hand_computed_config():
    config = Config(n_layer=1, n_head=1, n_embd=4, head_size=4, n_query_groups=1, intermediate_size=8,
                    vocab_size=10, padded_vocab_size=10, mlp_class_name="LLaMAMLP", block_size=16)
    # weight matrices: qkv 4x12 + proj 4x4 + 3 MLP matrices 4x8 + head 4x10 = 200 parameters -> 400 FLOPs/token;
    # causal attention over 3 tokens: 6 query-key pairs x (2 + 2) x 4 = 96
    assert forward_flops(config, 3) == 3 * 400 + 96
    assert forward_flops(config, 3, causal=False) == 3 * 400 + 9 * 16
    assert inference_flops(config, prompt_tokens=2, answer_tokens=1) == forward_flops(config, 3)
    assert training_flops(config, 3) == 3 * forward_flops(config, 3)


def test_unknown_mlp_is_refused():
    config = Config(n_layer=1, n_head=1, n_embd=4, intermediate_size=8, padded_vocab_size=10, mlp_class_name="LLaMAMoE",
                    n_expert=2, n_expert_per_token=1)
    with pytest.raises(ValueError, match="dense MLPs.*LLaMAMoE"):
        forward_flops(config, 4)


class RecordBatches(L.Callback):
    def __init__(self):
        self.shapes = []
        self.tokens = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.shapes.append((*batch["input_ids"].shape, int((batch["labels"][:, 1:] != -100).sum())))
        self.tokens.append(input_tokens(batch))


def rows(log_dir):
    with open(log_dir / "metrics.csv") as fp:
        return list(csv.DictReader(fp))


def test_callback_logs_every_dimension_and_flops_agree_with_a_measured_step(tmp_path, tiny_checkpoint):
    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    task = ICLTask(name="colour", queries=str(data_file), template="{instruction}", target="output",
                   choices=["red", "green", "blue", "yellow", "black"], max_queries=4)
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False)
    record = RecordBatches()
    trainer = quiet_trainer(tmp_path, max_steps=3, val_check_interval=2, limit_val_batches=1, accumulate_grad_batches=2,
                            callbacks=[ICLEvaluation(task, log_predictions=False), Accounting("lora"), record])
    trainer.fit(module, datamodule=Instructions(str(data_file), batch_size=4))

    log_dir = tmp_path / "logs"
    logged = rows(log_dir)
    flops = [(int(r["step"]), float(r["flops/train"])) for r in logged if r.get("flops/train")]
    assert [step for step, _ in flops] == [0, 1, 2, 3]  # once per optimizer step, not per micro-batch
    config = module.model.config
    # the LM head is computed at the labelled positions only (the responses)
    per_batch = [rows_ * training_flops(config, length - 1, head_positions=labelled / rows_)
                 for rows_, length, labelled in record.shapes]
    assert all(labelled < rows_ * (length - 1) for rows_, length, labelled in record.shapes)
    assert len(per_batch) == 6
    assert flops[-1][1] == pytest.approx(sum(per_batch))
    assert flops[1][1] == pytest.approx(sum(per_batch[:2]))
    positions = sum(rows_ * (length - 1) for rows_, length, _ in record.shapes)
    padding = [float(r["train/padding_share"]) for r in logged if r.get("train/padding_share")]
    assert padding[-1] == pytest.approx(1 - sum(record.tokens) / positions) and 0 <= padding[-1] < 0.5

    # one real training step, counted by torch (dense attention via the math kernel), within 10% of the formula
    batch = next(iter(trainer.datamodule.train_dataloader()))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module.loss_and_count(batch, 0)[0].backward()
    rows_, length = batch["input_ids"].shape
    assert micro_batch_flops(config, rows_, length - 1, labelled_positions(batch)) == pytest.approx(
        counter.get_total_flops(), rel=0.10)

    start = next(r for r in logged if r.get("params/changed_bytes"))
    lora_params = sum(p.numel() for n, p in module.model.named_parameters() if "lora_" in n)
    assert float(start["params/trainable"]) == lora_params
    assert float(start["params/changed_bytes"]) == 4 * lora_params  # float32 adapters
    assert float(start["params/total"]) == sum(p.numel() for p in module.model.parameters())
    walls = [float(r["time/wall_s"]) for r in logged if r.get("time/wall_s")]
    assert walls == sorted(walls) and walls[0] > 0
    assert all(float(r["throughput/tokens_per_s"]) > 0 for r in logged if r.get("throughput/tokens_per_s"))
    assert all(float(r["memory/peak_bytes"]) > 10e6 for r in logged if r.get("memory/peak_bytes"))
    first = [(int(r["step"]), float(r["time/first_result_s"])) for r in logged if r.get("time/first_result_s")]
    icl_steps = [int(r["step"]) for r in logged if r.get("icl/colour/acc@k0")]
    assert len(first) == 1 and first[0][0] == icl_steps[1] == 1  # val_check_interval counts micro-batches
    assert float(logged[-1]["time/wall_s"]) >= first[0][1]

    info = json.loads((log_dir / "accounting.json").read_text())
    assert info["method"] == "lora" and info["module"] == "lightning_adapt.methods.finetune.FineTuning"
    assert info["checkpoint_dir"] == str(tiny_checkpoint.resolve())
    assert info["tasks"][0]["name"] == "colour" and info["tasks"][0]["queries"]["path"] == str(data_file.resolve())
    assert info["lora"]["lora_r"] == 4 and info["params"]["trainable"] == lora_params
    assert info["data"]["path"] == str(data_file) and info["trainer"]["accumulate_grad_batches"] == 2
    assert Config(**info["model_config"]).n_layer == config.n_layer
    assert {"torch", "lightning", "litgpt", "python"} <= set(info["versions"])


def test_module_without_the_protocol_is_refused(tmp_path):
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return self.layer(batch).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="Accounting needs Plain to expose `model`"):
        quiet_trainer(tmp_path, max_steps=1, callbacks=[Accounting()]).fit(Plain(), [torch.zeros(2)])


def test_a_resumed_run_continues_its_flop_token_and_time_axes(tmp_path, tiny_checkpoint):
    from lightning.pytorch.callbacks import ModelCheckpoint

    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)

    def fit(folder, max_steps, ckpt_path=None):
        L.seed_everything(0)
        module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False)
        saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
        trainer = quiet_trainer(folder, max_steps=max_steps, limit_val_batches=0, callbacks=[Accounting("lora"), saver],
                                enable_checkpointing=True)
        trainer.fit(module, datamodule=Instructions(str(data_file), batch_size=4), ckpt_path=ckpt_path)
        return rows(folder / "logs")

    first = fit(tmp_path / "first", 2)
    resumed = fit(tmp_path / "resumed", 4, ckpt_path=tmp_path / "ckpt" / "epoch=0-step=2.ckpt")

    def last(logged, key):
        return float([r for r in logged if r.get(key)][-1][key])

    at_resume = next(r for r in resumed if r.get("flops/train"))
    assert int(at_resume["step"]) == 2
    for key in ("flops/train", "train/tokens"):
        assert float(at_resume[key]) == last(first, key) and last(resumed, key) > last(first, key)
    assert float(at_resume["time/wall_s"]) > last(first, "time/wall_s")
    assert float(at_resume["time/train_s"]) == pytest.approx(last(first, "time/train_s"), rel=1e-3)


class SlowEvaluation(L.Callback):
    """Evaluations that take `seconds`: at the start of training (as the step-0 ICL evaluation) and after every
    validation."""

    def __init__(self, seconds):
        self.seconds, self.evaluations = seconds, 0

    def on_train_start(self, trainer, pl_module):
        self._evaluate()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._evaluate()

    def _evaluate(self):
        time.sleep(self.seconds)
        self.evaluations += 1


@pytest.mark.parametrize("first", ["evaluation", "accounting"])
def test_evaluation_time_is_measured_apart_from_training_time(tmp_path, tiny_checkpoint, first):
    """Evaluations of 0.4 s (at step 0, after step 2), whichever callback comes first: time/eval_s holds them and
    time/train_s none of them; a step's last row includes the evaluation made there."""
    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    slow = SlowEvaluation(0.4)
    callbacks = [slow, Accounting("lora")] if first == "evaluation" else [Accounting("lora"), slow]
    trainer = quiet_trainer(tmp_path, max_steps=3, val_check_interval=2, limit_val_batches=1, callbacks=callbacks)
    trainer.fit(FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False),
                datamodule=Instructions(str(data_file), batch_size=4))
    run = load_run(tmp_path / "logs")
    evaluated, trained, wall = run.metrics["time/eval_s"], run.metrics["time/train_s"], run.metrics["time/wall_s"]
    assert sorted(evaluated) == [0, 1, 2, 3] and slow.evaluations >= 2
    assert evaluated[0] >= 0.4 and evaluated[2] - evaluated[1] >= 0.4 and run.last("time/eval_s") >= 0.4 * slow.evaluations
    assert run.last("time/train_s") < run.last("time/wall_s") - run.last("time/eval_s")
    assert wall[2] - wall[1] >= 0.4  # step 2's wall time includes its evaluation


class MemoryLogger(Logger):
    """A logger that is not a CSVLogger (as TensorBoard or W&B are), keeping what it is given."""

    def __init__(self, root):
        super().__init__()
        self.root, self.logged = root, []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))


@pytest.mark.parametrize("logger", ["memory", "none"])
def test_the_run_record_does_not_depend_on_the_users_logger(tmp_path, tiny_checkpoint, logger):
    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    user_logger = MemoryLogger(tmp_path / "tb") if logger == "memory" else False
    trainer = quiet_trainer(tmp_path / "run", max_steps=2, limit_val_batches=1, val_check_interval=2,
                            logger=user_logger, callbacks=[Accounting("lora")], enable_checkpointing=False)
    trainer.fit(FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False),
                datamodule=Instructions(str(data_file), batch_size=4))
    run = load_run(tmp_path / "run")  # a logger without a save_dir: the record goes to the default_root_dir
    assert sorted(run.metrics["flops/train"]) == [0, 1, 2] and sorted(run.metrics["train/loss"]) == [1, 2]
    assert "val/loss" in run.metrics and run.info["method"] == "lora"
    if logger == "memory":  # the user's own logger still gets everything
        assert any("train/loss" in metrics for _, metrics in user_logger.logged)


def test_an_evaluation_without_training_is_recorded_as_a_run(tmp_path):
    info = run_info("icl", None, tiny_config(), tmp_path / "base", [])
    records = [{"task": "t", "k": 0, "seed": 0, "query": 3, "acc": 1.0}]
    recorded = record_evaluation(tmp_path / "icl", lambda: ({"icl/t/acc@k0": 0.5}, records), info, torch.device("cpu"))
    run = load_run(tmp_path / "icl")
    assert run.log_dir == recorded.log_dir and run.method == "icl" and not run.trains
    assert {key: {0: value} for key, value in recorded.metrics.items()} == run.metrics  # what it wrote, in memory
    assert recorded.predictions == records
    assert run.metrics["icl/t/acc@k0"] == {0: 0.5}
    assert run.metrics["time/wall_s"] == run.metrics["time/first_result_s"] == run.metrics["time/eval_s"]
    assert run.last("memory/peak_bytes") > 10e6
    assert not [key for key in run.metrics if key.startswith(("params/", "train/", "flops/"))]  # it trained nothing
    assert run.outcomes("t", "acc", 0, 0) == {0: {(None, 3): 1.0}}  # its predictions, as ICLEvaluation writes them


def colour_task(data_file) -> ICLTask:
    return ICLTask(name="colour", queries=str(data_file), template="{instruction}", target="output",
                   choices=["red", "green", "blue", "yellow", "black"], max_queries=4)


def test_report_works_on_a_run_logged_with_tensorboard_only(tmp_path, tiny_checkpoint, capsys):
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_adapt.cli import main

    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    trainer = quiet_trainer(tmp_path / "run", max_steps=2, limit_val_batches=1, val_check_interval=2,
                            logger=TensorBoardLogger(tmp_path / "run", name="tb"), enable_checkpointing=False,
                            callbacks=[ICLEvaluation(colour_task(data_file), log_predictions=False), Accounting("lora")])
    trainer.fit(FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False),
                datamodule=Instructions(str(data_file), batch_size=4))
    version = tmp_path / "run" / "tb" / "version_0"
    assert next(version.glob("events.out.tfevents.*")).stat().st_size > 0  # the user's logger wrote its own
    assert (version / "record" / "accounting.json").is_file()  # and the library its run record beside it

    main(["report", str(tmp_path / "run"), "--out_dir", str(tmp_path / "report")])
    assert "colour: recommend " in capsys.readouterr().out
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    timeline = report["tasks"]["colour"]["arms"]["lora"]["timeline"]
    assert [p["step"] for p in timeline] == [0, 2] and timeline[-1]["tokens"] > 0 and timeline[-1]["flops"] > 0
    assert report["runs"][0]["params_trainable"] > 0 and report["runs"][0]["domain_loss"][-1]["step"] == 2


ACCOUNTING_KEYS = {"params/trainable", "params/total", "params/changed_bytes", "train/tokens", "train/examples",
                   "train/padding_share",
                   "flops/train", "time/wall_s", "time/train_s", "time/eval_s", "time/first_result_s", "throughput/tokens_per_s",
                   "memory/peak_bytes", "memory/model_bytes"}


class WriterLogger(MemoryLogger):
    """Keeps, per logged key, the classes of the callbacks or modules whose code called the loggers (values given to
    `self.log` reach the loggers through Lightning's logger connector: those are the module's)."""

    def __init__(self, root):
        super().__init__(root)
        self.writers = {}

    def log_metrics(self, metrics, step=None):
        writer = caller_class()
        for key in metrics:
            self.writers.setdefault(key, set()).add(writer)


def caller_class() -> str:
    from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector

    frame = sys._getframe(2)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, _LoggerConnector):
            owner = owner.trainer.lightning_module
        if isinstance(owner, (L.Callback, L.LightningModule)):
            return type(owner).__name__
        frame = frame.f_back
    raise AssertionError("log_metrics was called by neither a callback nor a module")


def test_every_metric_key_has_one_writer(tmp_path, tiny_checkpoint):
    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    logger = WriterLogger(tmp_path)
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=1, val_check_interval=2, logger=logger,
                            callbacks=[ICLEvaluation(colour_task(data_file), log_predictions=False), Accounting("lora")])
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val="builtin:general_text.txt", general_val_blocks=1,
                        export=False)
    trainer.fit(module, datamodule=Instructions(str(data_file), batch_size=4))

    assert {key: len(names) for key, names in logger.writers.items() if len(names) > 1} == {}
    owner = {key: next(iter(names)) for key, names in logger.writers.items()}
    assert ACCOUNTING_KEYS <= set(owner) and {owner[key] for key in ACCOUNTING_KEYS} == {"Accounting"}
    assert {owner[key] for key in owner if key.startswith("icl/")} == {"ICLEvaluation"}
    assert {owner[key] for key in set(owner) - ACCOUNTING_KEYS if not key.startswith("icl/")} == {"FineTuning"}
    # in the run record every value sits at the optimizer steps completed when it was measured, whichever path
    # logged it (the loggers directly, or self.log)
    steps = {key: sorted(values) for key, values in load_run(tmp_path / "record").metrics.items()}
    assert steps["icl/colour/acc@k0"] == steps["val/domain_loss"] == steps["val/general_loss"] == [0, 2]
    assert steps["flops/train"] == steps["train/tokens"] == [0, 1, 2] and steps["train/loss"] == [1, 2]


def test_training_tokens_are_the_inputs_the_model_reads_padding_excluded():
    """A row of n real tokens is read as n - 1 inputs (its last token is only a target); padding is no token. FLOPs
    count every position the model computes, padding included."""
    padded = {"input_ids": torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]), "labels": torch.zeros(2, 5),
              "token_counts": {"raw_plus_prompt_template": torch.tensor([[5], [3]])}}  # LitGPT's SFT collate
    assert input_tokens(padded) == 4 + 2 and batch_shape(padded) == (2, 4)
    blocks = torch.zeros(3, 33, dtype=torch.long)  # LitGPT's pretraining modules: bare blocks of max_seq_length + 1
    assert input_tokens(blocks) == input_tokens([blocks]) == input_tokens({"input_ids": blocks}) == 3 * 32


class ExampleLengths(L.Callback):
    """Adds up, per optimizer step, the tokens of the examples each batch holds, read from the dataset itself."""

    def __init__(self):
        self.inputs = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dataset = trainer.datamodule.train_dataset
        self.inputs += sum(len(dataset[int(i)]["input_ids"]) - 1 for i in batch["index"])


def test_train_tokens_and_tokens_per_second_count_every_examples_inputs(tmp_path, tiny_checkpoint):
    data_file = write_instruction_file(tmp_path / "train.jsonl", n=24)
    lengths, logger = ExampleLengths(), MemoryLogger(tmp_path)
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=0, logger=logger,
                            callbacks=[lengths, Accounting("lora")])
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), general_val=None, export=False)
    trainer.fit(module, datamodule=Instructions(str(data_file), batch_size=4))
    tokens = [(step, m["train/tokens"]) for step, m in logger.logged if "train/tokens" in m]
    assert module.train_tokens == tokens[-1][1] == lengths.inputs > 0
    rates = [m for _, m in logger.logged if "throughput/tokens_per_s" in m]
    seconds = [m["time/train_s"] for _, m in logger.logged if "time/train_s" in m]
    assert rates[-1]["throughput/tokens_per_s"] == pytest.approx(
        (tokens[-1][1] - tokens[-2][1]) / (seconds[-1] - seconds[-2]), rel=1e-6)
