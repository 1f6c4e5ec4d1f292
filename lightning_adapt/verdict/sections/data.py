"""Data efficiency: per task, how each trained arm's (or data-size sweep's) test score grows with the data it used,
and how much data it needed to match prompting; data.png beside it when a sweep has several sizes to draw."""

from __future__ import annotations

from typing import Any

from lightning_adapt.verdict.blocks import Block, Heading, Paragraph, Picture, Table
from lightning_adapt.verdict.text import match_text, size_text, target_text

INTRO = ("Each trained arm's test score against the data it had used: for one run, the examples (or tokens) it had "
         "seen at each evaluation, counted at most once each (the training file's size caps it); for a data-size "
         "sweep (nested seeded subsets of the file, every size trained for the same number of steps), the subset "
         "size at its chosen step. ICL's k demonstrations count as k labelled examples; training is measured "
         "against the baseline prompt (or, when it holds documents, the best prompt without them). The data to "
         "match ICL is interpolated in log(size) between the sizes around it.")
PICTURE = "Test score against the labelled examples used: each data-size sweep, ICL's k-shot prompts at x = k"


def size_point_text(point: dict[str, Any], unit: str) -> str:
    """One size of a curve: "80 examples: 0.850" (a run's own curve: "at step 5"), with its seeds, and what was seen
    or in the file when that differs from the size used."""
    step = f" at step {point['step']}" if "step" in point else ""
    text = f"{size_text(point['size'], unit)}{step}: {point['mean']:.3f}"
    if point["seeds"] > 1:
        text += f" ± {point['std']:.3f} ({point['seeds']} seeds)"
    seen, file = point["seen"], point["file_size"]
    more = []
    if seen is not None and seen != point["size"]:
        more.append(f"{size_text(seen, unit)} seen")
    if file is not None and file != point["size"]:
        more.append(f"file {size_text(file, unit)}")
    return text + (f" ({', '.join(more)})" if more else "")


def data_section(report: dict[str, Any], pictures: list[str]) -> list[Block]:
    """The table (and data.png when it was drawn)."""
    rows = [
        [name, of, " · ".join(size_point_text(p, curve["unit"]) for p in curve["points"]),
         "data-size sweep (chosen step per size)" if curve["swept"] else "its evaluations",
         f"{task['target']:.3f} ({target_text(task['target_point'], report['tasks'][name])})", match_text(curve)]
        for name, task in report["data_efficiency"].items() for of, curve in task["curves"].items()
    ]
    header = ["task", "arm or sweep", "test score per data used", "points", "ICL to match", "data to match ICL"]
    blocks: list[Block] = [Heading("Data efficiency"), Paragraph(INTRO)]
    if "data.png" in pictures:
        blocks.append(Picture("data.png", PICTURE))
    blocks.append(Table(header, rows) if rows else Paragraph("No trained run recorded the size of its training data."))
    return blocks
