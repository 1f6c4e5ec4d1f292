"""Run the built-in demo (plus its CPT run without replay) and the data-size sweep, and write the README's results
sections and pictures.

    python scripts/readme_results.py               # about 40 minutes on a 2-core CPU
    python scripts/readme_results.py --only sweep  # the sweep alone (configs/compare/sweep.yaml, about 20 minutes)
    python scripts/readme_results.py --reuse       # rebuild the reports and the README from the runs already there

Writes docs/demo/{timeline,cost,forgetting}.png and docs/sweep/{data,timeline}.png and replaces the README text between
the `demo-results`, `sweep-results` and `directions` markers (the last once all three reports exist: which directions
of the literature our numbers reproduce). Never edit those parts of the README by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from lightning_adapt.core.atomic import atomic_write_text
from lightning_adapt.cli import main as cli
from lightning_adapt.record.predictions import read_predictions
from lightning_adapt.verdict.report import build_report
from lightning_adapt.verdict.markdown import table_text
from lightning_adapt.verdict.sections.runs import estimate_table
from lightning_adapt.verdict.text import difference_text, interval_text, match_text, recommendation_lines

ROOT = Path(__file__).resolve().parents[1]
DEMO, NO_REPLAY, SWEEP = Path("out/compare/demo"), Path("out/compare/demo-no-replay"), Path("out/compare/sweep")
START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
SWEEP_START, SWEEP_END = "<!-- sweep-results:start -->", "<!-- sweep-results:end -->"
DIRECTIONS_START, DIRECTIONS_END = "<!-- directions:start -->", "<!-- directions:end -->"
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


def run_of(report: dict, method: str) -> dict:
    return next(r for r in report["runs"] if r["method"] == method)


def queries(report: dict, task: str) -> str:
    """How the task's queries were split, as the report says it."""
    return report["tasks"][task]["selection"]["how"]


def score_text(chosen: dict) -> str:
    """An arm's chosen test score with its 95% interval."""
    return f"{chosen['score']:.3f} {interval_text(chosen['interval'])}"


def counted(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def seconds_text(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.0f} s"


def optional(value: float | None, form: str) -> str:
    return "—" if value is None else format(value, form)


def icl_table(report: dict, task: str) -> list[str]:
    """Every prompt of the base model on `task`: test score (mean ± std over seeds, 95% interval), the selection score
    it was chosen by, calibrated accuracy where measured, the retrieval hit rate where documents are in it, its
    prompt tokens and FLOPs per query."""
    entry = report["tasks"][task]
    seeds = len(next(t for t in report["compare"]["tasks"] if t["name"] == task)["seeds"])
    lines = [f"| prompt | acc on the test queries (mean ± std over {counted(seeds, 'seed')}) [95% interval] | selection acc | "
             "acc_calibrated | retrieval hit rate | prompt tokens | FLOPs per query |", "|---|---|---|---|---|---|---|"]
    for label, point in entry["icl"]["points"].items():
        role = " (chosen)" if label == entry["icl_chosen"] else ""
        lines.append(
            f"| {label}{role} | {point['mean']:.3f} ± {point['std']:.3f} {interval_text(point['interval'])} | "
            f"{optional(point['selection_mean'], '.3f')} | {optional(point['all_metrics'].get('acc_calibrated'), '.3f')} | "
            f"{optional(point['hit_rate'], '.3f')} | {point['prompt_tokens']:.0f} | {point['query_flops']:.2e} |")
    return lines


def chosen_runs(arm: dict) -> list[tuple[str, int]]:
    """(run, its chosen step) for each run behind an arm's chosen point (a search: its chosen learning rate's seeds)."""
    search = arm["search"]
    runs = arm["runs"] if search is None else next(
        c["runs"] for c in search["configurations"] if c["learning_rate"] == search["chosen_learning_rate"])
    return list(zip(runs, arm["chosen"]["steps"]))


def general_change(report: dict, arm: dict, at_end: bool = False) -> float:
    """The change of the held-out general-text loss since the base model at an arm's chosen step, or with `at_end` at
    its runs' last validation (mean over seeds)."""
    changes = [next(p["change"] for p in reversed(run_of(report, run)["general_loss"]) if at_end or p["step"] == step)
               for run, step in chosen_runs(arm)]
    return sum(changes) / len(changes)


def arm_label(arm_name: str, arm: dict) -> str:
    search = arm["search"]
    if search is None:
        return arm_name
    return (f"{arm_name} (learning rate {search['chosen_learning_rate']:g} chosen of "
            f"{', '.join(f'{lr:g}' for lr in search['learning_rates'])}; {counted(len(search['seeds']), 'seed')})")


def trained_table(report: dict, no_replay: dict) -> list[str]:
    """What each trained arm reached at its chosen step, what it cost, and how much general text it forgot."""
    lines = ["| arm | sentiment acc (0-shot), chosen step | sentiment acc, last step | biography probe acc (0-shot), "
             "chosen step | biography probe acc, 1 retrieved biography, chosen step | biography held-out loss (first → "
             "last validation) | general-text loss change (last validation) | training FLOPs (whole search) | "
             "training time | evaluation time |", "|---|---|---|---|---|---|---|---|---|---|"]
    sources = [(name, name, report) for name in report["tasks"]["sentiment"]["arms"] if " + " not in name]
    sources.append(("cpt", "cpt, no replay", no_replay))
    for name, label, source in sources:
        tasks = source["tasks"]
        sentiment, bios = tasks["sentiment"]["arms"][name], tasks["biographies"]["arms"][name]
        documents = tasks["biographies"]["arms"].get(f"{name} + 1 doc")
        runs = [run_of(source, run) for run, _ in chosen_runs(sentiment)]
        domain = runs[0]["domain_loss"]
        search = sentiment["search"]
        spent = search if search else runs[0]
        cpt = runs[0]["tier"] == "continual pretraining"
        domain_cell = f"{domain[0]['loss']:.2f} → {domain[-1]['loss']:.2f}" if cpt else "—"
        lines.append(
            f"| {arm_label(label, sentiment)} | {score_text(sentiment['chosen'])} (step {sentiment['chosen']['step']}) | "
            f"{score_text(sentiment['last'])} (step {sentiment['last']['step']}) | "
            f"{score_text(bios['chosen'])} (step {bios['chosen']['step']}) | "
            f"{'—' if documents is None else score_text(documents['chosen'])} | {domain_cell} | "
            f"{general_change(source, sentiment, at_end=True):+.3f} | {spent['training_flops']:.2e} | "
            f"{seconds_text(spent['train_seconds'])} | {seconds_text(spent['eval_seconds'])} |")
    return lines


SUPPORT_METRICS = ("check_greeting", "check_ticket_id", "check_signs_off", "chrf", "rougeL", "response_logprob")
"""The house-style task's metrics the README shows beside the checks' mean pass rate (the recommendation's metric):
each check's pass rate, chrF and ROUGE-L against the reference reply and the reference's mean log-likelihood per
token."""


def metric_cells(point: dict) -> str:
    """A support point's other metrics and its mean reply length in tokens, as table cells."""
    metrics = point["all_metrics"]
    return " | ".join([*(optional(metrics.get(name), ".3f") for name in SUPPORT_METRICS),
                       optional(point["generated_tokens"], ".1f")])


def support_table(report: dict) -> list[str]:
    """The house-style replies: every base-model prompt and every trained arm's chosen point, each with the checks'
    pass rate (interval) and the other metrics, on the test queries."""
    entry = report["tasks"]["support"]
    lines = ["| prompt or arm | checks passed (mean over the 3 checks) [95% interval] | greeting | ticket_id | signs_off "
             "| chrF | ROUGE-L | reference log-likelihood per token | generated tokens | FLOPs per reply |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, point in entry["icl"]["points"].items():
        role = " (baseline)" if label == entry["baseline"] else ""
        lines.append(f"| ICL {label}{role} | {point['mean']:.3f} {interval_text(point['interval'])} | "
                     f"{metric_cells(point)} | {point['query_flops']:.2e} |")
    for name, arm in entry["arms"].items():
        chosen = arm["chosen"]
        lines.append(f"| {name}, step {chosen['step']} | {score_text(chosen)} | {metric_cells(chosen)} | "
                     f"{chosen['query_flops']:.2e} |")
    return lines


def prediction(run_path: str, step: int, k: int, query: int) -> dict:
    """A run's prediction record for support query `query` at `k` demonstrations in its evaluation at `step`."""
    records = read_predictions(run_path, step) or []
    return next(r for r in records if r["task"] == "support" and r["k"] == k and r.get("docs", 0) == 0
                and r["query"] == query and r["seed"] == 0)


def replies(report: dict) -> list[str]:
    """One test query's replies side by side: the base model at k=0 and at the best prompt with demonstrations, each
    trained arm at its chosen step, and the reference (the first test query in the file)."""
    entry = report["tasks"]["support"]
    icl_run = next(r["path"] for r in report["runs"] if r["method"] == "icl")
    baseline = prediction(icl_run, 0, 0, first_test_query(icl_run))
    query = baseline["query"]
    prompted = max((p for p in entry["icl"]["points"].values() if p["k"] > 0), key=lambda p: p["selection_mean"])
    shown = [("ICL k=0 (base model)", baseline), (f"ICL {prompted['label']} (base model)",
                                                 prediction(icl_run, 0, prompted["k"], query))]
    for name, arm in entry["arms"].items():
        if arm["docs"] == 0:
            run, step = chosen_runs(arm)[0]
            shown.append((f"{name}, step {step}", prediction(run_of(report, run)["path"], step, 0, query)))
    shown.append(("reference", {"prediction": baseline["target"]}))
    request = baseline["text"].removesuffix("\nReply:")
    lines = [f"One test request, `{request}`, and each method's reply (greedy, as scored):", "",
             "| method | reply |", "|---|---|"]
    lines += [f"| {label} | {cell(record['prediction'])} |" for label, record in shown]
    return lines


def first_test_query(run_path: str) -> int:
    """The first test query (by row) of the support task."""
    return min(r["query"] for r in read_predictions(run_path, 0) or []
               if r["task"] == "support" and r.get("part", "test") == "test")


def cell(text: str) -> str:
    """A reply as one Markdown table cell: line breaks shown as <br>, pipes escaped."""
    return text.strip().replace("|", "\\|").replace("\n", "<br>") or "(empty)"


def section(report: dict, no_replay: dict) -> str:
    parts = [
        START,
        f"Measured on this project's 2-core CPU by `python scripts/readme_results.py`: the demo took "
        f"**{minutes(DEMO)}**, its CPT run without replay {minutes(NO_REPLAY)}.",
        "",
        "![timeline](docs/demo/timeline.png)",
        "",
        "![accuracy against prompt tokens](docs/demo/cost.png)",
        "",
        f"Base model, k-shot review sentiment (chance 0.5). {queries(report, 'sentiment')}",
        "",
        *icl_table(report, "sentiment"),
        "",
        "Base model, the knowledge probe about fictional people (4 choices, chance 0.25), with k demonstrations and D "
        f"biographies retrieved by BM25 from the CPT corpus in the prompt. {queries(report, 'biographies')}",
        "",
        *icl_table(report, "biographies"),
        "",
        "Replies in a house style (the source material's fine-tuning example: a company's tone and format): support "
        "requests to a fictional company whose replies greet by first name, give a ticket number coded by the "
        "request's category and sign off in one fixed way, which no pretrained model can know; generated greedily "
        f"and checked by three regexes, the recommendation decided on the checks' pass rate. {queries(report, 'support')}",
        "",
        *support_table(report),
        "",
        *replies(report),
        "",
        "Trained arms at the evaluation step chosen on the selection queries (scores on the test queries, 95% "
        "interval) and what training cost:",
        "",
        *trained_table(report, no_replay),
        "",
        "Recommendations printed at the end of the run:",
        "",
        *(f"- {line}" for line in recommendation_lines(report)),
        "",
        "![forgetting](docs/demo/forgetting.png)",
        "",
        "Each run's estimate, made just before it trained (`lightning-adapt estimate`'s probe of 2 + 3 steps), against "
        "what it then measured:",
        "",
        table_text(estimate_table(report)),
        END,
    ]
    return "\n".join(parts)


def sweep_section(report: dict) -> str:
    """The data-size sweep: LoRA's chosen score per training-set size against k-shot prompting, and LoRA beside full
    fine-tuning on the same 128 reviews, each with its learning rate searched and two seeds (learning and
    forgetting)."""
    task = report["tasks"]["sentiment"]
    efficiency = report["data_efficiency"]["sentiment"]
    lora = efficiency["curves"]["lora"]
    icl = {p["k"]: p for p in task["icl"]["points"].values() if p["docs"] == 0}
    lines = ["| labelled examples (demonstrations; reviews in the training file) | ICL k-shot acc (mean ± std over "
             "seeds) | LoRA fine-tuning, 0-shot acc at its chosen step |", "|---|---|---|"]
    for size in sorted({k for k in icl if k > 0} | {p["file_size"] for p in lora["points"]}):
        shot = icl.get(size)
        point = next((p for p in lora["points"] if p["file_size"] == size), None)
        icl_cell = f"{shot['mean']:.3f} ± {shot['std']:.3f}" if shot else "—"
        lora_cell = f"{point['mean']:.3f} ({point['runs'][0]})" if point else "—"
        lines.append(f"| {size} | {icl_cell} | {lora_cell} |")
    rows = ["| arm | trainable params | 0-shot acc [95% interval], chosen step | general-text loss change, chosen step "
            "| training FLOPs of the chosen run | of the whole search | training time of the whole search | its "
            "evaluation time |", "|---|---|---|---|---|---|---|---|"]
    for name in ("lora-128", "full"):
        arm = task["arms"][name]
        run = run_of(report, chosen_runs(arm)[0][0])
        rows.append(f"| {arm_label(name, arm)} | {run['params_trainable']:,.0f} | {score_text(arm['chosen'])} | "
                    f"{general_change(report, arm):+.3f} | {run['training_flops']:.2e} | "
                    f"{arm['search']['training_flops']:.2e} | {seconds_text(arm['search']['train_seconds'])} | "
                    f"{seconds_text(arm['search']['eval_seconds'])} |")
    parts = [
        SWEEP_START,
        f"Measured on this project's 2-core CPU by `python scripts/readme_results.py --only sweep` "
        f"(configs/compare/sweep.yaml, **{minutes(SWEEP)}**): LoRA on nested subsets of the training reviews, every "
        "size for the same 30 optimizer steps, scored 0-shot; ICL's k demonstrations count as k labelled examples. "
        f"{queries(report, 'sentiment')}",
        "",
        "![data efficiency](docs/sweep/data.png)",
        "",
        *lines,
        "",
        f"Labelled examples LoRA needs to match the chosen k-shot prompt's score ({efficiency['target']:.3f}, "
        f"{efficiency['target_point']}): {match_text(lora)}.",
        "",
        "LoRA and full fine-tuning on the same 128 reviews and budget, each with its learning rate chosen on the "
        "selection queries (half or twice its usual rate) and two seeds at the chosen rate:",
        "",
        *rows,
        "",
        "Recommendation printed at the end of the run:",
        "",
        *(f"- {line}" for line in recommendation_lines(report)),
        SWEEP_END,
    ]
    return "\n".join(parts)


def verdict_word(holds: bool) -> str:
    return "**reproduced**" if holds else "**not reproduced**"


def directions_section(demo: dict, no_replay: dict, sweep: dict) -> str:
    """Which directions of the literature the numbers above reproduce, each decided from the reports by a stated
    comparison of test scores (or general-text loss changes) at the chosen points."""
    sentiment, bios = demo["tasks"]["sentiment"], demo["tasks"]["biographies"]
    lora = sentiment["arms"]["lora"]["chosen"]
    prompted = [p for p in sentiment["icl"]["points"].values() if p["k"] > 0]
    best_prompt = max(prompted, key=lambda p: p["selection_mean"])
    cpt = bios["arms"]["cpt"]["chosen"]
    documents = max((p for p in bios["icl"]["points"].values() if p["docs"] > 0), key=lambda p: p["selection_mean"])
    support = demo["tasks"]["support"]
    lora_style = support["arms"]["lora-support"]
    style = lora_style["chosen"]
    styled = max((p for p in support["icl"]["points"].values() if p["k"] > 0), key=lambda p: p["selection_mean"])
    plain_style = support["icl"]["points"]["k=0"]
    versus_plain, versus_styled = lora_style["versus"]["k=0"], lora_style["versus"][styled["label"]]
    task = sweep["tasks"]["sentiment"]
    small, full = task["arms"]["lora-128"], task["arms"]["full"]
    replay, plain = (general_change(source, source["tasks"]["sentiment"]["arms"]["cpt"], at_end=True)
                     for source in (demo, no_replay))
    fine_tuning = lora["score"] > best_prompt["mean"] and lora["query_flops"] < best_prompt["query_flops"]
    lines = [
        DIRECTIONS_START,
        "| direction (source) | our numbers (test queries, chosen points) | |",
        "|---|---|---|",
        f"| fine-tuning beats k-shot prompting at a lower cost per query (T-Few, Liu et al. 2022) | demo sentiment: "
        f"LoRA {lora['score']:.3f} at {lora['query_flops']:.2e} FLOPs per query vs the best prompt with "
        f"demonstrations by selection, {best_prompt['label']}, {best_prompt['mean']:.3f} at "
        f"{best_prompt['query_flops']:.2e} | {verdict_word(fine_tuning)} |",
        f"| LoRA learns less than full fine-tuning (Biderman et al. 2024) | sweep, 128 reviews, learning rates "
        f"searched: LoRA {small['chosen']['score']:.3f} vs full {full['chosen']['score']:.3f} | "
        f"{verdict_word(small['chosen']['score'] < full['chosen']['score'])} |",
        f"| LoRA forgets less than full fine-tuning (Biderman et al. 2024) | the same runs' general-text loss change at "
        f"their chosen step: "
        f"LoRA {general_change(sweep, small):+.3f} vs full {general_change(sweep, full):+.3f} | "
        f"{verdict_word(general_change(sweep, small) < general_change(sweep, full))} |",
        f"| fine-tuning on a company's support replies makes a model answer in its tone and style (the source "
        f"material's example) | demo support replies, checks passed: LoRA on the replies {style['score']:.3f} vs the "
        f"base model without demonstrations {plain_style['mean']:.3f}: {difference_text(versus_plain)}; against the "
        f"best prompt with demonstrations by selection, {styled['label']} ({styled['mean']:.3f}): "
        f"{difference_text(versus_styled)}, at {style['query_flops']:.2e} FLOPs per reply vs "
        f"{styled['query_flops']:.2e} (cheaper after {lora_style['break_even'][styled['label']]} replies) | "
        f"{verdict_word(versus_plain['interval'][0] > 0)} against the base model; "
        f"{'beats' if versus_styled['interval'][0] > 0 else 'ties' if versus_styled['interval'][1] >= 0 else 'below'} "
        f"{styled['label']} prompting |",
        f"| documents in the prompt beat continual pretraining for new facts (Ovadia et al. 2023) | demo biographies: "
        f"{documents['label']} on the base model {documents['mean']:.3f} (retrieval hit rate "
        f"{documents['hit_rate']:.3f}, {documents['prompt_tokens']:.0f} prompt tokens) vs CPT 0-shot "
        f"{cpt['score']:.3f} ({cpt['prompt_tokens']:.0f} prompt tokens) | "
        f"{verdict_word(documents['mean'] > cpt['score'])} |",
        f"| replay reduces forgetting in continual pretraining (Ibrahim et al. 2024) | demo CPT general-text loss "
        f"change at the end of training: 10% replay {replay:+.3f} vs no replay {plain:+.3f} | {verdict_word(replay < plain)} |",
        DIRECTIONS_END,
    ]
    return "\n".join(lines)


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
        copy_pictures(DEMO / "report", ROOT / "docs/demo", ("timeline.png", "cost.png", "forgetting.png"))
        sections.append((START, END, section(report, no_replay)))
    if args.only != "demo":
        if not args.reuse:
            run(SWEEP_ARGS, SWEEP)
        report = load_report(SWEEP, args.reuse)
        copy_pictures(SWEEP / "report", ROOT / "docs/sweep", ("data.png", "timeline.png"))
        sections.append((SWEEP_START, SWEEP_END, sweep_section(report)))
    reports = [DEMO, NO_REPLAY, SWEEP]
    if all((out_dir / "report/report.json").is_file() for out_dir in reports):
        demo, no_replay, sweep = (json.loads((out_dir / "report/report.json").read_text()) for out_dir in reports)
        sections.append((DIRECTIONS_START, DIRECTIONS_END, directions_section(demo, no_replay, sweep)))
    readme = (ROOT / "README.md").read_text()  # read after the runs: the README may have changed meanwhile
    for start, end, text in sections:
        readme = replace_between(readme, start, end, text)
    atomic_write_text(ROOT / "README.md", readme)
    print("README.md results rewritten from out/compare/")


if __name__ == "__main__":
    main()
