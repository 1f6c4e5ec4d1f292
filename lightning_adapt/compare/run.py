"""`run_compare`: the checks that need files (lm-eval tasks, sweep sizes against the data) before any run, the runs in
order, and the report built from what they measured; and `dry_run`, the planned runs' estimates instead."""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from lightning_adapt.compare.config import Compare
from lightning_adapt.compare.console import outputs_lines, phase_line, say, search_words
from lightning_adapt.compare.launch import estimate_planned, one_process, run_icl, run_training
from lightning_adapt.compare.settings import run_technique
from lightning_adapt.core.atomic import check_output_dir
from lightning_adapt.data.biographies import write_biography_corpus
from lightning_adapt.data.records import DataError
from lightning_adapt.distributed.sharding import is_launch_rank_zero
from lightning_adapt.estimate import estimate_icl, format_estimate
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.icl.runner import ICLRunner, with_overrides
from lightning_adapt.icl.task import ICLTask
from lightning_adapt.model.loading import load_config, load_tokenizer, resolve_checkpoint_dir
from lightning_adapt.verdict.report import REPORT_KIND, write_report
from lightning_adapt.verdict.run import Run, json_data
from lightning_adapt.verdict.summary import report_data
from lightning_adapt.verdict.text import recommendation_lines


def check_sweep_data(compare: Compare) -> None:
    """Refuse, before any run, a sweep size larger than the data: the largest size of each swept run is drawn once."""
    largest = {run.sweep["of"]: run for run in compare.planned_runs() if run.sweep is not None}  # sizes increase
    for run in largest.values():
        data = replace(run.settings.data)
        try:
            if run.cpt:
                length = run.settings.max_seq_length or load_config(compare.checkpoint_dir).block_size
                data.connect(load_tokenizer(compare.checkpoint_dir), max_seq_length=length)
                data.setup()
            else:
                data.read_splits()
        except (DataError, ValueError) as error:
            raise ValueError(f"Compare.sweep.{run.sweep['of']}: {error}") from None


def check_lm_eval_tasks(compare: Compare) -> None:
    """Load every lm-eval task of `tasks` and `general_tasks` once before any run, so that one lm-eval cannot give (an
    unknown name, a dataset not available offline, an output type we cannot score) is refused before the ICL-only
    run and the training runs, not when a run first evaluates it."""
    for task in [*compare.tasks, *compare.general_tasks]:
        if isinstance(task, LMEvalTask):
            task.load()


def check_icl_tasks(compare: Compare) -> None:
    """Load, split, retrieve and tokenize our ICL tasks once before any run, as the ICL-only run and the trained runs'
    evaluations will (each with its shots, seeds and numbers of documents), so that bad data, a document collection
    too small for `top_k` or a prompt longer than the model's context is refused before the first run starts, not
    when a run first evaluates it (after an estimate, or after the ICL-only run)."""
    ours = [task for task in compare.tasks if isinstance(task, ICLTask)]
    if not ours:
        return
    tokenizer, block_size = load_tokenizer(compare.checkpoint_dir), load_config(compare.checkpoint_dir).block_size
    trained = with_overrides(ours, compare.train_shots, compare.train_seeds, top_k=compare.train_top_k)
    for tasks in (ours, trained):
        ICLRunner(tasks).prepare(tokenizer, block_size)


def write_biographies(compare: Compare) -> None:
    """Write the synthetic biography corpus the runs read, when the comparison has one."""
    if compare.biographies is not None:
        b = compare.biographies
        write_biography_corpus(b.out_dir, b.n_people, b.paraphrases, b.seed, b.heldout_paraphrases)


def dry_run(compare: Compare) -> str:
    """`compare --dry_run`: the planned runs and, for each, its estimate (a probe of a few real steps, nothing
    written but the biography corpus the runs read), and the ICL tasks' prompt tokens and FLOPs per query. CPT→FT is
    estimated on the base model (the CPT result it starts from has the same shapes and does not exist yet); the runs of
    a search by its first run's estimate (learning rates and seeds change no cost)."""
    checkpoint_dir = resolve_checkpoint_dir(compare.checkpoint_dir)
    if not one_process(compare):
        raise ValueError("compare --dry_run estimates one process: run it with --trainer.devices 1 (each DDP or FSDP2 "
                         "process trains its share; FLOPs and tokens add up over processes).")
    check_lm_eval_tasks(compare)
    write_biographies(compare)
    check_icl_tasks(compare)
    check_sweep_data(compare)
    blocks, estimated = [], {}  # a search's first run, estimated for all of its runs
    for run in compare.planned_runs():
        size = "" if run.sweep is None else f", {', '.join(f'{k} {v}' for k, v in run.sweep.items() if k != 'of')}"
        size += "" if run.search is None else f", {search_words(run.search)}"
        start = "" if run.base is None else f", starts from {run.base}'s result (estimated on the base model)"
        search = None if run.search is None else run.search["of"]
        if search in estimated:
            text = f"As {estimated[search]} (the same model, data and budget)."
        else:
            text = format_estimate(estimate_planned(compare, run, checkpoint_dir, compare.out_dir / "runs" / run.name))
            if search is not None:
                estimated[search] = run.name
        blocks.append(f"== {run.name} ({run.method}{size}{start})\n{text}")
    if "icl" in compare.methods:
        icl = estimate_icl(compare.tasks, checkpoint_dir, compare.answer_tokens)
        blocks.append("== icl\n" + format_estimate(None, icl))
    return "\n\n".join(blocks)


def run_all(compare: Compare, writer: bool) -> list[Run]:
    """Every run of the comparison, in the order of `methods`, each as it measured itself (the ICL-only run on the
    `writer` process only); one line each printed by the writer. The runs of a search share the estimate made before
    its first run (learning rates and seeds change no cost)."""
    runs_dir, runs = compare.out_dir / "runs", []
    estimates: dict[str, Any] = {}  # a search's estimate, made before its first run, kept for the others
    for method in compare.methods:
        if method == "icl" and not writer:
            continue
        for run in [None] if method == "icl" else [run for run in compare.planned_runs() if run.method == method]:
            start = time.perf_counter()
            if run is None:
                runs.append(run_icl(compare, runs_dir / "icl"))
            else:
                base = compare.checkpoint_dir if run.base is None else runs_dir / run.base / "final"
                search = None if run.search is None else run.search["of"]
                runs.append(run_training(compare, run, runs_dir / run.name, base, estimates.get(search)))
                if search is not None and "estimate" in runs[-1].info:
                    estimates.setdefault(search, runs[-1].info["estimate"])
            if writer:
                say(phase_line(runs[-1], time.perf_counter() - start))
    return runs


def run_compare(compare: Compare) -> Path:
    """Run the ICL-only evaluation and every planned training run (`Compare.planned_runs`), each in its own run
    directory under `out_dir/runs/`, then write `out_dir/report/` from what the runs measured.

    With several processes (`trainer: {devices: 2, strategy: fsdp2}`, or a launcher such as torchrun) every process
    takes part in every training run; only global rank 0 writes the biographies, runs the ICL-only evaluation,
    prints and writes the report (the others return `out_dir/report` without writing it)."""
    settings = json_data(asdict(compare))
    resolve_checkpoint_dir(compare.checkpoint_dir)
    check_lm_eval_tasks(compare)
    writer = is_launch_rank_zero()
    if writer:
        check_output_dir(compare.out_dir / "report", REPORT_KIND, overwrite=True)
        write_biographies(compare)
        check_icl_tasks(compare)
    check_sweep_data(compare)
    runs = run_all(compare, writer)
    if not writer:
        return compare.out_dir / "report"
    report = report_data(runs, compare.metric, compare.answer_tokens, compare.margin, extra={"compare": settings})
    out = write_report(report, compare.out_dir / "report", [run.log_dir for run in runs], overwrite=True,
                       overwrite_hint="overwrite=True")
    recommended = [task["recommendation"]["method"] for task in report["tasks"].values()]
    techniques = {run.name: run_technique(run.settings) for run in compare.planned_runs()}
    for line in [*recommendation_lines(report), *outputs_lines(compare.out_dir / "runs", out, runs, techniques,
                                                                recommended, example_prompt(compare))]:
        say(line)
    return out


def example_prompt(compare: Compare) -> str | None:
    """A prompt to try a trained model with: the first query of the first ICL task, as the task prompts it (None
    without an ICL task of ours)."""
    task = next((task for task in compare.tasks if isinstance(task, ICLTask)), None)
    if task is None:
        return None
    records = task.queries.load()
    return task.text(records[0].data) if records else None
