"""Run the built-in demo (plus its CPT run without replay) and the data-size sweep, and write the README's results
sections and pictures.

    python scripts/readme_results.py               # about 30 minutes on a 2-core CPU
    python scripts/readme_results.py --only sweep  # the sweep alone (configs/compare/sweep.yaml, about 10 minutes)
    python scripts/readme_results.py --reuse       # rebuild the reports and the README from the runs already there

Writes docs/demo/{timeline,forgetting}.png and docs/sweep/{data,timeline}.png and replaces the README text between the
`demo-results` and `sweep-results` markers. Never edit those parts of the README by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from lightning_adapt.core.atomic import atomic_write_text
from lightning_adapt.cli import main as cli
from lightning_adapt.icl.task import DataSource
from lightning_adapt.verdict.report import build_report
from lightning_adapt.verdict.run import load_run
from lightning_adapt.verdict.markdown import estimate_table
from lightning_adapt.verdict.text import match_text, recommendation_lines

ROOT = Path(__file__).resolve().parents[1]
DEMO, NO_REPLAY, SWEEP = Path("out/compare/demo"), Path("out/compare/demo-no-replay"), Path("out/compare/sweep")
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
SWEEP_START, SWEEP_END = "<!-- sweep-results:start -->", "<!-- sweep-results:end -->"
SWEEP_ARGS = ["--config", str(ROOT / "configs/compare/sweep.yaml")]
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
        "",
        "Each run's estimate, made just before it trained (`lightning-adapt estimate`'s probe of 2 + 3 steps), against "
        "what it then measured:",
        "",
        *estimate_table(report),
        END,
    ]
    return "\n".join(parts)


def sweep_section(report: dict) -> str:
    """The data-size sweep: LoRA's best score per training-set size against k-shot prompting, and full fine-tuning
    beside LoRA on the same 128 reviews (learning and forgetting)."""
    efficiency = report["data_efficiency"]["sentiment"]
    lora = efficiency["curves"]["lora"]
    icl = report["tasks"]["sentiment"]["icl"]["shots"]
    lines = ["| labelled examples | ICL k-shot acc (mean ± std over seeds) | LoRA fine-tuning, best 0-shot acc |",
             "|---|---|---|"]
    sizes = sorted({int(k) for k in icl if int(k) > 0} | {p["size"] for p in lora["points"]})
    for size in sizes:
        shot = icl.get(str(size))
        point = next((p for p in lora["points"] if p["size"] == size), None)
        icl_cell = f"{shot['mean']:.3f} ± {shot['std']:.3f}" if shot else "—"
        lora_cell = f"{point['mean']:.3f} ({point['runs'][0]})" if point else "—"
        lines.append(f"| {size} | {icl_cell} | {lora_cell} |")
    rows = ["| run | trainable params | best 0-shot acc | general-text loss change | training FLOPs | wall time |",
            "|---|---|---|---|---|---|"]
    for method in ("lora-n128", "full"):
        entry, best = run_of(report, method), report["tasks"]["sentiment"]["methods"][method]["best"]
        rows.append(f"| {method} | {entry['params_trainable']:,.0f} | {best['score']:.3f} (step {best['step']}) | "
                    f"{entry['general_loss'][-1]['change']:+.3f} | {entry['training_flops']:.2e} | {entry['wall_s']:.0f} s |")
    parts = [
        SWEEP_START,
        f"Measured on this project's 2-core CPU by `python scripts/readme_results.py --only sweep` "
        f"(configs/compare/sweep.yaml, **{minutes(SWEEP)}**): LoRA on nested subsets of the training reviews, every "
        f"size for the same 40 optimizer steps, scored 0-shot on the {queries(report)} test reviews; ICL's k "
        "demonstrations count as k labelled examples.",
        "",
        "![data efficiency](docs/sweep/data.png)",
        "",
        *lines,
        "",
        f"Labelled examples LoRA needs to match the best k-shot score ({efficiency['target']:.3f}, "
        f"k={efficiency['target_k']}): {match_text(lora)}.",
        "",
        "Full fine-tuning beside LoRA on the same 128 reviews and budget (does LoRA learn less and forget less? "
        "Biderman et al. 2024):",
        "",
        *rows,
        "",
        "Recommendation printed at the end of the run:",
        "",
        *(f"- {line}" for line in recommendation_lines(report)),
        "",
        "Each run's estimate, made just before it trained (`lightning-adapt estimate`'s probe of 2 + 3 steps), against "
        "what it then measured:",
        "",
        *estimate_table(report),
        SWEEP_END,
    ]
    return "\n".join(parts)


def load_report(out_dir: Path, reuse: bool) -> dict:
    """The comparison's report.json; with `reuse`, the report is first rebuilt from its runs by this version."""
    path = out_dir / "report/report.json"
    if reuse:
        old = json.loads(path.read_text())
        settings = old["settings"]
        build_report([run["path"] for run in old["runs"]], out_dir / "report", settings["metric"],
                     settings["answer_tokens"], settings["margin"], extra={"compare": old["compare"]}, overwrite=True)
    return json.loads(path.read_text())


def replace_between(readme: str, start: str, end: str, text: str) -> str:
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    head, rest = readme.split(start, 1)
    return head + text + rest.split(end, 1)[1]


def copy_pictures(report_dir: Path, pictures: Path, names: tuple[str, ...]) -> None:
    pictures.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(report_dir / name, pictures / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="rebuild the reports from the runs already under out/compare/")
    parser.add_argument("--only", choices=["demo", "sweep"], help="run and rewrite one section")
    args = parser.parse_args()
    sections = []
    if args.only != "sweep":
        if not args.reuse:
            run([], DEMO)
            run(NO_REPLAY_ARGS, NO_REPLAY)
        report, no_replay = load_report(DEMO, args.reuse), load_report(NO_REPLAY, args.reuse)
        copy_pictures(DEMO / "report", ROOT / "docs/demo", ("timeline.png", "forgetting.png"))
        sections.append((START, END, section(report, no_replay)))
    if args.only != "demo":
        if not args.reuse:
            run(SWEEP_ARGS, SWEEP)
        report = load_report(SWEEP, args.reuse)
        copy_pictures(SWEEP / "report", ROOT / "docs/sweep", ("data.png", "timeline.png"))
        sections.append((SWEEP_START, SWEEP_END, sweep_section(report)))
    readme = (ROOT / "README.md").read_text()  # read after the runs: the README may have changed meanwhile
    for start, end, text in sections:
        readme = replace_between(readme, start, end, text)
    atomic_write_text(ROOT / "README.md", readme)
    print("README.md results rewritten from out/compare/")


if __name__ == "__main__":
    main()
