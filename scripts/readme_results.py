"""Run the built-in demo (plus its CPT run without replay) and write the README's results section and pictures.

    python scripts/readme_results.py          # about 20 minutes on a 2-core CPU
    python scripts/readme_results.py --reuse  # rewrite the README from the runs already under out/compare/

Writes docs/demo/{timeline,forgetting}.png and replaces the README text between the `demo-results` markers.
Never edit that part of the README by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from lightning_adapt.atomic import atomic_write_text
from lightning_adapt.cli import main as cli
from lightning_adapt.compare import recommendation_lines
from lightning_adapt.icl.task import DataSource
from lightning_adapt.report import load_run

ROOT = Path(__file__).resolve().parents[1]
DEMO, NO_REPLAY = Path("out/compare/demo"), Path("out/compare/demo-no-replay")
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
NO_REPLAY_ARGS = ["--methods", "[cpt]", "--cpt.data.replay.ratio", "0", "--export", "false", "--out_dir", str(NO_REPLAY)]


def run(args: list[str], out_dir: Path) -> None:
    """Run `lightning-adapt compare ARGS` and keep its wall time next to its report."""
    start = time.perf_counter()
    cli(["compare", *args])
    atomic_write_text(out_dir / "wall_seconds.json", json.dumps({"seconds": time.perf_counter() - start}))


def minutes(out_dir: Path) -> str:
    seconds = json.loads((out_dir / "wall_seconds.json").read_text())["seconds"]
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def icl_table(report: dict) -> list[str]:
    """Base-model k-shot sentiment: raw and calibrated accuracy, mean ± std over the demonstration seeds."""
    metrics = load_run(run_of(report, "icl")["log_dir"]).metrics
    shots = sorted(int(k) for k in report["tasks"]["sentiment"]["icl"]["shots"])
    seeds = len(report["compare"]["tasks"][0]["seeds"])
    lines = [f"| k | acc (mean ± std over {seeds} seeds) | acc_calibrated | prompt tokens |", "|---|---|---|---|"]
    for k in shots:
        cell = {m: f"{metrics[f'icl/sentiment/{m}@k{k}'][0]:.3f} ± {metrics[f'icl/sentiment/{m}_std@k{k}'][0]:.3f}"
                for m in ("acc", "acc_calibrated")}
        lines.append(f"| {k} | {cell['acc']} | {cell['acc_calibrated']} | "
                     f"{metrics[f'icl/sentiment/prompt_tokens@k{k}'][0]:.0f} |")
    return lines


def queries(report: dict) -> int:
    """How many sentiment test reviews were scored."""
    spec = report["tasks"]["sentiment"]["spec"]
    total = len(DataSource(**spec["queries"]).load())
    return min(total, spec["max_queries"] or total)


def run_of(report: dict, method: str) -> dict:
    return next(r for r in report["runs"] if r["method"] == method)


def trained_table(report: dict, no_replay: dict) -> list[str]:
    """What each trained run reached, what it cost, and how much general text it forgot."""
    lines = ["| run | sentiment acc (0-shot) | biography probe acc | biography held-out loss | general-text loss "
             "change | training tokens | training FLOPs | wall time |", "|---|---|---|---|---|---|---|---|"]
    for method, label, source in (("lora", "LoRA fine-tuning", report), ("cpt", "CPT, 10% replay", report),
                                  ("cpt", "CPT, no replay", no_replay)):
        entry = run_of(source, method)
        sentiment, bios = (source["tasks"][name]["methods"][method]["timeline"] for name in ("sentiment", "biographies"))
        domain = entry["domain_loss"]
        domain_cell = f"{domain[0]['loss']:.2f} → {domain[-1]['loss']:.2f}" if method == "cpt" else "—"
        lines.append(
            f"| {label} | {sentiment[0]['score']:.3f} → {sentiment[-1]['score']:.3f} | {bios[0]['score']:.3f} → "
            f"{bios[-1]['score']:.3f} | {domain_cell} | {entry['general_loss'][-1]['change']:+.3f} | "
            f"{entry['train_tokens']:,.0f} | {entry['training_flops']:.2e} | {entry['wall_s']:.0f} s |"
        )
    return lines


def section(report: dict, no_replay: dict) -> str:
    best = max(report["tasks"]["sentiment"]["icl"]["shots"].items(), key=lambda item: item[1]["mean"])
    lora = report["tasks"]["sentiment"]["methods"]["lora"]["best"]
    parts = [
        START,
        f"Measured on this project's 2-core CPU by `python scripts/readme_results.py`: the demo took "
        f"**{minutes(DEMO)}**, its CPT run without replay {minutes(NO_REPLAY)}.",
        "",
        "![timeline](docs/demo/timeline.png)",
        "",
        f"Base model, k-shot review sentiment ({queries(report)} test reviews; chance 0.5):",
        "",
        *icl_table(report),
        "",
        "Trained runs, first → last evaluation (0-shot; the biography probe has 4 choices, chance 0.25):",
        "",
        *trained_table(report, no_replay),
        "",
        f"LoRA's best 0-shot accuracy {lora['score']:.3f} against the base model's best k-shot accuracy "
        f"{best[1]['mean']:.3f} (k={best[0]}). Recommendations printed at the end of the run:",
        "",
        *(f"- {line}" for line in recommendation_lines(report)),
        "",
        "![forgetting](docs/demo/forgetting.png)",
        END,
    ]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="use the runs already under out/compare/")
    args = parser.parse_args()
    if not args.reuse:
        run([], DEMO)
        run(NO_REPLAY_ARGS, NO_REPLAY)
    report = json.loads((DEMO / "report/report.json").read_text())
    no_replay = json.loads((NO_REPLAY / "report/report.json").read_text())
    pictures = ROOT / "docs/demo"
    pictures.mkdir(parents=True, exist_ok=True)
    for name in ("timeline.png", "forgetting.png"):
        shutil.copyfile(DEMO / "report" / name, pictures / name)
    readme = (ROOT / "README.md").read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    atomic_write_text(ROOT / "README.md", head + section(report, no_replay) + rest.split(END, 1)[1])
    print(f"README.md results rewritten from {DEMO} and {NO_REPLAY}")


if __name__ == "__main__":
    main()
