"""The names ICL results are logged under: one function builds a key, one reads it back.

`icl/<task>/<metric>@k<K>` is a metric's mean over seeds at k demonstrations, `icl/<task>/<metric>_std@k<K>` its
standard deviation over seeds, `icl/<task>/seconds` the evaluation's wall-clock seconds. With D retrieved documents in
the prompt (a task's `context`) the point is `...@k<K>d<D>`: `icl/<task>/<metric>@k0d3` is 0 demonstrations and 3
documents; no documents writes no `d`, so the keys of tasks without documents are as they always were.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "icl/"
STD_SUFFIX = "_std"
SECONDS = "seconds"
QUERIES = "queries"
"""The per-task key (``icl/<task>/queries``) of the number of queries an evaluation of an ``ICLTask`` scored: all of
them, or an ``ICLEvaluation(subsample=N)``'s subset at an intermediate evaluation."""
PROMPT_TOKENS = "prompt_tokens"
"""The metric that is the mean prompt length in tokens (not a score)."""
GENERATED_TOKENS = "generated_tokens"
"""The metric of a generation task that generates: tokens generated per query (EOS and stop strings included), its
mean in a row; a cost, not a score."""
COSTS_LOGGED = (PROMPT_TOKENS, GENERATED_TOKENS)
"""The ICL metrics that are a query's costs, not scores: they never score a task, and tables print them apart."""
HIT = "hit"
"""The per-query metric of a point with documents when the task's context names each query's `source`: 1.0 when one
of the retrieved documents is one of the query's source documents, else 0.0 (its mean: the retrieval hit rate)."""



def docs_text(docs: int) -> str:
    """A number of documents in the prompt: "1 doc", "3 docs"."""
    return f"{docs} doc" + ("" if docs == 1 else "s")


def point_label(k: int, docs: int) -> str:
    """An ICL point's name, as reports and errors print it: "k=4", or with documents in the prompt "k=0, 1 doc"."""
    return f"k={k}" + (f", {docs_text(docs)}" if docs else "")


@dataclass(frozen=True)
class ICLKey:
    """What one logged ICL value is: `metric` of `task` at `k` shots (None for the task's seconds), mean or std."""

    task: str
    metric: str
    k: int | None = None
    std: bool = False
    docs: int = 0
    """Retrieved documents placed in the prompt (0: none)."""


def icl_key(task: str, metric: str, k: int | None = None, std: bool = False, docs: int = 0) -> str:
    """The logging key of a value (see the module docstring); `k=None` only for `metric="seconds"`."""
    if k is None:
        return f"{PREFIX}{task}/{metric}"
    return f"{PREFIX}{task}/{metric}{STD_SUFFIX if std else ''}@k{k}" + (f"d{docs}" if docs else "")


def parse_icl_key(key: str) -> ICLKey | None:
    """The `ICLKey` a logging key names, or None when it is not an ICL key."""
    if not key.startswith(PREFIX) or "/" not in key[len(PREFIX):]:
        return None
    task, name = key[len(PREFIX):].rsplit("/", 1)
    if "@k" not in name:
        return ICLKey(task, name) if name == SECONDS else None
    metric, point = name.rsplit("@k", 1)
    k, _, docs = point.partition("d")
    if not k.isdigit() or not (docs == "" and "d" not in point or docs.isdigit() and int(docs) > 0):
        return None
    std = metric.endswith(STD_SUFFIX)
    return ICLKey(task, metric.removesuffix(STD_SUFFIX) if std else metric, int(k), std, int(docs or 0))
