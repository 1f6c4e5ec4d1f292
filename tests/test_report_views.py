"""report.md and the plots drawn from a report.json built by hand after the schema (tests/report_fixture.py): what
the verdict names, which step every number is from, when data.png is written, forgetting's comments, time split into
training and evaluation, and the words used."""

from __future__ import annotations

import pytest

from lightning_adapt.verdict.blocks import Heading, Items, Table
from lightning_adapt.verdict.document import document
from lightning_adapt.verdict.markdown import markdown, table_text
from lightning_adapt.verdict.plots import PLOTS, arm_label, drawn_plots
from lightning_adapt.verdict.report import write_report
from lightning_adapt.verdict.sections.forgetting import forgetting_section
from lightning_adapt.icl.keys import point_label
from tests.report_fixture import CPT_DOCS, HOW, ONE_DOC, RULE, curve, hand_built, with_sweep


@pytest.fixture
def report() -> dict:
    return hand_built()


def report_md(report: dict) -> str:
    return markdown(document(report, drawn_plots(report)))


def row(md: str, start: str) -> str:
    """The Markdown table row starting with `start`."""
    return next(line for line in md.splitlines() if line.startswith(start))


def verdict_items(report: dict) -> dict[str, str]:
    """Per task, its verdict item and the note under it."""
    blocks = document(report, drawn_plots(report))
    items = next(b for i, b in enumerate(blocks) if isinstance(b, Items) and blocks[i - 1] == Heading("Recommendation"))
    return {name: f"{item}\n{note}" for name, item, note in zip(report["tasks"], items.items, items.notes)}


def test_markdown_states_the_selection_the_rule_the_search_and_the_documents(report):
    md = report_md(report)
    for how in (HOW.format(s=20, t=60), HOW.format(s=30, t=90)):
        assert how in md  # one sentence per task: choices on the selection queries, scores on the test queries
    assert md.count(RULE) == 1  # the decision rule, once when every task shares it
    assert row(md, "|  | ICL") == f"|  | ICL (baseline prompt) | lora | cpt | {CPT_DOCS} |"  # a search is one column
    assert "4 runs (learning rates 0.0001, 0.001; seeds 0, 1), chosen lr 0.001" in row(md, "| search (bios) |")
    assert row(md, "| training FLOPs of the whole search |") == "| training FLOPs of the whole search | — | " \
                                                                "4.4e+12 (4 runs) | — | — |"
    assert f"| {ONE_DOC} | 0 | 1 | 0.900 ± 0.020 | [0.850, 0.950] | 0.910 | 0.920 | 83.0 | 8.3e+07 | 0.950 | " \
           "baseline (chosen) |" in md
    assert "| k=4 | 4 | 0 | 0.700 ± 0.020 | [0.650, 0.750] | 0.710 | 0.720 | 100.0 | 1e+08 | best by selection " \
           "score |" in md
    assert f"| arm | vs k=0 | vs k=2 | vs {ONE_DOC} (baseline) | vs {point_label(0, 3)} |" in md
    # lora scores 0.3 on bios, 0.6 below the baseline's 0.9: no break-even, and the difference says why
    assert f"| lora | never (not cheaper per query); +0.140 [+0.090, +0.190] on 60 test queries | 1,234; " \
           "+0.100 [+0.050, +0.150] on 60 test queries | never (score below); -0.600 [-0.650, -0.550] on 60 test " \
           "queries |" in md
    assert "| lora (whole search) | never (not cheaper per query) | 5,678 | never (score below) |" in md
    assert "| lora-lr0.001-s1 | fine-tuning; search of `lora`: learning rate 0.001, seed 1 |" in md


def test_each_verdict_compares_with_its_one_baseline(report):
    items = verdict_items(report)
    assert items["sent"].startswith("**sent: recommend lora (fine-tuning, learning rate 0.001; test acc 0.800 "
                                    "[0.700, 0.900] at step 5, chosen on the selection queries); never cheaper than "
                                    "prompting with k=0**")
    assert "Baseline: ICL on the base model, k=0: test 0.550" in items["sent"]
    assert "k=4" not in items["sent"]  # the best prompt (k=4) is not the baseline: never named in the verdict
    assert point_label(0, 3) not in items["bios"] and ONE_DOC in items["bios"]


def test_every_trained_score_says_whether_it_is_the_chosen_or_the_last_step(report):
    md = report_md(report)
    assert "0.800 [0.740, 0.860] at step 5, chosen on the selection queries (selection score 1.000, mean of 2 " \
           "seeds); 0.850 [0.790, 0.910] at step 10, the last evaluated" in verdict_items(report)["sent"]
    assert row(md, "| **score** on the test queries at the chosen step [95% interval] (sent) |") == (
        "| **score** on the test queries at the chosen step [95% interval] (sent) | 0.550 [0.500, 0.600] (k=0) | "
        "0.800 [0.740, 0.860] (step 5, 2 seeds) | 0.600 [0.540, 0.660] (step 5) | — |")
    assert row(md, "| score at the last step [95% interval] (sent) |") == (
        "| score at the last step [95% interval] (sent) | — | 0.850 [0.790, 0.910] (step 10) | "
        "0.620 [0.560, 0.680] (step 10) | — |")
    lora = report["tasks"]["sent"]["arms"]["lora"]
    assert arm_label("lora", lora) == "lora: chosen step 5 0.800, last step 10 0.850 (mean of 2 seeds)"
    lora["last"] = lora["last"] | {"step": 5, "score": 0.8}  # chosen at the last step: said once
    assert arm_label("lora", lora) == "lora: chosen step 5 0.800 (mean of 2 seeds)"
    assert "the last evaluated" not in verdict_items(report)["sent"]


def test_data_png_is_written_only_for_a_sweep_of_several_sizes(report, tmp_path):
    assert drawn_plots(report) == ["timeline.png", "cost.png", "forgetting.png"]  # lone runs' curves: nothing to show
    assert "data.png" not in report_md(report)
    one_size = hand_built()
    one_size["data_efficiency"]["sent"]["curves"]["sweep"] = curve("lora", [50], swept=True)
    assert "data.png" not in drawn_plots(one_size)
    swept = with_sweep(report)
    assert drawn_plots(swept) == ["timeline.png", "cost.png", "forgetting.png", "data.png"]
    assert "![Test score against the labelled examples used" in report_md(swept)
    out = write_report(swept, tmp_path / "report", [], overwrite=False, overwrite_hint="")
    assert {p.name for p in out.iterdir()} >= {"report.md", "report.html", "report.json", "data.png"}
    assert "| sent | lora-sweep | 25 examples: 0.500 (50 examples seen, file 300 examples) · 50 examples: " \
           in (out / "report.md").read_text()


def test_forgetting_comments_on_every_change_and_says_how_general_text_was_measured(report):
    md = report_md(report)
    assert row(md, "| cpt | general text |") == (
        "| cpt | general text | 2.0000 | 1.7000 | -0.3000 | lower: no forgetting measured; training on text like "
        "the general text lowers its loss too |")
    assert "| +0.1000 | higher: worse at general text (forgetting) |" in row(md, "| lora-lr0.001-s0 |")
    assert "General text is scored in blocks of 256 tokens for every run" in md
    note = "The runs scored general text in blocks of different lengths (lora-lr0.001-s0 256, cpt 8192 tokens)."
    report["general"] = {"block_length": None, "block_lengths": {"lora-lr0.001-s0": 256, "cpt": 8192}, "note": note}
    text = markdown(forgetting_section(report, []))
    assert note in text and "for every run" not in text
    assert "forgetting.png" not in text  # not drawn: not shown


def test_training_and_evaluation_time_are_apart_in_every_table(report):
    md = report_md(report)
    assert row(md, "| **efficiency**: time in training steps (s) |") == \
        "| **efficiency**: time in training steps (s) | 0 | 10.0 | 10.0 | 10.0 |"
    assert row(md, "| time evaluating (s) |") == "| time evaluating (s) | 18.0 | 85.0 | 85.0 | 85.0 |"
    assert row(md, "| time of the whole search: training; evaluating; wall (s) |").endswith(
        "| 40.0; 120.0; 170.0 | — | — |")
    assert row(md, "| run | what it is |") == "| run | what it is | training (s) | padding | evaluating (s) | wall (s) | folder |"
    assert row(md, "| cpt | continual pretraining |").startswith("| cpt | continual pretraining | 10.0 | n/a | 85.0 | "
                                                                     "112.0 |")  # a record from before padding was logged
    assert "4.0 s training and 30.0 s evaluating" in verdict_items(report)["sent"]  # up to the chosen step


def test_words_a_reader_can_place(report):
    md = report_md(report)
    for jargon in ("tolerance", "source material", "incl.", "including the run it continues"):
        assert jargon not in md, jargon  # no run continues another: no rows for it
    assert "## Words used in this report" in md and "- **break-even**: " in md
    report["runs"][-1]["continues"] = "lora-lr0.001-s1"
    md = report_md(report)
    assert "| training FLOPs including the run it continues |" in md and "continues `lora-lr0.001-s1`" in md


def test_a_table_cell_holding_a_bar_stays_one_cell():
    assert table_text(Table(["a", "b"], [["x | y", "z"]])) == "| a | b |\n|---|---|\n| x \\| y | z |"


def test_the_plots_are_written(tmp_path):
    report = with_sweep(hand_built())
    for name in drawn_plots(report):
        PLOTS[name](report, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 20_000, name


def test_a_report_of_prompting_alone_has_no_arm_columns_no_search_rows_and_two_plots(tmp_path):
    report = hand_built()
    for name, task in report["tasks"].items():
        task["arms"] = {}
        task["recommendation"] |= {"method": "icl", "tier": "in-context learning", "point": task["baseline"]}
        report["data_efficiency"][name]["curves"] = {}
    report["runs"] = report["runs"][:1]
    md = report_md(report)
    assert "|  | ICL (baseline prompt) |\n" in md and "| training FLOPs of the whole search" not in md
    assert "| search" not in md
    assert "**sent**: no trained arm to compare with." in md
    assert drawn_plots(report) == ["timeline.png", "cost.png"]
    for name in drawn_plots(report):
        PLOTS[name](report, tmp_path / name)
        assert (tmp_path / name).stat().st_size > 20_000, name
