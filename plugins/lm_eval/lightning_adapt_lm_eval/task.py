"""lm-evaluation-harness tasks as lightning-adapt ICL tasks: `load_task(LMEvalTask)` (the `lm-eval-task` plugin).

lm-eval does everything it defines — its `TaskManager` finds the task (by name, group or YAML path; `include_path`
for local YAMLs), its task builds the requests (prompts, few-shot sampler and seed, `doc_to_choice`), its filters,
`process_results` and aggregation functions make the metrics (`lm_eval.evaluator.evaluate`) — and a `ScorerLM`
scores the requests on the model being evaluated, shared between ranks by lightning-adapt's `Scorer`. Each (k, seed)
is one lm-eval evaluation, with the global seeds `simple_evaluate` sets, so the numbers are lm-eval's own. With the
task's `selection`, each prediction record names its document's part (`split_queries` over the (lm-eval task,
doc_id) pairs scored). Beside lm-eval's metrics, `generate_until` tasks report lightning-adapt's generation metrics
(`chrf`, `rougeL`, `response_logprob`, `generated_tokens`: `generation.py`) per record and as the row's means over
the documents of the task (of a group: of all its generating tasks).
"""

from __future__ import annotations

import difflib
import functools
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning_adapt.icl.keys import PROMPT_TOKENS
from lightning_adapt.icl.lm_eval_task import YAML_SUFFIXES, LMEvalTask
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.runner import Scorer
from lightning_adapt.icl.selection import split_queries
from lightning_adapt.icl.task import ICLTaskError
from lightning_adapt.record.predictions import SELECTION, TEST
from litgpt import Tokenizer

from lightning_adapt_lm_eval.generation import generation_metrics, row_means
from lightning_adapt_lm_eval.model import ScorerLM

SCORABLE = ("multiple_choice", "loglikelihood", "loglikelihood_rolling", "generate_until")
"""lm-eval output types we score (generation greedily)."""
GLOBAL_SEEDS = (0, 1234)
"""The Python and NumPy seeds `lm_eval.simple_evaluate` sets before building requests (its defaults)."""


def load_task(spec: LMEvalTask) -> LoadedLMEvalTask:
    """lm-eval's task (or group) named by `spec`, its documents loaded; refused with the fix for an unknown name, a
    tag, a dataset that is not available offline, an output type we cannot score or a fixed `num_fewshot`."""
    where = f"lm-eval task {spec.name!r}"
    for folder in spec.include_path:
        if not Path(folder).is_dir():
            raise ICLTaskError(f"{where}: include_path {folder!r} is not a folder")
    manager = _task_manager(tuple(spec.include_path))
    if Path(spec.task).suffix not in YAML_SUFFIXES and spec.task not in manager.all_tasks:
        close = difflib.get_close_matches(spec.task, manager.all_tasks, n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "no close match"
        raise ICLTaskError(
            f"{where}: lm-eval knows no task, group or tag {spec.task!r} ({hint}); for a local task give the path of "
            "its YAML, or its folder in include_path"
        )
    if spec.task in manager.all_tags:
        raise ICLTaskError(
            f"{where}: {spec.task!r} is an lm-eval tag, a list of tasks without a combined score; evaluate its tasks "
            "as separate LMEvalTasks, or a group"
        )
    with _datasets_offline(not spec.download):
        try:
            loaded = manager.load([spec.task])
        except (ConnectionError, FileNotFoundError) as error:
            raise ICLTaskError(
                f"{where}: its dataset {_dataset_of(manager, spec.task)} is not available offline ({error}). Point "
                "the task's YAML at local files — `dataset_path: json` with `dataset_kwargs: {data_files: {test: "
                "PATH.jsonl}}` (csv and parquet alike) — or set `download: true` to let `datasets` fetch it."
            ) from None
        except ValueError as error:  # lm-eval's own check of the YAML (e.g. an output type it does not know)
            raise ICLTaskError(f"{where}: lm-eval cannot build it: {error}") from None
    for name, task in loaded["tasks"].items():
        _check_scorable(f"{where}: {name!r}" if name != spec.task else where, task, spec)
    if spec.selection is not None:  # a split that leaves a part empty, refused before any model loads
        split_queries([(name, i) for name, task in loaded["tasks"].items() for i in range(_scored(task, spec.limit))],
                      spec.selection, where)
    return LoadedLMEvalTask(spec, loaded, _result_name(loaded, spec))


def _scored(task: Any, limit: int | None) -> int:
    """How many documents lm-eval scores of a leaf task: its evaluation documents, the first `limit` of them."""
    documents = len(task.eval_docs)
    return documents if limit is None else min(documents, limit)


@dataclass
class LoadedLMEvalTask:
    """An lm-eval task (or group) with its documents; `prepare` binds it to one model's tokenizer."""

    task: LMEvalTask
    loaded: dict[str, Any]
    """`TaskManager.load`'s result: the leaf tasks, the groups and their members."""
    result_name: str
    """The name lm-eval reports the requested task or group under."""

    def prepare(self, tokenizer: Tokenizer, block_size: int) -> LMEvalPlan:
        return LMEvalPlan(self, ScorerLM(tokenizer, self.task.add_bos, block_size))


@dataclass
class LMEvalPlan:
    """One lm-eval evaluation per (k, seed) on the scorer it is given; the tokenizations are kept between them."""

    source: LoadedLMEvalTask
    lm: ScorerLM

    def evaluate(self, scorer: Scorer, results: ICLResults) -> None:
        from lm_eval.evaluator import evaluate

        spec, tasks = self.source.task, self.source.loaded["tasks"]
        self.lm.scorer = scorer
        for k in spec.shots:
            for seed in spec.seeds:
                for task in tasks.values():
                    task.set_config(key="num_fewshot", value=k)
                    task.set_fewshot_seed(seed=seed)
                with _global_seeds():
                    out = evaluate(lm=self.lm, task_dict=self.source.loaded, limit=spec.limit, bootstrap_iters=0,
                                   log_samples=True)
                ours, row = generation_metrics(self.lm, tasks, out["samples"]), self._row(out, k, seed)
                means = row_means(out["samples"], ours).items()
                results.rows.append(row | {key: mean for key, mean in means if key not in row})  # lm-eval's own first
                results.predictions += self._with_parts(self._predictions(out, k, seed, ours))

    def _row(self, out: dict[str, Any], k: int, seed: int) -> dict[str, Any]:
        """lm-eval's aggregated metrics of the requested task or group, under lightning-adapt's metric names."""
        name = self.source.result_name
        scores = out.get("groups", {}).get(name) or out["results"][name]
        row: dict[str, Any] = {"task": self.source.task.name, "k": k, "seed": seed}
        for key, value in scores.items():
            metric, _, filter_name = key.partition(",")
            if not filter_name or metric.endswith("_stderr") or not isinstance(value, (int, float)):
                continue
            row[metric if filter_name == "none" else f"{metric}:{filter_name}"] = float(value)
        prompt_lengths = [len(self.lm.tok_encode(_context(sample))) for samples in out["samples"].values()
                          for sample in samples]
        row[PROMPT_TOKENS] = float(np.mean(prompt_lengths))
        return row

    def _predictions(self, out: dict[str, Any], k: int, seed: int, ours: dict[str, list[dict[str, float]]]
                     ) -> list[dict[str, Any]]:
        """One record per document (and filter): lm-eval's target, filtered responses and per-document metrics, and
        `ours` (`generation_metrics`)."""
        records = []
        for task_name, samples in out["samples"].items():
            for sample, extra in zip(samples, ours[task_name]):
                record = {
                    "task": self.source.task.name, "k": k, "seed": seed, "lm_eval_task": task_name,
                    "query": sample["doc_id"], "filter": sample["filter"],
                    "prompt_tokens": len(self.lm.tok_encode(_context(sample))), "context": _context(sample),
                    "target": sample["target"], "responses": sample["filtered_resps"],
                } | {metric: sample[metric] for metric in sample["metrics"]} | extra
                records.append(json.loads(json.dumps(record, default=str)))
        return records


    def _with_parts(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records, each with its document's `part` when the task has a selection split."""
        spec = self.source.task
        if spec.selection is None:
            return records
        keys = [(record["lm_eval_task"], record["query"]) for record in records]
        chosen = split_queries(keys, spec.selection, f"lm-eval task {spec.name!r}")
        return [record | {"part": SELECTION if key in chosen else TEST} for record, key in zip(records, keys)]


def _context(sample: dict[str, Any]) -> str:
    """The prompt of a logged sample (its first request's context)."""
    return sample["arguments"][0][0]


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: tuple[str, ...]) -> Any:
    """lm-eval's task index over its own tasks and `include_path` (built once per process: it reads every YAML)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path) or None)


def _check_scorable(where: str, task: Any, spec: LMEvalTask) -> None:
    output_type = task.get_config("output_type")
    if output_type not in SCORABLE:
        raise ICLTaskError(f"{where}: output type {output_type!r} cannot be scored; supported: {', '.join(SCORABLE)}")
    if output_type == "generate_until":
        kwargs = task.get_config("generation_kwargs") or {}
        if kwargs.get("do_sample") or (kwargs.get("temperature") or 0) > 0:
            raise ICLTaskError(f"{where}: it samples ({kwargs}); lightning-adapt generates greedily only")
    if task.get_config("num_fewshot") == 0 and any(spec.shots):
        raise ICLTaskError(f"{where}: its YAML fixes num_fewshot: 0, so shots {spec.shots} cannot apply; use shots: [0]")


def _result_name(loaded: dict[str, Any], spec: LMEvalTask) -> str:
    """The top-level group, else the single task lm-eval loaded for `spec`."""
    members = {child for children in loaded.get("group_map", {}).values() for child in children}
    tops = [name for name in loaded.get("groups", {}) if name not in members]
    if tops:
        return tops[0]
    (name,) = loaded["tasks"]
    return name


def _dataset_of(manager: Any, task: str) -> str:
    """The `dataset_path` (and `dataset_name`) a task's YAML names, as far as the index knows it."""
    entry = manager.task_index.get(task)
    config = (entry.cfg if entry is not None else None) or {}
    path, name = config.get("dataset_path"), config.get("dataset_name")
    return repr(f"{path}/{name}" if name else path) if path else "(see the task's YAML)"


@contextmanager
def _datasets_offline(offline: bool) -> Iterator[None]:
    """`datasets` and the Hugging Face hub client in offline mode inside (local files and the cache only)."""
    if not offline:
        yield
        return
    import datasets
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


@contextmanager
def _global_seeds() -> Iterator[None]:
    """Python's and NumPy's global generators seeded as `simple_evaluate` seeds them; their states put back after."""
    saved = random.getstate(), np.random.get_state()
    random.seed(GLOBAL_SEEDS[0])
    np.random.seed(GLOBAL_SEEDS[1])
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
