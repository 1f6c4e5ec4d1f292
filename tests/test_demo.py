"""The main job, end to end: `bash scripts/main.sh --quick` (which runs `lightning-adapt compare --quick`) in an empty
folder makes the default model from its name, runs ICL, LoRA fine-tuning and CPT on one timeline, and shows what the
README claims for the demo."""

import csv
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

CHANCE = {"sentiment": 0.5, "biographies": 0.25}


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """The README's first setup command with --quick, as a newcomer runs it: `bash scripts/main.sh --quick` installs
    the package (a no-op beside the test extras) and runs the short profile in the calling folder."""
    folder = tmp_path_factory.mktemp("demo")
    done = subprocess.run(f"bash {shlex.quote(str(ROOT))}/scripts/main.sh --quick", shell=True, cwd=folder,
                          capture_output=True, text=True, env=os.environ | {"PATH": VENV_PATH})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((folder / "out/compare/quick/report/report.json").read_text())
    return folder, report, done.stdout


@pytest.mark.slow
def test_main_sh(quick_demo):
    """`bash scripts/main.sh` (the README's first command) ran the main job where it was called and said so."""
    folder, _, printed = quick_demo
    assert (folder / "out/compare/quick/report/report.md").is_file() and "[compare] report: " in printed


def metrics_rows(run: dict, folder: Path) -> list[dict[str, str]]:
    with open(folder / run["log_dir"] / "metrics.csv") as fp:
        return list(csv.DictReader(fp))


@pytest.mark.slow
def test_default_model_made_from_its_name_and_lora_loss_falls(quick_demo):
    folder, report, _ = quick_demo
    assert (folder / "checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct/lit_model.pth").is_file()
    lora = next(run for run in report["runs"] if run["method"] == "lora")
    losses = [float(r["train/loss"]) for r in metrics_rows(lora, folder) if r.get("train/loss")]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses


@pytest.mark.slow
def test_icl_per_k_raw_and_calibrated_with_seed_variation(quick_demo):
    _, report, _ = quick_demo
    points = report["tasks"]["sentiment"]["icl"]["points"]
    assert sorted((p["k"], p["docs"]) for p in points.values()) == [(0, 0), (4, 0)]
    for entry in points.values():
        assert {"acc", "acc_calibrated", "acc_norm"} <= set(entry["all_metrics"]) and math.isfinite(entry["std"])
        if entry["k"] >= 4:
            assert entry["all_metrics"]["acc_calibrated"] > CHANCE["sentiment"], entry
    assert points["k=4"]["std"] > 0  # demonstration sets differ, and so do their scores


@pytest.mark.slow
def test_lora_0_shot_beats_the_best_k_shot_icl(quick_demo):
    _, report, _ = quick_demo
    task = report["tasks"]["sentiment"]
    best_icl = max(entry["mean"] for entry in task["icl"]["points"].values())
    assert task["arms"]["lora"]["chosen"]["score"] > best_icl, (task["arms"]["lora"]["chosen"], best_icl)


@pytest.mark.slow
def test_cpt_learns_the_biographies_and_its_effect_on_general_text_is_measured(quick_demo):
    _, report, _ = quick_demo
    cpt = next(run for run in report["runs"] if run["method"] == "cpt")
    assert cpt["domain_loss"][-1]["loss"] < cpt["domain_loss"][0]["loss"] - 1.0
    assert report["tasks"]["biographies"]["icl"]["points"]["k=0"]["mean"] <= CHANCE["biographies"] + 0.1
    assert report["tasks"]["biographies"]["arms"]["cpt"]["chosen"]["score"] > CHANCE["biographies"] + 0.25
    assert len(cpt["general_loss"]) >= 2 and all(math.isfinite(p["change"]) for p in cpt["general_loss"])


@pytest.mark.slow
def test_recommendation_and_break_even_are_printed_and_reported(quick_demo):
    folder, report, printed = quick_demo
    assert "[compare] biographies: recommend " in printed and "[compare] sentiment: recommend " in printed
    assert "[compare] icl: base model evaluated" in printed and "[compare] cpt: " in printed
    assert report["tasks"]["sentiment"]["arms"]["lora"]["break_even"]
    markdown = (folder / "out/compare/quick/report/report.md").read_text()
    assert "## Recommendation" in markdown and "Break-even" in markdown
    assert (folder / "out/compare/quick/report/timeline.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_knowledge_probe_has_its_documents_in_the_prompt_arm(quick_demo):
    """The fair prompting arm for new facts: the biography BM25 finds in the CPT corpus, placed before the question,
    scored on the base model and on every trained run (CPT + documents), with its retrieval hit rate and its prompt
    tokens in the cost."""
    _, report, _ = quick_demo
    task = report["tasks"]["biographies"]
    documents = task["icl"]["points"]["k=0, 1 doc"]
    assert documents["hit_rate"] >= 0.9 and documents["mean"] > task["icl"]["points"]["k=0"]["mean"] + 0.25
    assert documents["prompt_tokens"] > 3 * task["icl"]["points"]["k=0"]["prompt_tokens"]
    assert {"cpt + 1 doc", "lora + 1 doc"} <= set(task["arms"])
    assert task["selection"]["selection_queries"] == 6 and task["selection"]["test_queries"] == 18


@pytest.mark.slow
def test_house_style_replies_lora_beats_0_shot_prompting_on_the_checks(quick_demo):
    """The source material's fine-tuning example: LoRA on the company's replies passes more of the house-style checks
    than the base model prompted without demonstrations, and prompting with demonstrations pays for them (and for its
    reply) on every query."""
    _, report, _ = quick_demo
    task = report["tasks"]["support"]
    assert task["metric"] == "checks"
    zero, prompted = task["icl"]["points"]["k=0"], task["icl"]["points"]["k=2"]
    lora = task["arms"]["lora-support"]["chosen"]
    assert lora["score"] > zero["mean"], (lora, zero)
    assert {"check_greeting", "check_ticket_id", "check_signs_off", "chrf", "rougeL", "response_logprob"} <= set(
        lora["all_metrics"])
    assert lora["generated_tokens"] > 0 and prompted["generated_tokens"] > 0
    assert prompted["query_flops"] > zero["query_flops"] and prompted["prompt_tokens"] > 3 * zero["prompt_tokens"]
