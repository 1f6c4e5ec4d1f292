"""The held-out split of a task's queries: a selection part, on which every choice of a comparison is made (the best
k and number of documents for ICL, a trained run's evaluation step, a search's learning rate), and a test part, on which
the chosen points are scored. One seeded rule, shared by our tasks and lm-eval's."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from lightning_adapt.icl.errors import ICLTaskError


@dataclass
class Selection:
    """How a task's queries are split into a selection part and a test part."""

    fraction: float = 0.25
    """Share of the queries drawn (seeded) into the selection part, rounded to whole queries; the rest are test
    queries."""
    seed: int = 0
    """Seed of the draw."""
    path: str | None = None
    """Instead of drawing from the queries: a file (or folder, ``builtin:``, `datasets` name, like ``queries``) of
    further queries, the whole selection part; every query of ``queries`` is then a test query."""

    def __post_init__(self) -> None:
        if self.path is None and not 0 < self.fraction < 1:
            raise ICLTaskError(
                f"selection.fraction={self.fraction} must lie strictly between 0 and 1 (a share of the queries held "
                "out for choosing k, documents, steps and learning rates); or give selection.path, or selection: null"
            )


def selection_size(queries: int, fraction: float) -> int:
    """How many of `queries` the selection part takes: `fraction` of them, rounded, at least one."""
    return max(1, round(queries * fraction))


def split_queries(keys: Sequence[Hashable], selection: Selection, where: str) -> set[Hashable]:
    """The keys drawn into the selection part (`selection.fraction` of them, by `selection.seed`; the draw depends only
    on the set of keys, not their order). Refuses a split that leaves either part empty, naming `where`."""
    distinct = sorted(set(keys), key=repr)
    size = selection_size(len(distinct), selection.fraction)
    if size >= len(distinct):
        raise ICLTaskError(
            f"{where}: selection.fraction={selection.fraction} of {len(distinct)} queries leaves no test queries; "
            "lower the fraction, add queries, give selection.path (a file of selection queries), or set "
            "selection: null (choices are then made on the test queries, and the report says so)"
        )
    return set(random.Random(selection.seed).sample(distinct, size))
