"""The whole report as one list of blocks, in reading order: the title, the verdict and the timeline, how the
verdict is decided and the words it uses, then the measurements behind it (`verdict.sections`); report.md and
report.html are both rendered from it."""

from __future__ import annotations

from typing import Any

from lightning_adapt.verdict.blocks import Block, Heading, Paragraph
from lightning_adapt.verdict.sections.data import data_section
from lightning_adapt.verdict.sections.dimensions import dimensions_section
from lightning_adapt.verdict.sections.forgetting import forgetting_section
from lightning_adapt.verdict.sections.prompting import break_even_section, icl_section
from lightning_adapt.verdict.sections.recommendation import rules_section, terms_section, verdict_section
from lightning_adapt.verdict.sections.runs import estimate_section, runs_section


def title(report: dict[str, Any]) -> str:
    return f"Adaptation report: {report['base_model']['name']}"


def header(report: dict[str, Any]) -> list[Block]:
    runs = ", ".join(f"`{r['method']}`" for r in report["runs"])
    return [Heading(title(report), 1),
            Paragraph(f"Base checkpoint `{report['base_model']['checkpoint_dir']}`; runs: {runs}; tasks: "
                      f"{', '.join(report['tasks'])}.")]


def document(report: dict[str, Any], pictures: list[str]) -> list[Block]:
    """The report's blocks from report.json's numbers; `pictures`: the plot files written beside it (a section shows
    a plot only when it was written)."""
    return [*header(report), *verdict_section(report, pictures), *rules_section(report), *terms_section(),
            *dimensions_section(report), *icl_section(report), *break_even_section(report),
            *data_section(report, pictures), *estimate_section(report), *forgetting_section(report, pictures),
            *runs_section(report)]
