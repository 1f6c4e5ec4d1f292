"""Forgetting: each trained run's held-out loss on general text (and on its own validation data) and its score on
general-ability tasks, before and after training, with what each change means and how general text was measured."""

from __future__ import annotations

from typing import Any

from lightning_adapt.verdict.blocks import Block, Heading, Paragraph, Picture, Table

PICTURE = ("Change since the base model against training FLOPs: general-text loss (above 0: worse) and general-task "
           "scores")
LOSS_MEANING = {
    "general text": ("higher: worse at general text (forgetting)",
                     "lower: no forgetting measured; training on text like the general text lowers its loss too"),
    "own validation data": ("higher: worse on its own held-out data (overfitting)", "lower: it learned its data"),
}
"""Per held-out text: what a loss above and below the base model's means."""


def loss_comment(what: str, change: float) -> str:
    if change == 0:
        return "unchanged"
    worse, better = LOSS_MEANING[what]
    return worse if change > 0 else better


def score_comment(change: float) -> str:
    if change == 0:
        return "unchanged"
    return "lower: worse at this task (forgetting)" if change < 0 else "higher: better at this task than the base model"


def block_length_text(general: dict[str, Any]) -> str:
    """How general text was cut into blocks: one length for every run, or which run used which (and why it matters)."""
    if general.get("note"):
        return general["note"]
    if general["block_length"] is None:
        return ""
    return (f"General text is scored in blocks of {general['block_length']:,} tokens for every run, so every "
            "run's loss before training is the same base model's.")


def loss_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for run in (r for r in report["runs"] if r["module"]):
        for key, what in (("general_loss", "general text"), ("domain_loss", "own validation data")):
            curve = run[key]
            if len(curve) > 1:
                change = curve[-1]["change"]
                rows.append([run["method"], what, f"{curve[0]['loss']:.4f}", f"{curve[-1]['loss']:.4f}",
                             f"{change:+.4f}", loss_comment(what, change)])
    return rows


def forgetting_section(report: dict[str, Any], pictures: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading("Forgetting"), Paragraph(
        "Held-out losses in nats per token, before training (step 0) and at the last validation; the change is "
        "since the base model (a run that continues another adds that run's change). "
        + block_length_text(report["general"]))]
    if "forgetting.png" in pictures:
        blocks.append(Picture("forgetting.png", PICTURE))
    rows = loss_rows(report)
    header = ["run", "held-out loss on", "before", "after (last validation)", "change", "what the change means"]
    blocks.append(Table(header, rows) if rows
                  else Paragraph("No run logged held-out losses (val/general_loss, val/domain_loss)."))
    scores = [[method, f"{name} {task['metric']} (k={task['k']})", f"{curve[0]['score']:.4f}",
               f"{curve[-1]['score']:.4f}", f"{curve[-1]['change']:+.4f}", score_comment(curve[-1]["change"])]
              for name, task in report.get("general_tasks", {}).items() for method, curve in task["runs"].items()]
    if scores:
        blocks.append(Table(["run", "score on", "before", "after (last validation)", "change",
                             "what the change means"], scores,
                            caption="General-ability tasks, scored on every trained run at step 0 and every "
                                    "validation:"))
    return blocks
