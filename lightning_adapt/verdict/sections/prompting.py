"""Prompting the base model, per task: every ICL prompt evaluated (its scores, costs and role in the verdict), and the
break-even query counts of every trained arm against every prompt, with the paired difference that says why a count
is "never"."""

from __future__ import annotations

from typing import Any

from lightning_adapt.verdict.blocks import Block, Heading, Paragraph, Table
from lightning_adapt.verdict.points import HIT
from lightning_adapt.verdict.text import (
    difference_text,
    flops_text,
    interval_text,
    number_text,
    queries_text,
    score_text,
)

ICL_INTRO = ("Every prompt evaluated on the base model: k demonstrations and D retrieved documents (BM25, best first, "
             "before the demonstrations). Scores are means over the demonstration seeds on the test queries; the "
             "selection score is on the selection queries, where the baseline prompt was chosen. The hit rate is the "
             "share of test queries whose retrieved documents include the query's source document. A generation "
             "task's generated tokens are the mean reply length, which every query pays for beside its prompt.")
BREAK_EVEN_INTRO = ("Queries after which an arm's total FLOPs (training up to its chosen step, then its queries) fall "
                    "below prompting's (T-Few, Liu et al. 2022), against each prompt, every query paying for its "
                    "prompt and its answer (a generation task's: the replies each method generated); a search's second "
                    "row counts the "
                    "FLOPs of every run it trained. The verdict compares against the column marked baseline. Beside "
                    "each count, the arm's test score minus the prompt's on the same test queries [95% interval]: "
                    "\"never (score below)\" means that interval lies below 0, \"never (not cheaper per query)\" "
                    "that a trained query costs no fewer FLOPs than a prompted one.")


def role_text(label: str, task: dict[str, Any]) -> str:
    """What the report made of an ICL point: the baseline (chosen on the selection queries), the best by selection."""
    roles = [("baseline (chosen)", task["baseline"]), ("best by selection score", task["icl_best"])]
    return ", ".join(role for role, which in roles if which == label) or "—"


def hit_text(point: dict[str, Any]) -> str:
    if not point["docs"]:
        return "—"
    return score_text(point["hit_rate"])


def icl_table(name: str, task: dict[str, Any]) -> Table:
    points = task["icl"]["points"]
    others = [m for m in dict.fromkeys(m for p in points.values() for m in p["all_metrics"])
              if m not in (task["metric"], HIT)]
    documents = any(p["docs"] for p in points.values())
    generates = any(p.get("generated_tokens") is not None for p in points.values())
    header = ["prompt", "k", "documents", f"test {task['metric']} (mean ± std over seeds)", "95% interval",
              "selection score", *(f"test {m}" for m in others), "prompt tokens",
              *(["generated tokens"] if generates else []), "FLOPs per query",
              *(["retrieval hit rate"] if documents else []), "role"]
    rows = [[label, str(p["k"]), str(p["docs"]), f"{p['mean']:.3f} ± {p['std']:.3f}", interval_text(p["interval"]),
             score_text(p["selection_mean"]), *(score_text(p["all_metrics"].get(m)) for m in others),
             number_text(p["prompt_tokens"], 1), *([number_text(p["generated_tokens"], 1)] if generates else []),
             flops_text(p["query_flops"]),
             *([hit_text(p)] if documents else []), role_text(label, task)]
            for label, p in points.items()]
    return Table(header, rows, caption=f"**{name}** (from run `{task['icl']['source']}`)")


def icl_section(report: dict[str, Any]) -> list[Block]:
    return [Heading("ICL on the base model"), Paragraph(ICL_INTRO),
            *(icl_table(name, task) for name, task in report["tasks"].items())]


def even_text(entry: dict[str, Any], counts: dict[str, Any], label: str) -> str:
    """A break-even count against one prompt, with the paired difference that decided whether it counts."""
    return f"{queries_text(counts.get(label))}; {difference_text(entry['versus'].get(label))}"


def break_even_table(name: str, task: dict[str, Any]) -> Table | Paragraph:
    labels = list(task["icl"]["points"])
    rows = []
    for arm, entry in task["arms"].items():
        if not entry["chosen"]:
            rows.append([arm, *("n/a" for _ in labels)])
            continue
        rows.append([arm, *(even_text(entry, entry["break_even"], label) for label in labels)])
        if entry["break_even_search"] is not None:
            rows.append([f"{arm} (whole search)", *(queries_text(entry["break_even_search"].get(label))
                                                    for label in labels)])
    if not rows:
        return Paragraph(f"**{name}**: no trained arm to compare with.")
    header = ["arm", *(f"vs {label}" + (" (baseline)" if label == task["baseline"] else "") for label in labels)]
    return Table(header, rows, caption=f"**{name}**")


def break_even_section(report: dict[str, Any]) -> list[Block]:
    return [Heading("Break-even query counts"), Paragraph(BREAK_EVEN_INTRO),
            *(break_even_table(name, task) for name, task in report["tasks"].items())]
