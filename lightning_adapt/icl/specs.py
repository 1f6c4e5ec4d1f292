"""The task specifications a config or a call can name: ``ICLTask`` (ours, over local or `datasets` records) and
``LMEvalTask`` (an lm-evaluation-harness task, through plugins/lm_eval). In YAML an item with ``task:`` is an
``LMEvalTask``, one with ``name:``, ``queries:``, ``template:`` and ``target:`` an ``ICLTask``."""

from __future__ import annotations

from typing import Union

from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.task import ICLTask

TaskSpec = Union[ICLTask, LMEvalTask]
