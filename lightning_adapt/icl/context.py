"""Documents in the prompt: a task's ``Context`` (the collection to retrieve from and how retrieved documents are
placed), loading the collection, and BM25 retrieval (``bm25s``) of each query's best documents.

A prompt with D documents is ``instruction + D documents (rank order, best first, each through the context's
template) + demonstrations + query``; each document is cut to its first ``max_tokens`` tokens when the prompts are
tokenized (``encoding.PromptEncoder``).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from lightning_adapt.data.documents import DOCUMENT_SUFFIXES, TEXT_SUFFIXES, nonempty_files
from lightning_adapt.data.records import DataError, Record, decoded_lines, read_file, read_records, resolve_builtin, \
    resolve_files, text_field
from lightning_adapt.icl.errors import ICLTaskError

DOCUMENT_FIELDS = ("document", "id")
"""The fields a context's `template` may use."""


@dataclass
class Context:
    """A document collection to retrieve from, and how the retrieved documents are placed in every prompt."""

    documents: str
    """A ``.txt`` file (one document), a folder of ``.txt`` files (each one document, its id the path relative to the
    folder), a ``.json``/``.jsonl``/``.csv``/``.parquet`` file or folder of records (``text_field``, ``id_field``),
    ``builtin:NAME``, or a `datasets` name (``split``): what a CPT run reads as its corpus (``.text`` and ``.md``
    files are plain text too), each file or record one document; blank ones are left out."""
    top_k: list[int] = field(default_factory=lambda: [1])
    """Numbers of retrieved documents to evaluate, each a point like each k; 0 is the point without documents."""
    max_tokens: int = 512
    """Each retrieved document is cut to its first this many tokens."""
    template: str = "{document}\n\n"
    """How one document is rendered (fields: ``document``, its text, and ``id``)."""
    query: str | None = None
    """The retrieval query, a template over the query record; default: the task's template."""
    text_field: str = "text"
    """Record collections: the field holding a document's text."""
    id_field: str | None = None
    """Record collections: the field holding a document's id; default: ``<file>:<row>``."""
    source: str | None = None
    """The query field naming its source document id(s) (a string or a list): then each point with documents also
    reports ``hit``, whether a retrieved document is one of them."""
    split: str = "train"
    """The split of a `datasets` collection."""

    def check(self, where: str) -> None:
        """Refuse settings that cannot work (``ICLTaskError`` naming `where` and the field)."""
        if not self.documents:
            raise ICLTaskError(f"{where}: context.documents must name a document collection")
        if not self.top_k or any(not isinstance(k, int) or isinstance(k, bool) or k < 0 for k in self.top_k):
            raise ICLTaskError(
                f"{where}: context.top_k must be a non-empty list of integers >= 0 (numbers of retrieved documents "
                f"per prompt; 0: none), got {self.top_k!r}"
            )
        if self.max_tokens < 1:
            raise ICLTaskError(f"{where}: context.max_tokens must be >= 1, got {self.max_tokens}")
        names = template_fields(self.template, f"{where}: context.template")
        if "document" not in names:
            raise ICLTaskError(
                f"{where}: context.template {self.template!r} must contain {{document}} (where the document's text "
                "goes), e.g. '{document}\\n\\n'"
            )
        unknown = sorted(set(names) - set(DOCUMENT_FIELDS))
        if unknown:
            raise ICLTaskError(
                f"{where}: context.template {self.template!r} uses {unknown}; a document has only the fields "
                f"{list(DOCUMENT_FIELDS)}"
            )
        if self.query is not None:
            template_fields(self.query, f"{where}: context.query")

    @property
    def query_fields(self) -> list[str]:
        """The query record fields the retrieval query reads (none when it is the task's template)."""
        return [] if self.query is None else template_fields(self.query, "context.query")

    def render(self, document: Document, text: str) -> str:
        """One document as it appears in a prompt, its (possibly cut) `text` in the template."""
        return self.template.format(document=text, id=document.id)


@dataclass(frozen=True)
class Document:
    """One document of a collection: its id (what a query's `source` names) and text."""

    id: str
    text: str


def load_documents(context: Context, where: str) -> list[Document]:
    """The collection's non-blank documents in a fixed order; ``ICLTaskError`` naming the path when it is missing or
    holds none."""
    label = f"{where}: context.documents {context.documents!r}"
    try:
        files = resolve_files(context.documents, DOCUMENT_SUFFIXES)
        if files is None:
            documents = _from_records(read_records(context.documents, context.split), context, None)
        else:
            files = nonempty_files(files, context.documents)
            documents = [document for path in files for document in _from_file(path, files, context)]
    except DataError as error:
        raise ICLTaskError(f"{label}: {error}") from None
    if not documents:
        raise ICLTaskError(f"{label} holds no documents (none with text); give a collection with at least one")
    return documents


def _from_file(path: Path, files: list[Path], context: Context) -> list[Document]:
    """A plain-text file's one document, or a record file's documents; ids relative to the collection's folder."""
    root = Path(resolve_builtin(context.documents))
    name = path.relative_to(root).as_posix() if root.is_dir() else (path.name if len(files) == 1 else str(path))
    if path.suffix.lower() in TEXT_SUFFIXES:
        text = "".join(line for _, line, _ in decoded_lines(path)).strip()
        return [Document(name, text)] if text else []
    return _from_records(read_file(path), context, name)


def _from_records(records: list[Record], context: Context, name: str | None) -> list[Document]:
    """A document per record with text; its id the `id_field`, else ``<file>:<row>``."""
    hint = "Set context.text_field to the field that holds each document's text."
    documents = []
    for record in records:
        text = text_field(record, context.text_field, hint)
        if not text.strip():
            continue
        if context.id_field is None:
            identifier = f"{name or record.source}:{record.row}"
        elif context.id_field not in record.data or record.data[context.id_field] is None:
            raise DataError(f"{record.where}: missing id field '{context.id_field}' (context.id_field).")
        else:
            identifier = str(record.data[context.id_field])
        documents.append(Document(identifier, text))
    return documents


def retrieve(documents: Sequence[Document], queries: Sequence[str], k: int) -> list[tuple[int, ...]]:
    """For each query, the indices of its `k` best documents by BM25 (``bm25s``, English stopwords), best first;
    equal scores go to the document earlier in the collection, so the ranking is deterministic and the best d for
    any d <= k are a prefix."""
    if k == 0:
        return [() for _ in queries]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([d.text for d in documents], stopwords="en", show_progress=False),
                    show_progress=False)
    tokens = bm25s.tokenize(list(queries), stopwords="en", return_ids=False, show_progress=False)
    order = np.arange(len(documents))
    ranked = []
    for words in tokens:
        scores = retriever.get_scores(words) if words else np.zeros(len(documents))
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = order[scores >= threshold]
        best = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        ranked.append(tuple(int(i) for i in best))
    return ranked


def source_ids(record: dict[str, Any], context: Context, where: str) -> set[str]:
    """The ids the query's `source` field names (a string or a list of strings)."""
    value = record.get(context.source)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    raise ICLTaskError(
        f"{where}: field {context.source!r} (context.source) must be a document id or a list of them, got "
        f"{value!r:.80}"
    )


def template_fields(template: str, where: str) -> list[str]:
    """The named fields of a format string; ``ICLTaskError`` for an invalid one or positional fields."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ICLTaskError(f"{where} {template!r} is not a valid format string: {error}") from None
    if any(not name or name.isdigit() for name in names):
        raise ICLTaskError(f"{where} {template!r} must use named fields like {{text}}, not {{}} or {{0}}")
    return [name.split(".")[0].split("[")[0] for name in names]
