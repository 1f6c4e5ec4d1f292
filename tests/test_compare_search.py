"""Searches of learning rates and seeds in `compare`, documents from the CPT corpus and `train_top_k`: planned, checked
and parsed; nothing trains."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lightning_adapt import Instructions, LoRA, Optimization, Rewarming, TextCorpus
from lightning_adapt.cli import main
from lightning_adapt.compare import Compare
from lightning_adapt.compare import run as compare_run
from lightning_adapt.compare.command import parse_compare
from lightning_adapt.compare.console import phase_line
from lightning_adapt.compare.launch import evaluations, run_details
from lightning_adapt.compare.settings import CPTSettings, FineTuneSettings, Search, SweepSizes
from lightning_adapt.icl import ICLTask
from lightning_adapt.icl.context import Context
from lightning_adapt.icl.lm_eval_task import LMEvalTask
from lightning_adapt.verdict.run import Run

TASK = ICLTask(name="sent", queries="queries.jsonl", template="Review: {text}\nSentiment:", target="label",
               choices=["Positive", "Negative"])


def finetune(**changes) -> FineTuneSettings:
    """LoRA settings (learning rate 1e-3, data seed 7); their files are never read."""
    return FineTuneSettings(**{"data": Instructions("train.jsonl", val_path="val.jsonl", seed=7), "lora": LoRA(r=4),
                               "max_steps": 4, "val_check_interval": 2,
                               "optimization": Optimization(learning_rate=1e-3, warmup_steps=1), **changes})


def cpt(**changes) -> CPTSettings:
    """Full CPT settings (learning rate 1e-3, data seed 5) on the folder `corpus`."""
    return CPTSettings(**{"data": TextCorpus("corpus", val_path="heldout", seed=5), "max_steps": 4,
                          "val_check_interval": 2, "optimization": Rewarming(learning_rate=1e-3, warmup_steps=1),
                          **changes})


def comparison(**changes) -> Compare:
    return Compare(**{"checkpoint_dir": Path("checkpoint"), "tasks": [TASK], "methods": ["icl", "finetune", "cpt"],
                      "finetune": finetune(), "cpt": cpt(), **changes})


def test_a_search_of_two_learning_rates_and_two_seeds_plans_four_runs():
    compare = comparison(finetune=finetune(search=Search(learning_rate=[3e-4, 1e-3], seeds=[0, 1])))
    runs = compare.planned_runs()
    assert [run.name for run in runs] == ["lora-lr0.0003-s0", "lora-lr0.0003-s1", "lora-lr0.001-s0", "lora-lr0.001-s1",
                                          "cpt"]
    searched = runs[:4]
    assert [(r.settings.optimization.learning_rate, r.seed, r.settings.data.seed) for r in searched] == [
        (3e-4, 42, 7), (3e-4, 43, 8), (1e-3, 42, 7), (1e-3, 43, 8)]  # Trainer seed and data seed offset by the seed
    assert searched[1].search == {"of": "lora", "learning_rate": 3e-4, "seed": 1, "learning_rates": [3e-4, 1e-3],
                                  "seeds": [0, 1]}
    for run in searched:  # everything else is the run's own
        assert run.method == "finetune" and run.sweep is None and run.base is None
        assert replace(run.settings, optimization=compare.finetune.optimization, data=compare.finetune.data) \
            == compare.finetune
        assert run.settings.optimization == replace(compare.finetune.optimization,
                                                    learning_rate=run.search["learning_rate"])
        assert replace(run.settings.data, seed=7) == compare.finetune.data
        assert run_details(run) == {"search": run.search}  # what its accounting.json gets
    assert compare.finetune.optimization.learning_rate == 1e-3 and compare.finetune.data.seed == 7
    assert runs[-1].search is None and run_details(runs[-1]) == {}


def test_a_seeds_only_search_trains_the_runs_own_learning_rate():
    compare = comparison(cpt=cpt(search=Search(seeds=[0, 2, 5])))
    runs = [run for run in compare.planned_runs() if run.method == "cpt"]
    assert [run.name for run in runs] == ["cpt-lr0.001-s0", "cpt-lr0.001-s2", "cpt-lr0.001-s5"]
    assert [(r.seed, r.settings.data.seed) for r in runs] == [(42, 5), (44, 7), (47, 10)]
    assert all(isinstance(r.settings.optimization, Rewarming) and r.settings.optimization.learning_rate == 1e-3
               for r in runs)
    assert runs[0].search == {"of": "cpt", "learning_rate": 1e-3, "seed": 0, "learning_rates": [1e-3],
                              "seeds": [0, 2, 5]}


def test_a_searched_cpt_variant_other_than_the_first_runs_beside_cpt_then_finetune():
    compare = comparison(methods=["icl", "finetune", "cpt", "cpt+finetune"],
                         cpt=[cpt(), cpt(name="cpt-b", search=Search(seeds=[0, 1]))])
    assert [(run.name, run.base) for run in compare.planned_runs()] == [
        ("lora", None), ("cpt", None), ("cpt-b-lr0.001-s0", None), ("cpt-b-lr0.001-s1", None), ("cpt+lora", "cpt")]


def test_cpt_then_finetune_trains_once_at_the_searched_settings_own_learning_rate():
    compare = comparison(methods=["icl", "finetune", "cpt", "cpt+finetune"],
                         finetune=finetune(search=Search(learning_rate=[3e-4, 1e-3])))
    chained = compare.planned_runs()[-1]
    assert (chained.name, chained.search, chained.settings.optimization.learning_rate) == ("cpt+lora", None, 1e-3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"finetune": finetune(search=Search())},
         r"^Compare.finetune.search: one learning rate \(0.001\) and one seed \(0\) is a single run, nothing to "
         r"search; remove `search`, or list more learning rates or seeds \(e.g. search: \{learning_rate: "
         r"\[1e-4, 3e-4, 1e-3\], seeds: \[0, 1, 2\]\}\).$"),
        ({"cpt": cpt(search=Search(learning_rate=[3e-4], seeds=[2]))},
         r"^Compare.cpt.search: one learning rate \(0.0003\) and one seed \(2\) is a single run, nothing to search"),
        ({"finetune": [finetune(), finetune(name="b", search=Search(seeds=[1]))]},
         r"^Compare.finetune\[1\].search: one learning rate \(0.001\) and one seed \(1\) is a single run"),
        ({"finetune": finetune(search=Search(seeds=[]))},
         r"^Compare.finetune.search.seeds is empty: list the values to try \(e.g. seeds: \[0, 1, 2\]\).$"),
        ({"finetune": finetune(search=Search(learning_rate=[]))},
         r"^Compare.finetune.search.learning_rate is empty: list the values to try \(e.g. learning_rate: \[1e-4, "
         r"3e-4, 1e-3\]\), or leave it out to search seeds at the run's own learning rate.$"),
        ({"finetune": finetune(search=Search(seeds=[0, 1, 0]))},
         r"^Compare.finetune.search.seeds=\[0, 1, 0\]: \[0\] listed more than once; give each value once.$"),
        ({"finetune": finetune(search=Search(learning_rate=[1e-3, 3e-4, 1e-3]))},
         r"^Compare.finetune.search.learning_rate=\[0.001, 0.0003, 0.001\]: \[0.001\] listed more than once"),
        ({"finetune": finetune(search=Search(learning_rate=[0.0, 1e-3]))},
         r"^Compare.finetune.search.learning_rate=\[0.0, 0.001\]: learning rates must be positive.$"),
        ({"cpt": cpt(search=Search(learning_rate=[-1e-3, 1e-3]))},
         r"^Compare.cpt.search.learning_rate=.*must be positive"),
        ({"finetune": finetune(search=Search(seeds=[-1, 0]))},
         r"^Compare.finetune.search.seeds=\[-1, 0\]: seeds must be 0 or more \(each is added to Compare.seed\).$"),
        ({"finetune": finetune(optimization=Optimization(learning_rate=1e-3, min_lr=1e-4),
                               search=Search(learning_rate=[1e-5, 1e-3]))},
         r"^Compare.finetune.search.learning_rate 1e-05: min_lr=0.0001 must lie between 0 and learning_rate=1e-05.$"),
        ({"finetune": finetune(search=Search(seeds=[0, 1])), "sweep": {"lora": SweepSizes(examples=[4, 8])}},
         r"^Compare.finetune.search: run 'lora' is also swept \(Compare.sweep.lora\); a run is searched or swept, not "
         r"both: remove its `search`, or take it out of `sweep`"),
        ({"finetune": [finetune(), finetune(name="b", search=Search(seeds=[0, 1]))],
          "sweep": {"finetune": SweepSizes(examples=[4, 8])}},
         r"^Compare.finetune\[1\].search: run 'b' is also swept \(Compare.sweep.finetune\)"),
        ({"methods": ["icl", "finetune", "cpt", "cpt+finetune"], "cpt": cpt(search=Search(seeds=[0, 1]))},
         r"^Compare.cpt.search: cpt\+finetune fine-tunes the first CPT run's result, and a search has one result per "
         r"learning rate and seed; search another CPT variant \(list it second\), or drop cpt\+finetune.$"),
        ({"finetune": [finetune(search=Search(seeds=[0, 1])), finetune(name="lora-lr0.001-s1")]},
         r"^Compare: run name\(s\) \['lora-lr0.001-s1'\] given to more than one run"),
        ({"finetune": [finetune(name="a"), finetune(name="a-n4", search=Search(seeds=[0, 1]))],
          "sweep": {"a": SweepSizes(examples=[4])}},
         r"^Compare: run name\(s\) \['a-n4'\] given to more than one run"),  # the search's name is a sweep run's
        ({"finetune": finetune(name="lo ra", search=Search(seeds=[0, 1]))},
         r"^Compare: run name\(s\) \['lo ra', 'lo ra-lr0.001-s0', 'lo ra-lr0.001-s1'\] must be folder names"),
        ({"train_top_k": []}, r"^Compare.train_top_k=\[\]: list numbers of documents, 0 or more \(0: none\), or leave "
                              r"it out to score each task's own top_k.$"),
        ({"train_top_k": [1, -1]}, r"^Compare.train_top_k=\[1, -1\]: list numbers of documents"),
    ],
    ids=["one-configuration", "one-configuration-cpt", "one-configuration-listed", "no-seeds", "no-learning-rates",
         "repeated-seed", "repeated-learning-rate", "zero-learning-rate", "negative-learning-rate", "negative-seed",
         "below-min-lr", "swept-run", "swept-method", "continued-by-cpt+finetune", "name-clash", "search-name-clash",
         "not-a-folder-name", "no-top-k", "negative-top-k"],
)
def test_bad_searches_are_refused_when_the_comparison_is_made(changes, message):
    with pytest.raises(ValueError, match=message):
        comparison(**changes)


def test_a_run_of_a_search_says_so_in_the_console_and_the_dry_run(tmp_path, tiny_checkpoint, monkeypatch):
    search = {"of": "lora", "learning_rate": 3e-4, "seed": 1, "learning_rates": [3e-4, 1e-3], "seeds": [0, 1]}
    info = {"method": "lora-lr0.0003-s1", "module": "FineTuning", "search": search}
    run = Run(tmp_path, tmp_path, info, {"train/tokens": {4: 96.0}, "icl/sent/acc@k0d2": {0: 0.25, 4: 0.5}})
    assert phase_line(run, 1.0).startswith(
        "lora-lr0.0003-s1 (learning rate 0.0003, seed 1; one of 4 runs of the search of lora): 96 tokens, ")
    assert phase_line(run, 1.0).endswith("last evaluation: sent/acc@k0d2 0.500")
    assert phase_line(replace(run, info={"method": "lora", "module": "FineTuning"}), 1.0).startswith("lora: 96 tokens")

    estimated = []
    monkeypatch.setattr(compare_run, "estimate_planned", lambda compare, run, *args: estimated.append(run.name))
    monkeypatch.setattr(compare_run, "format_estimate", lambda estimate: "the estimate")  # no probe steps
    monkeypatch.setattr(compare_run, "check_icl_tasks", lambda compare: None)  # TASK's files do not exist
    compare = comparison(checkpoint_dir=tiny_checkpoint, out_dir=tmp_path / "out",
                         finetune=finetune(search=Search(learning_rate=[3e-4, 1e-3], seeds=[0, 1])),
                         cpt=cpt(search=Search(seeds=[0, 1])), trainer={"accelerator": "cpu", "devices": 1})
    text = compare_run.dry_run(replace(compare, methods=["finetune", "cpt"], finetune=[finetune(name="plain"),
                                                                               compare.finetune, finetune(name="own")]))
    assert "== lora-lr0.0003-s0 (finetune, learning rate 0.0003, seed 0; one of 4 runs of the search of lora)\n" \
           "the estimate\n" in text
    assert "== lora-lr0.001-s1 (finetune, learning rate 0.001, seed 1; one of 4 runs of the search of lora)\n" \
           "As lora-lr0.0003-s0 (the same model, data and budget)." in text
    assert "== cpt-lr0.001-s1 (cpt, learning rate 0.001, seed 1; one of 2 runs of the search of cpt)\n" in text
    assert text.count("== ") == 8 and text.count("the estimate") == 4  # one probe per search and per other run
    assert estimated == ["plain", "lora-lr0.0003-s0", "own", "cpt-lr0.001-s0"]
    assert not (tmp_path / "out").exists()


def test_the_runs_of_a_search_share_the_estimate_made_before_the_first(tmp_path, monkeypatch, capsys):
    given = []

    def run_training(compare, run, run_dir, checkpoint_dir, estimate=None):
        given.append((run.name, estimate))
        info = {"method": run.name, "module": "FineTuning", "estimate": estimate or {"of": run.name}}
        return Run(run_dir, run_dir, info | {"search": run.search} if run.search else info)

    monkeypatch.setattr(compare_run, "run_training", run_training)
    compare = comparison(out_dir=tmp_path, finetune=[finetune(search=Search(seeds=[0, 1])), finetune(name="plain")],
                         cpt=cpt(search=Search(seeds=[0, 1])), methods=["finetune", "cpt"])
    compare_run.run_all(compare, writer=True)
    assert given == [("lora-lr0.001-s0", None), ("lora-lr0.001-s1", {"of": "lora-lr0.001-s0"}), ("plain", None),
                     ("cpt-lr0.001-s0", None), ("cpt-lr0.001-s1", {"of": "cpt-lr0.001-s0"})]
    assert "[compare] lora-lr0.001-s1 (learning rate 0.001, seed 1; one of 2 runs of the search of lora): " \
           in capsys.readouterr().out


def test_documents_cpt_are_the_first_cpt_settings_corpus():
    task = replace(TASK, context=Context("cpt", top_k=[1, 3], max_tokens=64))
    general = replace(TASK, name="general", context=Context("cpt"))
    compare = comparison(tasks=[task, replace(TASK, name="plain")], general_tasks=[general, LMEvalTask("arc_easy")],
                         cpt=[cpt(), cpt(name="other", data=TextCorpus("elsewhere"))])
    assert compare.tasks[0].context == Context("corpus", top_k=[1, 3], max_tokens=64)
    assert replace(compare.tasks[0], context=None) == replace(task, context=None)
    assert compare.tasks[1].context is None and compare.general_tasks[0].context.documents == "corpus"
    assert compare.general_tasks[1] == LMEvalTask("arc_easy")  # no context: left alone
    assert task.context.documents == "cpt"  # the given task is not changed
    assert replace(compare, seed=1).tasks == compare.tasks  # resolved once, kept when the comparison is remade

    with pytest.raises(ValueError, match=r"^Compare.tasks\[0\] \(sent\): context.documents is `cpt`, the first CPT "
                                         r"run's corpus, but the comparison has no `cpt` settings; give `cpt` "
                                         r"settings, or name the documents \(a .txt file, a folder"):
        comparison(tasks=[task], methods=["icl", "finetune"], cpt=None)


def test_train_top_k_is_the_number_of_documents_scored_on_trained_runs(tmp_path):
    rows = [{"text": f"review {i}", "label": "Positive"} for i in range(4)]
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "docs.txt").write_text("a review of reviews")
    task = replace(TASK, queries=str(tmp_path / "queries.jsonl"), context=Context(str(tmp_path / "docs.txt")))
    for top_k, scored in ([0, 1], [0, 1]), (None, [1]):
        compare = comparison(tasks=[task], train_top_k=top_k, train_shots=[0, 2])
        [evaluation] = evaluations(compare)
        [evaluated] = evaluation.evaluated_tasks
        assert (evaluated.context.top_k, evaluated.shots) == (scored, [0, 2])


SEARCH_YAML = """\
checkpoint_dir: checkpoint
methods: [icl, finetune, cpt]
tasks:
  - name: sent
    queries: queries.jsonl
    template: "Review: {text}\\nSentiment:"
    target: label
    choices: [Positive, Negative]
  - name: people
    queries: probe.jsonl
    template: "{prompt}"
    target: answer
    choices: choices
    context: {documents: cpt, top_k: [0, 1, 3]}
finetune:
  data: {path: train.jsonl}
  lora: {r: 4}
  optimization: {learning_rate: 3e-4}
  max_steps: 4
  val_check_interval: 2
  search:
    learning_rate: [1e-4, 3e-4, 1e-3]
    seeds: [0, 1]
cpt:
  data: {path: corpus}
  max_steps: 4
  val_check_interval: 2
  search: {seeds: [0, 1]}
train_top_k: [1]
"""


def test_a_compare_yaml_declares_searches_documents_from_cpt_and_train_top_k(tmp_path):
    (tmp_path / "compare.yaml").write_text(SEARCH_YAML)
    compare = parse_compare(["--config", str(tmp_path / "compare.yaml")])
    assert compare.finetune.search == Search(learning_rate=[1e-4, 3e-4, 1e-3], seeds=[0, 1])
    assert compare.cpt.search == Search(seeds=[0, 1]) and compare.train_top_k == [1]
    assert compare.tasks[1].context == Context("corpus", top_k=[0, 1, 3])
    names = [run.name for run in compare.planned_runs()]
    assert names == [f"lora-lr{lr}-s{seed}" for lr in ("0.0001", "0.0003", "0.001") for seed in (0, 1)] + [
        "cpt-lr0.0001-s0", "cpt-lr0.0001-s1"]  # CPT's own learning rate: Rewarming's default


def test_a_bad_search_is_the_first_line_of_the_commands_error(tmp_path, tiny_checkpoint):
    (tmp_path / "compare.yaml").write_text(SEARCH_YAML.replace("seeds: [0, 1]\ncpt:", "seeds: [0, 0]\ncpt:"))
    args = ["--config", str(tmp_path / "compare.yaml"), "--checkpoint_dir", str(tiny_checkpoint), "--out_dir",
            str(tmp_path / "out"), "--trainer.accelerator", "cpu"]
    with pytest.raises(SystemExit) as raised:
        main(["compare", *args])
    assert str(raised.value).splitlines()[0] == (
        "lightning-adapt compare: error: Compare.finetune.search.seeds=[0, 0]: [0] listed more than once; give each "
        "value once.")
    assert not (tmp_path / "out").exists()


def test_a_task_whose_documents_cannot_serve_top_k_is_refused_before_any_run(tmp_path, tiny_checkpoint):
    """The tasks are loaded, split, retrieved and tokenized once before the first run (the ICL-only run, or a training
    run's estimate), for the trained runs' numbers of documents (`train_top_k`) too."""
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"text": f"review {i}", "label": "Positive"}) + "\n" for i in range(8)))
    (tmp_path / "docs").mkdir()
    for name in ("a", "b"):
        (tmp_path / "docs" / f"{name}.txt").write_text(f"document {name}")
    task = replace(TASK, queries=str(queries), context=Context(str(tmp_path / "docs"), top_k=[0, 1]))
    compare = comparison(checkpoint_dir=tiny_checkpoint, out_dir=tmp_path / "out", tasks=[task], train_top_k=[3],
                         methods=["icl", "finetune"], trainer={"accelerator": "cpu", "devices": 1})
    with pytest.raises(ValueError, match=r"^ICL task 'sent': context.top_k asks for 3 documents per query but the "
                                         r"collection .* holds 2; lower top_k"):
        compare_run.run_compare(compare)
    assert not (tmp_path / "out" / "runs").exists()
