"""The names ICL results are logged under: one function builds a key, one reads it back.

`icl/<task>/<metric>@k<K>` is a metric's mean over seeds at k demonstrations, `icl/<task>/<metric>_std@k<K>` its
standard deviation over seeds, `icl/<task>/seconds` the evaluation's wall-clock seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "icl/"
STD_SUFFIX = "_std"
SECONDS = "seconds"
PROMPT_TOKENS = "prompt_tokens"
"""The metric that is the mean prompt length in tokens (not a score)."""


@dataclass(frozen=True)
class ICLKey:
    """What one logged ICL value is: `metric` of `task` at `k` shots (None for the task's seconds), mean or std."""

    task: str
    metric: str
    k: int | None = None
    std: bool = False


def icl_key(task: str, metric: str, k: int | None = None, std: bool = False) -> str:
    """The logging key of a value (see the module docstring); `k=None` only for `metric="seconds"`."""
    if k is None:
        return f"{PREFIX}{task}/{metric}"
    return f"{PREFIX}{task}/{metric}{STD_SUFFIX if std else ''}@k{k}"


def parse_icl_key(key: str) -> ICLKey | None:
    """The `ICLKey` a logging key names, or None when it is not an ICL key."""
    if not key.startswith(PREFIX) or "/" not in key[len(PREFIX):]:
        return None
    task, name = key[len(PREFIX):].rsplit("/", 1)
    if "@k" not in name:
        return ICLKey(task, name) if name == SECONDS else None
    metric, k = name.rsplit("@k", 1)
    if not k.isdigit():
        return None
    std = metric.endswith(STD_SUFFIX)
    return ICLKey(task, metric.removesuffix(STD_SUFFIX) if std else metric, int(k), std)
