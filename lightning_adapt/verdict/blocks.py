"""The report as a document: headings, paragraphs, lists, tables and pictures, written once by the sections
(`verdict.sections`) and rendered twice, as report.md (`verdict.markdown`) and as report.html (`verdict.html`).
Text may hold two inline marks, **bold** and `code`, which both renderers understand."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Heading:
    """A section title (level 1: the report's title, 2: a section, 3: a part of one)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Items:
    """A bulleted list; each item may carry a second, indented line (`notes`, "" for none)."""

    items: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Table:
    """A table; `caption` (a line above it) says what it holds; `row_headers`: its first column names the rows."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    row_headers: bool = False


@dataclass(frozen=True)
class Picture:
    """A plot written beside the report (`file`, e.g. "timeline.png") and what it shows (`text`)."""

    file: str
    text: str


Block = Heading | Paragraph | Items | Table | Picture
"""One piece of the report."""
