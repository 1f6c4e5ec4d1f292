"""The ICL task specification, how one example renders, and loading + validating its data: the queries, their
held-out split (``Selection``), the demonstration pool and, with a ``Context``, each query's retrieved documents.

Prompt conventions follow lm-evaluation-harness: an example renders as ``template`` (the query
text) and ``target_delimiter + answer``; demonstrations are joined by ``fewshot_delimiter``.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lightning_adapt.data.records import DataError, Record, read_records, resolve_files
from lightning_adapt.icl.context import Context, Document, load_documents, retrieve, source_ids, template_fields
from lightning_adapt.icl.errors import ICLTaskError
from lightning_adapt.icl.keys import STD_SUFFIX
from lightning_adapt.icl.metrics import GENERATION_METRICS, RESPONSE_LOGPROB
from lightning_adapt.icl.selection import Selection, split_queries
from lightning_adapt.record.predictions import SELECTION, TEST


@dataclass
class DataSource:
    """Where examples come from: local file(s) or a `datasets` dataset."""

    path: str
    """A local ``.json``/``.jsonl``/``.csv``/``.parquet`` file, a folder or glob of them, ``builtin:NAME``
    (a data file shipped with the package), or a `datasets` name (e.g. ``"imdb"``)."""
    split: str = "train"
    """The split to load (ignored for local files, which hold one split)."""
    name: str | None = None
    """The `datasets` configuration name, if the dataset has several."""

    def load(self) -> list[Record]:
        """Load every record with its file and row (``DataError`` naming them for unreadable data)."""
        return read_records(self.path, self.split, self.name)

    def __str__(self) -> str:
        try:
            local = resolve_files(self.path) is not None
        except DataError:  # a local path that names nothing: still a path
            local = True
        return self.path if local else f"{self.path}[{self.split}]"


@dataclass
class Check:
    """A pass/fail check of a generated reply, logged as the metric ``check_<name>`` (its pass rate)."""

    name: str
    """The metric key part: letters, digits and ``_`` only."""
    regex: str
    """A Python ``re`` pattern, searched (``re.search``) in the whitespace-stripped reply, e.g.
    ``"Best regards,\\nAcme Support$"``."""

    @property
    def metric(self) -> str:
        """The name of the check's metric: ``check_<name>``."""
        return f"check_{self.name}"

    def passes(self, reply: str) -> float:
        """1.0 when the regex is found in the stripped reply, else 0.0."""
        return float(re.search(self.regex, reply.strip()) is not None)


@dataclass
class Generation:
    """Greedy generation settings and the metrics of a task scored on replies to its queries."""

    max_new_tokens: int = 32
    """The most tokens generated per query."""
    stop: list[str] = field(default_factory=lambda: ["\n"])
    """Generation stops at the first of these strings, which is cut from the prediction."""
    metrics: list[str] = field(default_factory=lambda: ["exact_match"])
    """Each compares the reply with the target: ``exact_match`` (stripped reply equals stripped target), ``contains``
    (the target occurs in it), ``chrf`` (sacrebleu's chrF, 0-1), ``rougeL`` (rouge-score's ROUGE-L F-measure) or
    ``response_logprob`` (the mean per-token log-likelihood of the target given the prompt; needs no generation)."""
    checks: list[Check] = field(default_factory=list)
    """Regex checks of the reply (no reference needed), e.g. ``[{name: signs_off, regex: "Best regards,$"}]``; each is
    logged as ``check_<name>``, and ``checks`` is the fraction passed per reply."""

    def __post_init__(self) -> None:
        self.checks = [Check(**check) if isinstance(check, dict) else check for check in self.checks]

    @property
    def generates(self) -> bool:
        """Whether replies are generated: some metric or check reads them (``response_logprob`` alone does not)."""
        return bool(self.checks) or any(metric != RESPONSE_LOGPROB for metric in self.metrics)

    def check(self, where: str) -> None:
        """Refuse settings that cannot work (``ICLTaskError`` naming `where` and the field)."""
        if self.max_new_tokens < 1:
            raise ICLTaskError(f"{where}: `generate.max_new_tokens` must be >= 1, got {self.max_new_tokens}")
        unknown = [metric for metric in self.metrics if metric not in GENERATION_METRICS]
        if unknown:
            raise ICLTaskError(
                f"{where}: unknown `generate.metrics` {unknown}; the metrics are {', '.join(GENERATION_METRICS)}"
            )
        if len(set(self.metrics)) != len(self.metrics):
            raise ICLTaskError(f"{where}: `generate.metrics` {self.metrics} names a metric twice")
        if not self.metrics and not self.checks:
            raise ICLTaskError(
                f"{where}: `generate.metrics` is empty and there are no `generate.checks`: nothing would be scored; "
                f"list metrics ({', '.join(GENERATION_METRICS)}) or checks"
            )
        names = [check.name for check in self.checks]
        for check in self.checks:
            if not isinstance(check.name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", check.name):
                raise ICLTaskError(
                    f"{where}: `generate.checks` name {check.name!r} must be letters, digits and _ only (it is part "
                    "of the metric's key)"
                )
            if check.name.endswith(STD_SUFFIX):
                raise ICLTaskError(
                    f"{where}: `generate.checks` name {check.name!r} must not end in {STD_SUFFIX!r} (the key of a "
                    "standard deviation); rename the check"
                )
            if names.count(check.name) > 1:
                raise ICLTaskError(f"{where}: `generate.checks` name {check.name!r} is used twice; names must differ")
            try:
                re.compile(check.regex)
            except (re.error, TypeError) as error:
                raise ICLTaskError(
                    f"{where}: `generate.checks` {check.name!r}: the regex {check.regex!r} does not compile: {error}"
                ) from None


@dataclass
class ICLTask:
    """One in-context learning task: data, prompt format, answer space, shots and seeds."""

    name: str
    """Short name, used in metric keys: ``icl/<name>/<metric>@k<K>``."""
    queries: str | DataSource
    """The examples that are scored (a local file path, or a ``DataSource``)."""
    template: str
    """Python format string for one example's text, e.g. ``"Review: {text}\\nSentiment:"``."""
    target: str
    """The answer: a field name (``label``) or a template (``"{label}"``). For ``choices`` tasks an
    integer value is read as an index into the choices."""
    demos: str | DataSource | None = None
    """The pool demonstrations are drawn from; default: the queries (a query never demonstrates itself)."""
    choices: list[str] | str | None = None
    """Scored by log-likelihood: a fixed list (``["Positive", "Negative"]``) or the name of a
    per-example field holding a list. Exactly one of ``choices`` and ``generate`` is set."""
    generate: Generation | None = None
    """Scored by greedy generation (see ``Generation``)."""
    instruction: str = ""
    """Header prepended verbatim to every prompt (lm-eval's ``description``); end it with a delimiter
    such as ``"\\n\\n"``."""
    target_delimiter: str = " "
    """Between an example's text and its answer."""
    fewshot_delimiter: str = "\n\n"
    """After each demonstration."""
    shots: list[int] = field(default_factory=lambda: [0])
    """Numbers of demonstrations k to evaluate."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One fixed demonstration set per seed; metrics are averaged over seeds."""
    max_queries: int | None = None
    """Score a seeded random subset of this many queries."""
    subsample_seed: int = 0
    """Seed of the ``max_queries`` subset, and of the subset ``ICLEvaluation(subsample=N)`` scores at intermediate
    evaluations."""
    balanced: bool = False
    """Draw demonstrations with (near-)equal counts per choice (fixed ``choices`` only)."""
    calibrate: bool = False
    """Also report ``acc_calibrated`` (contextual calibration, Zhao et al. 2021; fixed ``choices`` only)."""
    content_free: list[str] = field(default_factory=lambda: ["N/A", "", "[MASK]"])
    """Content-free inputs for calibration; each fills every template field. The default is Zhao et al.'s three,
    whose answer distributions are averaged."""
    truncate_demos: bool = False
    """When a prompt exceeds the model's context, drop demonstrations from the left instead of failing."""
    add_bos: bool | None = None
    """Start every prompt with the BOS token (true) or not (false); null: as the model's Hugging Face tokenizer does
    by default, which is lm-evaluation-harness's rule (tokenizer_config.json's `add_bos_token`)."""
    context: Context | None = None
    """Documents in the prompt: for every query its best documents by BM25 from a collection, placed after the
    instruction and before the demonstrations, at each of ``context.top_k``."""
    selection: Selection | None = field(default_factory=Selection)
    """The held-out split of the queries: choices (k, documents, steps, learning rates) are made on the selection
    part, scores reported on the test part; null: no split (choices are made on the scored queries)."""

    def __post_init__(self) -> None:
        if isinstance(self.queries, str):
            self.queries = DataSource(self.queries)
        if isinstance(self.demos, str):
            self.demos = DataSource(self.demos)
        if isinstance(self.generate, dict):
            self.generate = Generation(**self.generate)
        if isinstance(self.context, dict):
            self.context = Context(**self.context)
        if isinstance(self.selection, dict):
            self.selection = Selection(**self.selection)
        where = f"ICL task {self.name!r}"
        if not self.name or "/" in self.name or "@" in self.name:
            raise ICLTaskError(f"{where}: the name must be non-empty and contain no '/' or '@'")
        if (self.choices is None) == (self.generate is None):
            raise ICLTaskError(f"{where}: set exactly one of `choices` (log-likelihood) and `generate`")
        if isinstance(self.choices, list) and (not self.choices or len(set(self.choices)) != len(self.choices)):
            raise ICLTaskError(f"{where}: `choices` must be a non-empty list without duplicates")
        if isinstance(self.choices, list) and not all(isinstance(c, str) and c for c in self.choices):
            raise ICLTaskError(f"{where}: every choice must be a non-empty string, got {self.choices!r}")
        check_shots_and_seeds(where, self.shots, self.seeds)
        if self.max_queries is not None and self.max_queries < 1:
            raise ICLTaskError(f"{where}: `max_queries` must be >= 1, got {self.max_queries}")
        if (self.balanced or self.calibrate) and not isinstance(self.choices, list):
            raise ICLTaskError(f"{where}: `balanced` and `calibrate` need a fixed list of `choices`")
        if self.calibrate and not self.content_free:
            raise ICLTaskError(f"{where}: `calibrate` needs at least one `content_free` input")
        if self.generate is not None:
            self.generate.check(where)
        if self.context is not None:
            self.context.check(where)
            if self.calibrate:
                raise ICLTaskError(
                    f"{where}: `calibrate` together with `context` is not supported (the content-free prompts would "
                    "need documents of their own); drop one of them"
                )
        template_fields(self.template, f"{where}: template")
        if "{" in self.target:
            template_fields(self.target, f"{where}: target")

    @property
    def template_fields(self) -> list[str]:
        """The record fields the template reads."""
        return template_fields(self.template, f"ICL task {self.name!r}: template")

    def text(self, record: dict[str, Any]) -> str:
        """The example's text (the template filled from the record)."""
        return self.template.format(**record)

    def choices_for(self, record: dict[str, Any]) -> list[str]:
        """The answer options for this record (generation tasks: none)."""
        if self.choices is None:
            return []
        return self.choices if isinstance(self.choices, list) else list(record[self.choices])

    def answer(self, record: dict[str, Any]) -> tuple[int | None, str]:
        """(gold choice index or None for generation, answer text)."""
        value = self.target.format(**record) if "{" in self.target else record[self.target]
        if self.choices is None:
            return None, str(value)
        choices = self.choices_for(record)
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < len(choices):
                raise IndexError(f"target index {value} is out of range for {len(choices)} choices")
            return value, choices[value]
        if str(value) not in choices:
            raise LookupError(f"target {str(value)!r} is not among the choices {choices!r}")
        return choices.index(str(value)), str(value)

    def load(self) -> TaskData:
        """Load queries and demonstrations, validate every record, split the queries into their parts and retrieve
        their documents; raises ``ICLTaskError``."""
        where = f"ICL task {self.name!r}"
        queries = self.queries.load()
        if not queries:
            raise ICLTaskError(f"{where}: the query set {self.queries} is empty")
        pool = self.demos.load() if self.demos is not None else queries
        rows = list(range(len(queries)))
        if self.max_queries is not None and self.max_queries < len(queries):
            rows = sorted(random.Random(self.subsample_seed).sample(rows, self.max_queries))
            queries = [queries[i] for i in rows]
        for record in queries:
            self._check_query(record, where)
        for record in pool:
            self._check_record(record.data, f"{where}: demo {record.where}")
        parts = None
        if self.selection is not None and self.selection.path is not None:
            extra = DataSource(self.selection.path).load()
            if not extra:
                raise ICLTaskError(f"{where}: the selection queries {self.selection.path} (selection.path) are empty")
            for record in extra:
                self._check_query(record, where)
            parts = [TEST] * len(queries) + [SELECTION] * len(extra)
            rows, queries = rows + list(range(len(extra))), queries + extra
        elif self.selection is not None:
            keys = [record_key(r.data) for r in queries]
            chosen = split_queries(keys, self.selection, where)
            parts = [SELECTION if key in chosen else TEST for key in keys]
        data = TaskData(self, [r.data for r in queries], [r.data for r in pool], rows, [r.where for r in queries],
                        parts)
        data.check_pool_size()
        if self.context is not None:
            data.documents = load_documents(self.context, where)
            k = max(self.context.top_k)
            if k > len(data.documents):
                raise ICLTaskError(
                    f"{where}: context.top_k asks for {k} documents per query but the collection "
                    f"{self.context.documents!r} holds {len(data.documents)}; lower top_k to at most "
                    f"{len(data.documents)}"
                )
            data.retrieved = retrieve(data.documents, [self.retrieval_query(r) for r in data.queries], k)
        return data

    def retrieval_query(self, record: dict[str, Any]) -> str:
        """The text a query retrieves its documents with (``context.query``, default the task's template)."""
        template = self.context.query if self.context is not None and self.context.query is not None else self.template
        return template.format(**record)

    def _check_query(self, record: Record, where: str) -> None:
        """A query is a valid example with a reference answer where a metric compares with one, and has what
        retrieval reads: the retrieval query's fields and the source."""
        where = f"{where}: query {record.where}"
        self._check_record(record.data, where)
        if self.generate is not None and self.generate.metrics:
            value = self.answer(record.data)[1] if "{" in self.target else record.data[self.target]
            if value is None or not str(value).strip():
                raise ICLTaskError(
                    f"{where}: the reference answer (target {self.target!r}) is empty, but the metrics "
                    f"{self.generate.metrics} compare with it; fill it in, drop the row, or score the task with "
                    "`generate.checks` only (metrics: [])"
                )
        if self.context is None:
            return
        needed = set(self.context.query_fields) | ({self.context.source} if self.context.source else set())
        missing = sorted(needed - set(record.data))
        if missing:
            raise ICLTaskError(
                f"{where}: field(s) {missing} not found (context.query / context.source); the record has "
                f"{sorted(record.data)}"
            )
        try:
            self.retrieval_query(record.data)
        except (LookupError, TypeError, ValueError) as error:
            raise ICLTaskError(f"{where}: context.query: {error}") from None
        if self.context.source:
            source_ids(record.data, self.context, where)

    def _check_record(self, record: dict[str, Any], where: str) -> None:
        needed = set(self.template_fields)
        needed |= set(template_fields(self.target, "target")) if "{" in self.target else {self.target}
        if isinstance(self.choices, str):
            needed.add(self.choices)
        missing = sorted(needed - set(record))
        if missing:
            raise ICLTaskError(f"{where}: field(s) {missing} not found; the record has {sorted(record)}")
        try:
            self.text(record)
            if isinstance(self.choices, str):
                options = record[self.choices]
                if not isinstance(options, list) or not options or not all(isinstance(c, str) and c for c in options):
                    raise TypeError(f"field {self.choices!r} must be a non-empty list of non-empty strings")
            self.answer(record)
        except (LookupError, TypeError, ValueError, IndexError) as error:
            raise ICLTaskError(f"{where}: {error}") from None


@dataclass
class TaskData:
    """A task with its loaded, validated records (``ICLTask.load``); ``plan.encode_task`` tokenizes its prompts."""

    task: ICLTask
    queries: list[dict[str, Any]]
    demos: list[dict[str, Any]]
    query_rows: list[int]
    """Each query's 0-based index in the whole query set (differs from its index under ``max_queries``)."""
    query_where: list[str]
    """Each query's file and 1-based row (``Record.where``), for messages."""
    query_parts: list[str] | None = None
    """Each query's part, ``"selection"`` or ``"test"`` (None: the task has no split)."""
    documents: list[Document] = field(default_factory=list)
    """The context's document collection (empty without a context)."""
    retrieved: list[tuple[int, ...]] = field(default_factory=list)
    """Per query, the indices into ``documents`` of its ``max(context.top_k)`` best documents, best first."""

    def __post_init__(self) -> None:
        self.demo_keys = [record_key(r) for r in self.demos]
        self.query_keys = [record_key(r) for r in self.queries]
        self.pool_counts = Counter(self.demo_keys)
        self.demo_labels = [self.task.answer(r)[1] for r in self.demos]

    def subsample(self, n: int) -> list[int]:
        """The indices (into ``queries``) of a seeded subset of ``n`` queries, in order: the same for the same task
        and queries in every run (seeded by the task's ``subsample_seed``); every query when ``n`` is not smaller than
        their number."""
        if n >= len(self.queries):
            return list(range(len(self.queries)))
        return sorted(random.Random(self.task.subsample_seed).sample(range(len(self.queries)), n))

    def check_pool_size(self) -> None:
        """Every query must have k demonstrations available (excluding itself), per label if balanced."""
        task, where = self.task, f"ICL task {self.task.name!r}"
        k = max(task.shots)
        label_counts = Counter(self.demo_labels)
        for i, key in enumerate(self.query_keys):
            own = self.pool_counts[key]
            if k > len(self.demos) - own:
                excluded = f" ({len(self.demos) - own} once query {self.query_where[i]} itself is excluded)"
                detail = excluded if own else ""
                raise ICLTaskError(
                    f"{where}: k={k} demonstrations requested but the demo pool has {len(self.demos)}{detail}"
                )
            if task.balanced and k:
                quota = -(-k // len(task.choices))
                label = task.answer(self.queries[i])[1]
                for choice in task.choices:
                    have = label_counts[choice] - (own if choice == label else 0)
                    if have < quota:
                        raise ICLTaskError(
                            f"{where}: balanced k={k} needs {quota} demonstrations labelled {choice!r} for "
                            f"query {self.query_where[i]}, but the pool has only {have}"
                        )


def check_shots_and_seeds(where: str, shots: list[int], seeds: list[int]) -> None:
    """A task's ``shots`` are a non-empty list of k >= 0 and it has at least one seed; else ``ICLTaskError``."""
    if not shots or any(not isinstance(k, int) or k < 0 for k in shots):
        raise ICLTaskError(f"{where}: `shots` must be a non-empty list of integers >= 0, got {shots!r}")
    if not seeds:
        raise ICLTaskError(f"{where}: `seeds` must not be empty")


def record_key(record: dict[str, Any]) -> str:
    """A canonical string identifying a record by content (used to keep a query out of its own demos)."""
    return json.dumps(record, sort_keys=True, default=str)
