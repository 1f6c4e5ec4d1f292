"""``LMEvalTask``: an lm-evaluation-harness task wherever an ``ICLTask`` goes (``ICLEvaluation``, ``lightning-adapt
icl``, ``compare``). The specification is plain data here; loading, request building and lm-eval's metrics live in
plugins/lm_eval (``pip install ./plugins/lm_eval``), found through the ``lm-eval-task`` plugin entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_adapt.core.plugins import plugin
from lightning_adapt.icl.selection import Selection
from lightning_adapt.icl.task import ICLTaskError, check_shots_and_seeds

YAML_SUFFIXES = (".yaml", ".yml")
"""A `task` ending so is the path of a task YAML."""
DEFAULT_FEWSHOT_SEED = 1234
"""lm-eval's default `fewshot_random_seed` (its `simple_evaluate` and command line)."""


@dataclass
class LMEvalTask:
    """An lm-evaluation-harness task, group or task YAML: lm-eval builds the requests (its prompts, few-shot sampler
    and seed, choices), lightning-adapt's prefix-cached scorer scores them, lm-eval's metric functions aggregate them.
    Output types: ``multiple_choice``, ``loglikelihood``, ``loglikelihood_rolling`` and greedy ``generate_until``."""

    task: str
    """An lm-eval task or group name (``arc_easy``, ``hellaswag``, ``mmlu``), or the path of a task YAML."""
    name: str | None = None
    """Name in metric keys (``icl/<name>/acc@k0``); default: the lm-eval task name (the YAML's ``task:``)."""
    include_path: list[str] = field(default_factory=list)
    """Folders of further task YAMLs, searched before lm-eval's own (its ``--include_path``)."""
    shots: list[int] = field(default_factory=lambda: [0])
    """Numbers of demonstrations k (lm-eval's ``num_fewshot``)."""
    seeds: list[int] = field(default_factory=lambda: [DEFAULT_FEWSHOT_SEED])
    """Few-shot sampler seeds (lm-eval's ``fewshot_random_seed``, default 1234); metrics are averaged over them."""
    limit: int | None = None
    """Score only the first this many documents (lm-eval's ``--limit``)."""
    add_bos: bool | None = None
    """Start every request with BOS; null: the model's Hugging Face tokenizer rule, lm-eval's default."""
    download: bool = False
    """Let `datasets` download a dataset that is neither local nor in the Hugging Face cache (off: such a task is
    refused at once, naming the dataset, instead of waiting on the network)."""
    selection: Selection | None = field(default_factory=Selection)
    """The held-out split of the scored documents (by lm-eval task and ``doc_id``): choices are made on the selection
    part, scores reported on the test part; null: no split. ``selection.path`` is not supported here."""

    def __post_init__(self) -> None:
        if not self.task:
            raise ICLTaskError("LMEvalTask: `task` must name an lm-eval task or a task YAML")
        if isinstance(self.include_path, str):
            self.include_path = [self.include_path]
        if Path(self.task).suffix in YAML_SUFFIXES and not Path(self.task).is_file():
            raise ICLTaskError(f"lm-eval task YAML {self.task!r} does not exist")
        self.name = self.name or yaml_task_name(self.task) or self.task
        where = f"lm-eval task {self.name!r}"
        if "/" in self.name or "@" in self.name:
            raise ICLTaskError(f"{where}: the name must contain no '/' or '@'; set `name`")
        check_shots_and_seeds(where, self.shots, self.seeds)
        if self.limit is not None and self.limit < 1:
            raise ICLTaskError(f"{where}: `limit` must be >= 1, got {self.limit}")
        if isinstance(self.selection, dict):
            self.selection = Selection(**self.selection)
        if self.selection is not None and self.selection.path is not None:
            raise ICLTaskError(
                f"{where}: selection.path is not supported for lm-eval tasks (their documents are lm-eval's); give "
                "selection.fraction and selection.seed, or selection: null"
            )

    def load(self) -> Any:
        """lm-eval's task with its documents, through plugins/lm_eval (``ICLTaskError`` for an unknown task, a
        dataset not available offline, an output type we cannot score)."""
        return plugin("lm-eval-task")(self)


def yaml_task_name(task: str) -> str | None:
    """The ``task:`` (or ``group:``) name a task YAML declares, or None when ``task`` is no YAML file."""
    path = Path(task)
    if path.suffix not in YAML_SUFFIXES or not path.is_file():
        return None
    loader = type("_TagsAsText", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, node: None)  # lm-eval's !function tags
    try:
        config = yaml.load(path.read_text(encoding="utf-8"), Loader=loader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ICLTaskError(f"lm-eval task YAML {task!r} cannot be read: {error}") from None
    name = config.get("task", config.get("group")) if isinstance(config, dict) else None
    return name if isinstance(name, str) else None
