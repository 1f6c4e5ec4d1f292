"""k-shot prompts: one fixed demonstration set per seed, a query never among its own demonstrations; with a task's
``context``, the query's d best retrieved documents after the instruction and before the demonstrations.

For a seed, the demo pool is shuffled once; each query takes the first k examples of that order that
are not the query itself (so k-shot sets are nested across k, and almost every query shares the
same set, hence the same prompt prefix). With ``balanced``, the first examples of each label are
taken up to a per-label quota (``k // n_labels``, the remainder going to labels drawn by the seed).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lightning_adapt.icl.task import ICLTask, TaskData


@dataclass(frozen=True)
class Prompt:
    """A k-shot context for one query (``query=-1``: a content-free calibration input)."""

    query: int
    demos: tuple[int, ...]
    context: str
    documents: tuple[int, ...] = ()
    """The retrieved documents in the prompt (indices into ``TaskData.documents``), best first."""


def demo_order(pool_size: int, seed: int) -> list[int]:
    """The seed's fixed shuffled order of the demo pool."""
    order = list(range(pool_size))
    random.Random(seed).shuffle(order)
    return order


def select_demos(data: TaskData, query: int, k: int, seed: int, order: list[int]) -> tuple[int, ...]:
    """Indices of the k demonstrations for ``query`` under ``seed`` (``order`` is ``demo_order``)."""
    if k == 0:
        return ()
    own = data.query_keys[query]
    candidates = (i for i in order if data.demo_keys[i] != own)
    if not data.task.balanced:
        return tuple(itertools.islice(candidates, k))
    labels = data.task.choices
    extra = set(random.Random(seed).sample(labels, k % len(labels)))
    quota = {label: k // len(labels) + (label in extra) for label in labels}
    picked: list[int] = []
    for i in candidates:
        label = data.demo_labels[i]
        if quota[label] > 0:
            quota[label] -= 1
            picked.append(i)
            if len(picked) == k:
                break
    return tuple(picked)


def build_context(task: ICLTask, demos: list[dict], query: dict, documents: Sequence[str] = ()) -> str:
    """``instruction`` + each rendered document + each demo (text, target delimiter, answer, fewshot delimiter) +
    query text."""
    shots = "".join(
        task.text(demo) + task.target_delimiter + task.answer(demo)[1] + task.fewshot_delimiter for demo in demos
    )
    return task.instruction + "".join(documents) + shots + task.text(query)


DocumentText = Callable[[int], str]
"""A document of ``TaskData.documents`` (by index) as it appears in a prompt: cut and rendered through the context's
template (``encoding.PromptEncoder.document``)."""


def make_prompt(
    data: TaskData, query: int, demos: tuple[int, ...], documents: tuple[int, ...] = (),
    document_text: DocumentText | None = None,
) -> Prompt:
    """The prompt for query index ``query`` with the given demonstration and document indices (documents need
    ``document_text``)."""
    texts = [document_text(i) for i in documents] if documents else []
    context = build_context(data.task, [data.demos[i] for i in demos], data.queries[query], texts)
    return Prompt(query, demos, context, documents)


def build_prompts(
    data: TaskData, k: int, seed: int, docs: int = 0, document_text: DocumentText | None = None
) -> list[Prompt]:
    """The k-shot prompt of every query under ``seed``, with its ``docs`` best retrieved documents."""
    order = demo_order(len(data.demos), seed) if k else []
    return [
        make_prompt(data, q, select_demos(data, q, k, seed, order), data.retrieved[q][:docs] if docs else (),
                    document_text)
        for q in range(len(data.queries))
    ]


def content_free_prompt(data: TaskData, demos: tuple[int, ...], filler: str) -> Prompt:
    """The calibration prompt: the same demonstrations, every template field filled with ``filler``."""
    query = {name: filler for name in data.task.template_fields}
    return Prompt(-1, demos, build_context(data.task, [data.demos[i] for i in demos], query))
