"""plugins/lm_eval: lm-evaluation-harness tasks as lightning-adapt ICL tasks (`LMEvalTask`) give lm-eval's own numbers.

Task YAMLs are written by the tests over local JSONL (lm-eval's `dataset_path: json` with `data_files`), one per output
type. The reference is `lm_eval.simple_evaluate` on the same task and documents; on the tiny model it runs the
`lightning-adapt` lm-eval model (its scoring is compared with lm-eval's `HFLM` in test_lm_eval.py), on SmolLM2 lm-eval's
`HFLM` itself."""

import csv
import json
import time
from pathlib import Path

import lightning as L
import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install ./plugins/lm_eval)")

from lightning_adapt import FineTuning, Instructions, LoRA  # noqa: E402
from lightning_adapt.cli import main  # noqa: E402
from lightning_adapt.icl import ICLEvaluation, ICLTask, ICLTaskError, LMEvalTask, evaluate_checkpoint  # noqa: E402
from lightning_adapt_lm_eval import LightningAdaptLM  # noqa: E402
from lightning_adapt_lm_eval.generation import PER_DOCUMENT, TEXT_METRICS  # noqa: E402
from tests.helpers import local_task_manager, local_task_yaml, quiet_trainer, run_processes, write_instruction_file  # noqa: E402

WORDS = "the food was great bad cold warm tasty bland service friendly slow film boring long quick".split()
DOCS = [
    {"text": " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(2 + i % 5)), "label": i % 2,
     "options": ["good", "bad", "so so"][: 2 + i % 2], "answer": ["yes", "no"][i % 2]}
    for i in range(11)
]  # 11 documents: an odd number, so that ranks get unequal shares; 2 or 3 choices per document
TASKS = {
    "mc_fixed": """output_type: multiple_choice
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_choice: ["Positive", "Negative"]
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
""",
    "mc_per_doc": """output_type: multiple_choice
doc_to_text: "Review: {{text}}\\nVerdict:"
doc_to_choice: "{{options}}"
doc_to_target: label
metric_list:
  - metric: acc
""",
    "ll": """output_type: loglikelihood
doc_to_text: "Review: {{text}}\\nGood?"
doc_to_target: " {{answer}}"
metric_list:
  - metric: perplexity
  - metric: acc
""",
    "rolling": """output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""",
    "gen": """output_type: generate_until
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["\\n", "."]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
""",
}


def write_tasks(folder: Path, docs: list[dict] = DOCS, extra: dict[str, str] | None = None) -> Path:
    """The documents as JSONL and one task YAML per entry of TASKS (and `extra`) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    for name, body in (TASKS | (extra or {})).items():
        (folder / f"{name}.yaml").write_text(local_task_yaml(name, data, body))
    return folder


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    return write_tasks(tmp_path_factory.mktemp("lm_eval_tasks"))


def reference(model, task_dir: Path, name: str, k: int, seed: int = 1234) -> tuple[dict, list]:
    """lm-eval's results table row and its logged samples for `name` at k shots, from `simple_evaluate`."""
    out = lm_eval.simple_evaluate(
        model=model, tasks=[name], num_fewshot=k, task_manager=local_task_manager(task_dir),
        bootstrap_iters=0, log_samples=True, fewshot_random_seed=seed,
    )
    return out["results"][name], sorted(out["samples"][name], key=lambda sample: sample["doc_id"])


def flat(responses) -> list:
    """lm-eval's responses (strings, numbers, (log-likelihood, is_greedy) pairs) as one flat list."""
    if isinstance(responses, (list, tuple)):
        return [x for item in responses for x in flat(item)]
    return [float(responses) if isinstance(responses, (int, float)) else responses]


def metrics_of(table_row: dict) -> dict[str, float]:
    """`acc,none` -> `acc`: lm-eval's results row under our metric names."""
    return {key.split(",")[0]: value for key, value in table_row.items()
            if key.endswith(",none") and "_stderr" not in key and isinstance(value, float)}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_output_type_gives_simple_evaluates_numbers(tiny_checkpoint, task_dir, name):
    shots = [0] if name == "rolling" else [0, 5]  # lm-eval refuses demonstrations for perplexity tasks
    task = LMEvalTask(name, include_path=[str(task_dir)], shots=shots)
    results = evaluate_checkpoint(tiny_checkpoint, [task], batch_size=4, progress=False)
    lm = LightningAdaptLM(checkpoint_dir=str(tiny_checkpoint), batch_size=4, device="cpu")
    for k in shots:
        table_row, samples = reference(lm, task_dir, name, k)
        (row,) = [row for row in results.rows if row["k"] == k]
        ours = {key: value for key, value in row.items()
                if key not in ("task", "k", "seed", "prompt_tokens", *TEXT_METRICS, *PER_DOCUMENT)}  # lm-eval's alone
        assert ours == pytest.approx(metrics_of(table_row), rel=1e-9), (k, ours, table_row)
        predictions = sorted((p for p in results.predictions if p["k"] == k), key=lambda p: p["query"])
        assert len(predictions) == len(DOCS) == len(samples)
        for prediction, sample in zip(predictions, samples):
            assert prediction["context"] == sample["arguments"][0][0]  # lm-eval's prompt, demonstrations included
            assert flat(prediction["responses"]) == pytest.approx(flat(sample["filtered_resps"]), abs=1e-6)
    if name != "rolling":
        prompt = {row["k"]: row["prompt_tokens"] for row in results.rows}
        assert prompt[5] > 3 * prompt[0]  # five demonstrations really are in the prompt


@pytest.mark.slow
def test_a_task_yaml_path_several_seeds_and_a_limit(tiny_checkpoint, task_dir):
    task = LMEvalTask(str(task_dir / "mc_per_doc.yaml"), shots=[2], seeds=[1, 2], limit=5)
    assert task.name == "mc_per_doc"  # the YAML's own task name
    results = evaluate_checkpoint(tiny_checkpoint, [task], batch_size=4, progress=False)
    lm = LightningAdaptLM(checkpoint_dir=str(tiny_checkpoint), batch_size=4, device="cpu")
    contexts = {}
    for seed in (1, 2):
        out = lm_eval.simple_evaluate(
            model=lm, tasks=[str(task_dir / "mc_per_doc.yaml")], num_fewshot=2, limit=5, bootstrap_iters=0,
            log_samples=True, fewshot_random_seed=seed, task_manager=local_task_manager(task_dir),
        )
        (row,) = [row for row in results.rows if row["seed"] == seed]
        assert row["acc"] == out["results"]["mc_per_doc"]["acc,none"]
        contexts[seed] = [p["context"] for p in results.predictions if p["seed"] == seed]
        assert len(contexts[seed]) == 5
    assert contexts[1] != contexts[2]  # the seed draws other demonstrations
    parts = {seed: {p["query"]: p["part"] for p in results.predictions if p["seed"] == seed} for seed in (1, 2)}
    assert parts[1] == parts[2] and sorted(parts[1].values()) == ["selection"] + ["test"] * 4  # 25% of 5 documents
    summary = results.metrics()
    assert summary["icl/mc_per_doc/acc@k2"] == pytest.approx((results.rows[0]["acc"] + results.rows[1]["acc"]) / 2)


def test_lm_eval_task_on_the_timeline_of_a_training_run(tmp_path, tiny_checkpoint, task_dir):
    task = LMEvalTask("mc_fixed", include_path=[str(task_dir)])
    L.seed_everything(0)
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4))
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=8)
    callback = ICLEvaluation([task], batch_size=4)
    trainer = quiet_trainer(tmp_path, max_steps=4, val_check_interval=2, callbacks=[callback])
    trainer.fit(module, datamodule=data)
    with open(tmp_path / "logs" / "metrics.csv") as fp:
        rows = [row for row in csv.DictReader(fp) if row.get("icl/mc_fixed/acc@k0")]
    assert [int(row["step"]) for row in rows] == [0, 2, 4]
    base = evaluate_checkpoint(tiny_checkpoint, [task], batch_size=4, progress=False).metrics()
    assert float(rows[0]["icl/mc_fixed/acc_norm@k0"]) == pytest.approx(base["icl/mc_fixed/acc_norm@k0"])
    step0 = [json.loads(line) for line in (tmp_path / "logs" / "icl_predictions" / "step-00000000.jsonl").open()]
    assert len(step0) == len(DOCS) and {p["lm_eval_task"] for p in step0} == {"mc_fixed"}


PARALLEL_SCRIPT = '''
import json, sys
from datetime import timedelta
import lightning as L
from lightning_adapt import FineTuning, FSDP1Strategy, FSDP2Strategy, Instructions, LoRA
from lightning_adapt.icl import ICLEvaluation, LMEvalTask

kind, checkpoint, tasks, train, out = sys.argv[1:6]
timeout = timedelta(seconds=90)
strategy = {"fsdp2": FSDP2Strategy, "fsdp1": FSDP1Strategy}[kind](timeout=timeout)
L.seed_everything(0)
specs = [LMEvalTask(name, include_path=[tasks], shots=[0, 2]) for name in ("mc_per_doc", "gen")]
callback = ICLEvaluation(specs, batch_size=3)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=2, val_check_interval=1,
                    limit_val_batches=1, num_sanity_val_steps=0, logger=False, callbacks=[callback],
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    default_root_dir=out)
module = FineTuning(checkpoint, lora=LoRA(r=4), max_seq_length=64, export=False)
trainer.fit(module, datamodule=Instructions(train, batch_size=4))
with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
    json.dump({"rows": callback.results.rows, "predictions": callback.results.predictions,
               "model_class": type(module.model).__name__, "block_class": type(module.model.transformer.h[0]).__name__}, f)
'''


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fsdp2", "fsdp1"])
def test_sharded_every_rank_ends_with_single_process_numbers(tmp_path, tiny_checkpoint, task_dir, kind):
    """A 2-process training run (FSDP2 or FSDP1, with lockstep scoring; DDP's sharding of requests: tests/icl/test_ddp.py
    and the sharding tests, which compare DDP's ICL numbers with FSDP's) evaluates a multiple_choice and a
    generate_until lm-eval task at steps 0, 1 and 2: the ranks (with unequal shares: 11 documents) end with one set
    of results, and at step 0 (LoRA starts as the identity) every request's response is one process's on the base
    model. A deadlock fails at run_processes' timeout."""
    train = write_instruction_file(tmp_path / "train.jsonl")
    out = tmp_path / "out"
    run_processes(PARALLEL_SCRIPT, [kind, str(tiny_checkpoint), str(task_dir), str(train), str(out)], tmp_path,
                  processes=2)
    ranks = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1]  # the gathered, complete results (rows and predictions) on both ranks
    sharded = {"fsdp2": ("model_class", "FSDPGPT"), "fsdp1": ("block_class", "FullyShardedDataParallel")}[kind]
    assert ranks[0][sharded[0]] == sharded[1]  # fully_shard wrapped the model, FSDP1 each block
    rows = ranks[0]["rows"]
    assert {(row["task"], row["k"]) for row in rows} == {(t, k) for t in ("mc_per_doc", "gen") for k in (0, 2)}
    steps = sorted(path.name for path in (out / "icl_predictions").iterdir())
    assert steps == [f"step-{step:08d}.jsonl" for step in (0, 1, 2)]  # on_train_start, then every validation
    specs = [LMEvalTask(name, include_path=[str(task_dir)], shots=[0, 2]) for name in ("mc_per_doc", "gen")]
    single = evaluate_checkpoint(tiny_checkpoint, specs, batch_size=3, progress=False).predictions
    step0 = [json.loads(line) for line in (out / "icl_predictions" / "step-00000000.jsonl").open()]

    def key(prediction: dict) -> tuple:
        return prediction["task"], prediction["k"], prediction["seed"], prediction["query"]

    assert sorted(map(key, step0)) == sorted(map(key, single)) and len(step0) == 2 * 2 * len(DOCS)
    for parallel, alone in zip(sorted(step0, key=key), sorted(single, key=key)):
        assert flat(parallel["responses"]) == pytest.approx(flat(alone["responses"]), abs=1e-6)
    last = [json.loads(line) for line in (out / "icl_predictions" / "step-00000002.jsonl").open()]
    assert sorted(last, key=key) == sorted(ranks[0]["predictions"], key=key)  # rank 0's file is every rank's result
    assert sorted(last, key=key) != sorted(step0, key=key)  # step 2 scores the trained weights, not the base model


def bad_task(tmp_path: Path, body: str, name: str = "bad") -> str:
    return str(write_tasks(tmp_path / "bad", extra={name: body}) / f"{name}.yaml")


def test_bad_tasks_are_refused_with_the_fix_before_any_model_loads(tmp_path, task_dir):
    with pytest.raises(ICLTaskError, match=r"knows no task, group or tag 'arc_easyy' \(close matches: arc_easy"):
        LMEvalTask("arc_easyy").load()
    with pytest.raises(ICLTaskError, match="'ai2_arc' is an lm-eval tag"):
        LMEvalTask("ai2_arc").load()
    with pytest.raises(ICLTaskError, match="does not exist"):
        LMEvalTask(str(tmp_path / "missing.yaml"))
    with pytest.raises(ICLTaskError, match="include_path .* is not a folder"):
        LMEvalTask("mc_fixed", include_path=[str(tmp_path / "nowhere")]).load()
    with pytest.raises(ICLTaskError, match="cannot build it: Got invalid output_type 'ranking'"):
        LMEvalTask(bad_task(tmp_path, TASKS["mc_fixed"].replace("multiple_choice", "ranking"))).load()
    sampling = TASKS["gen"].replace("do_sample: false", "do_sample: true\n  temperature: 0.7")
    with pytest.raises(ICLTaskError, match="generates greedily only"):
        LMEvalTask(bad_task(tmp_path, sampling)).load()
    with pytest.raises(ICLTaskError, match="fixes num_fewshot: 0"):
        LMEvalTask(bad_task(tmp_path, TASKS["mc_fixed"] + "num_fewshot: 0\n"), shots=[0, 3]).load()
    with pytest.raises(ICLTaskError, match="name must contain no '/'"):
        LMEvalTask("mc_fixed", name="a/b")
    with pytest.raises(ICLTaskError, match=r"'mc_fixed': selection.fraction=0.25 of 1 queries leaves no test queries"):
        LMEvalTask("mc_fixed", include_path=[str(task_dir)], limit=1).load()
    with pytest.raises(ICLTaskError, match="selection.path is not supported for lm-eval tasks"):
        LMEvalTask("mc_fixed", selection={"path": "selection.jsonl"})


def test_a_dataset_that_is_not_available_offline_is_named_at_once(tmp_path):
    body = TASKS["mc_fixed"]
    (tmp_path / "hub.yaml").write_text(
        "task: hub_task\ndataset_path: lightning-adapt-tests/no-such-dataset\ntest_split: test\n" + body
    )
    start = time.perf_counter()
    with pytest.raises(ICLTaskError) as error:
        LMEvalTask(str(tmp_path / "hub.yaml")).load()
    assert time.perf_counter() - start < 30  # offline: no waiting on the network
    message = str(error.value)
    assert "'lightning-adapt-tests/no-such-dataset'" in message or "no-such-dataset" in message
    assert "dataset_path: json" in message and "download: true" in message


def test_an_lm_eval_task_in_an_icl_config_and_its_errors_on_the_command_line(tmp_path, tiny_checkpoint, task_dir, capsys):
    config = tmp_path / "icl.yaml"
    config.write_text(json.dumps({
        "checkpoint_dir": str(tiny_checkpoint), "progress": False,
        "tasks": [{"task": "mc_fixed", "include_path": [str(task_dir)], "shots": [0, 1]},
                  {"name": "own", "queries": str(task_dir / "docs.jsonl"), "template": "Review: {text}\nSentiment:",
                   "target": "label", "choices": ["Positive", "Negative"]}],
    }))
    main(["icl", "--config", str(config)])
    printed = capsys.readouterr().out
    assert "mc_fixed (1 seed(s)" in printed and "own (1 seed(s)" in printed and "acc_norm" in printed
    with pytest.raises(SystemExit) as exit_:
        main(["icl", "--config", str(config), "--tasks", json.dumps([{"task": "hellaswagg"}])])
    assert "lightning-adapt icl: error: lm-eval task 'hellaswagg'" in str(exit_.value.code)
    assert "close matches: hellaswag" in str(exit_.value.code) and "Traceback" not in str(exit_.value.code)


def test_without_the_plugin_the_error_names_the_package(monkeypatch):
    import lightning_adapt.core.plugins as plugins

    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    with pytest.raises(ModuleNotFoundError, match=r"pip install \./plugins/lm_eval"):
        LMEvalTask("arc_easy").load()


SENTIMENT_YAML = """task: builtin_sentiment
dataset_path: json
dataset_kwargs:
  data_files:
    test: {test}
test_split: test
output_type: multiple_choice
doc_to_text: "Review: {{{{text}}}}\\nSentiment:"
doc_to_choice: ["Positive", "Negative"]
doc_to_target: "{{{{['Positive', 'Negative'].index(label)}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
"""


@pytest.mark.slow
def test_our_sentiment_config_gives_lm_evals_zero_shot_accuracy(smollm2_dir, smollm2_transformers, tmp_path):
    """configs/icl/sentiment.yaml's task at k = 0, as an ICLTask, and written as an lm-eval YAML: through our ICL path
    and through lm-eval's own `HFLM`, one accuracy."""
    import yaml
    from lm_eval.models.huggingface import HFLM
    from lightning_adapt.data.records import resolve_builtin
    from transformers import AutoTokenizer

    config = yaml.safe_load((Path(__file__).parents[2] / "configs/icl/sentiment.yaml").read_text())
    ours = ICLTask(**(config["tasks"][0] | {"shots": [0], "seeds": [0], "calibrate": False}))
    test = resolve_builtin(ours.queries.path)
    (tmp_path / "sentiment.yaml").write_text(SENTIMENT_YAML.format(test=test))
    theirs = LMEvalTask(str(tmp_path / "sentiment.yaml"))
    results = evaluate_checkpoint(smollm2_dir, [ours, theirs], batch_size=16, progress=False).metrics()

    hflm = HFLM(pretrained=smollm2_transformers, tokenizer=AutoTokenizer.from_pretrained(smollm2_dir), batch_size=16, device="cpu")
    out = lm_eval.simple_evaluate(model=hflm, tasks=[str(tmp_path / "sentiment.yaml")], num_fewshot=0,
                                  task_manager=local_task_manager(tmp_path), bootstrap_iters=0)
    reference = out["results"]["builtin_sentiment"]["acc,none"]
    assert results["icl/sentiment/acc@k0"] == results["icl/builtin_sentiment/acc@k0"] == reference
    assert reference > 0.55  # the README's base 0-shot score (0.583), not chance


def test_compare_scores_general_lm_eval_tasks_on_the_forgetting_timeline(tmp_path, tiny_checkpoint, task_dir):
    from lightning_adapt import Compare, Optimization, run_compare
    from lightning_adapt.compare.command import parse_compare
    from lightning_adapt.compare.settings import FineTuneSettings

    own = ICLTask(name="own", queries=str(task_dir / "docs.jsonl"), template="Review: {text}\nSentiment:",
                  target="answer", choices=["yes", "no"])
    finetune = FineTuneSettings(Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4),
                                lora=LoRA(r=4), max_steps=2, val_check_interval=1,
                                optimization=Optimization(learning_rate=3e-3, warmup_steps=1), max_seq_length=64)
    yaml_path = str(task_dir / "mc_per_doc.yaml")
    compare = Compare(checkpoint_dir=tiny_checkpoint, tasks=[own], out_dir=tmp_path / "out", methods=["icl", "finetune"],
                      finetune=finetune, general_val_blocks=1, general_tasks=[yaml_path],
                      trainer={"accelerator": "cpu", "enable_progress_bar": False, "limit_val_batches": 1})
    assert compare.general_tasks == [LMEvalTask(yaml_path)]  # a plain name or path is an lm-eval task
    report_dir = run_compare(compare)
    report = json.loads((report_dir / "report.json").read_text())
    general = report["general_tasks"]["mc_per_doc"]
    assert list(general["runs"]) == ["lora"] and [p["step"] for p in general["runs"]["lora"]] == [0, 1, 2]
    base = evaluate_checkpoint(tiny_checkpoint, [LMEvalTask(yaml_path)], batch_size=16, progress=False).metrics()
    assert general["runs"]["lora"][0]["score"] == pytest.approx(base["icl/mc_per_doc/acc@k0"])
    assert "| lora | mc_per_doc acc (k=0) |" in (report_dir / "report.md").read_text()
    parsed = parse_compare(["--config", str(Path(__file__).parents[2] / "configs/compare/quick.yaml"),
                            "--general_tasks", json.dumps([yaml_path, {"task": "mc_fixed", "include_path": [str(task_dir)],
                                                                       "limit": 3}])])
    assert parsed.general_tasks == [LMEvalTask(yaml_path), LMEvalTask("mc_fixed", include_path=[str(task_dir)], limit=3)]


def test_a_task_yaml_is_code_and_the_readme_says_so(tmp_path):
    """The trust boundary: lm-eval runs the Python a task YAML names (`!function`) when the task loads."""
    folder = write_tasks(tmp_path / "tasks", extra={"coded": TASKS["mc_fixed"] + "process_docs: !function utils.mark\n"})
    ran = tmp_path / "ran.txt"
    (folder / "utils.py").write_text(f"def mark(dataset):\n    open({str(ran)!r}, 'w').close()\n    return dataset\n")
    LMEvalTask(task=str(folder / "coded.yaml"), shots=[0]).load()
    assert ran.is_file()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert "**A task YAML is code: trust it as you would a Python script.**" in readme
