"""Documents in the prompt: BM25 retrieval from a collection, the prompts and their token counts, hit rates, the
end-to-end evaluation at every (k, documents) and the errors of bad context settings."""

import json
import statistics

import pytest
from tokenizers import Tokenizer as HFTokenizer

from lightning_adapt.cli import main
from lightning_adapt.estimate import estimate_icl
from lightning_adapt.icl import Context, ICLEvaluation, ICLTask, ICLTaskError, evaluate_checkpoint
from lightning_adapt.icl.context import Document, retrieve
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.icl.task import DataSource

FACTS = {  # country: (capital, a word only its document has)
    "Zorbia": ("Quellen", "glaciers"),
    "Tarvonia": ("Mirefeld", "vineyards"),
    "Ulmark": ("Brastow", "lighthouses"),
    "Vessland": ("Korrin", "salt mines"),
    "Wenhala": ("Dapple", "tea terraces"),
    "Yrrigan": ("Sollace", "volcanoes"),
}
CAPITALS = [capital for capital, _ in FACTS.values()]
INSTRUCTION = "Answer from the documents.\n\n"
TEMPLATE = "Q: What is the capital of {country}?\nA:"


def write_collection(folder, facts=FACTS):
    """One .txt document per country (ids: `<country>.txt`), in a sub-folder for one of them."""
    folder.mkdir(parents=True, exist_ok=True)
    for country, (capital, feature) in facts.items():
        path = folder / ("far" if country == "Yrrigan" else "") / f"{country}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"{country} is known for its {feature}. The capital of {country} is {capital}.\n")
    return folder


def query_rows(countries=FACTS, source=True):
    rows = []
    for country in countries:
        name = f"far/{country}.txt" if country == "Yrrigan" else f"{country}.txt"
        rows.append({"country": country, "answer": FACTS[country][0]} | ({"sources": [name]} if source else {}))
    return rows


@pytest.fixture
def collection(tmp_path):
    return write_collection(tmp_path / "docs")


@pytest.fixture
def capital_task(tmp_path, collection, helpers):
    def make(rows=None, **overrides) -> ICLTask:
        queries = helpers.write_jsonl(tmp_path / "queries.jsonl", rows if rows is not None else query_rows())
        context = overrides.pop("context", {}) if "context" in overrides else {}
        spec = dict(name="capitals", queries=str(queries), template=TEMPLATE, target="answer", choices=CAPITALS,
                    instruction=INSTRUCTION, selection=None,
                    context=Context(**({"documents": str(collection), "source": "sources"} | context)))
        return ICLTask(**(spec | overrides))

    return make


def test_bm25_retrieves_the_document_that_holds_each_answer(capital_task):
    data = capital_task(context={"top_k": [1, 3]}).load()
    ids = [document.id for document in data.documents]
    assert sorted(ids) == sorted(row["sources"][0] for row in query_rows())  # a folder's ids: paths relative to it
    for query, retrieved in zip(data.queries, data.retrieved):
        assert len(retrieved) == 3  # max(top_k) retrieved once; each top_k takes a prefix
        best = data.documents[retrieved[0]]
        assert query["answer"] in best.text and best.id == query["sources"][0]


def test_a_retrieval_query_template_and_deterministic_ties():
    documents = [Document("a", "red apples"), Document("b", "green pears"), Document("c", "red apples"),
                 Document("d", "nothing in common")]
    assert retrieve(documents, ["red apples", "pears", "the of and"], 3) == [(0, 2, 1), (1, 0, 2), (0, 1, 2)]
    assert retrieve(documents, ["red apples"], 0) == [()]


def test_the_retrieval_query_can_be_another_template(capital_task, tmp_path, helpers):
    rows = [row | {"hint": FACTS[row["country"]][1]} for row in query_rows()]  # the feature, not the country
    task = capital_task(rows, template="Q: What is the capital?\nA:", context={"query": "{hint}"})
    data = task.load()
    assert [data.documents[r[0]].id for r in data.retrieved] == [row["sources"][0] for row in rows]


def test_prompt_tokens_of_top_k_prompts_count_instruction_document_and_query(capital_task, collection, tiny_checkpoint):
    task = capital_task(context={"top_k": [0, 1], "template": "Document: {document}\n\n"}, add_bos=False)
    results = evaluate_checkpoint(tiny_checkpoint, [task], progress=False)
    queries = query_rows()
    tokenizer = HFTokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    expected = statistics.fmean(  # each query's best document is its own (see the test above)
        len(tokenizer.encode(INSTRUCTION + f"Document: {(collection / query['sources'][0]).read_text().strip()}\n\n"
                             + TEMPLATE.format(**query), add_special_tokens=False).ids)
        for query in queries
    )
    metrics = results.metrics()
    assert metrics["icl/capitals/prompt_tokens@k0d1"] == pytest.approx(expected)
    plain = statistics.fmean(
        len(tokenizer.encode(INSTRUCTION + TEMPLATE.format(**query), add_special_tokens=False).ids) for query in queries
    )
    assert metrics["icl/capitals/prompt_tokens@k0"] == pytest.approx(plain)


def test_each_document_is_cut_to_max_tokens(capital_task, tmp_path, tiny_checkpoint):
    long = " ".join(f"Zorbia has {i} glaciers and many rivers." for i in range(40))
    (tmp_path / "docs" / "Zorbia.txt").write_text(long)
    runner = ICLRunner([capital_task(context={"top_k": [1], "max_tokens": 60})])
    runner.prepare(*tokenizer_and_block(tiny_checkpoint))
    (item,) = [item for item in runner.plans[0].prompts[(0, 1, 0)] if item.prompt.query == 0]  # Zorbia's query
    tokenizer = HFTokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    kept = tokenizer.decode(tokenizer.encode(long, add_special_tokens=False).ids[:60])
    assert item.prompt.context == INSTRUCTION + kept + "\n\n" + TEMPLATE.format(country="Zorbia")
    assert len(kept) < len(long) and long.startswith(kept.strip()[:10])
    short = [item for item in runner.plans[0].prompts[(0, 1, 0)] if item.prompt.query == 1][0]
    assert "The capital of Tarvonia is Mirefeld." in short.prompt.context  # shorter documents stay whole


def tokenizer_and_block(checkpoint_dir, block_size=None):
    from lightning_adapt.model.loading import load_config, load_tokenizer

    return load_tokenizer(checkpoint_dir), block_size or load_config(checkpoint_dir).block_size


def test_evaluation_at_every_k_and_number_of_documents(capital_task, tiny_checkpoint, collection):
    rows = query_rows()
    rows[1]["sources"] = ["Ulmark.txt"]  # Tarvonia's question names another source: never a hit
    task = capital_task(rows, shots=[0, 1], context={"top_k": [0, 1, 2]}, selection={"fraction": 0.5, "seed": 3})
    results = evaluate_checkpoint(tiny_checkpoint, [task], progress=False)
    assert sorted((row["k"], row["docs"]) for row in results.rows) == [(k, d) for k in (0, 1) for d in (0, 1, 2)]
    metrics = results.metrics()
    for k in (0, 1):
        assert f"icl/capitals/acc@k{k}" in metrics and f"icl/capitals/hit@k{k}" not in metrics
        assert metrics[f"icl/capitals/hit@k{k}d1"] == pytest.approx(5 / 6)
        # the second document: every other scores 0 for Tarvonia's question, the tie goes to the collection's first
        # other document, Ulmark.txt
        assert metrics[f"icl/capitals/hit@k{k}d2"] == 1.0
        assert {f"icl/capitals/acc@k{k}d1", f"icl/capitals/acc_std@k{k}d2"} <= set(metrics)
    records = [r for r in results.predictions if r["k"] == 0 and r["docs"] == 1]
    assert len(records) == 6 and {r["part"] for r in records} == {"selection", "test"}
    assert sum(r["part"] == "selection" for r in records) == 3
    assert [r["hit"] for r in sorted(records, key=lambda r: r["query"])] == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert all(len(r["documents"]) == 1 for r in records)
    assert all("documents" not in r and "hit" not in r for r in results.predictions if r["docs"] == 0)
    d2 = {r["query"]: r for r in results.predictions if r["k"] == 0 and r["docs"] == 2}
    assert all(d2[r["query"]]["documents"][:1] == r["documents"] for r in records)  # top-2 extends top-1
    assert all(d2[r["query"]]["prompt_tokens"] > r["prompt_tokens"] for r in records)


def test_documents_in_a_training_run_and_the_top_k_override(capital_task, module_factory, helpers, tmp_path):
    import lightning as L

    callback = ICLEvaluation([capital_task(context={"top_k": [1]})], top_k=[0, 2], log_predictions=False)
    assert callback.runner.data[0].task.context.top_k == [0, 2]
    other = ICLEvaluation([capital_task(context={"top_k": [1]})], log_predictions=False)
    assert callback.state_key != other.state_key
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(module_factory(), train_dataloaders=helpers.token_loader(4))
    assert {"icl/capitals/acc@k0", "icl/capitals/acc@k0d2", "icl/capitals/hit@k0d2"} <= set(trainer.callback_metrics)


def test_estimate_lists_every_k_and_number_of_documents(capital_task, tiny_checkpoint):
    task = capital_task(shots=[0, 2], context={"top_k": [0, 1]})
    estimates = estimate_icl([task], tiny_checkpoint)
    assert [(e.k, e.docs) for e in estimates] == [(0, 0), (2, 0), (0, 1), (2, 1)]
    logged = evaluate_checkpoint(tiny_checkpoint, [task], progress=False).metrics()
    for e in estimates:
        assert e.prompt_tokens == pytest.approx(logged[f"icl/capitals/prompt_tokens@k{e.k}" + (f"d{e.docs}" if e.docs else "")])


def test_record_collections_with_an_id_field_or_file_and_row(tmp_path, capital_task, helpers):
    records = [{"title": country, "body": f"The capital of {country} is {capital}."}
               for country, (capital, _) in FACTS.items()]
    path = helpers.write_jsonl(tmp_path / "wiki.jsonl", records)
    rows = [row | {"sources": row["country"]} for row in query_rows()]  # a single id, not a list
    data = capital_task(rows, context={"documents": str(path), "text_field": "body", "id_field": "title"}).load()
    assert [data.documents[r[0]].id for r in data.retrieved] == list(FACTS)
    data = capital_task(context={"documents": str(path), "text_field": "body", "source": None}).load()
    assert data.documents[0].id == "wiki.jsonl:1"
    with pytest.raises(ICLTaskError, match=r"context.documents .*wiki.jsonl: row 1: missing field 'text'"):
        capital_task(context={"documents": str(path)}).load()


def test_a_single_text_file_is_one_document(tmp_path, capital_task):
    one = tmp_path / "one.txt"
    one.write_text("The capital of Zorbia is Quellen.")
    data = capital_task(context={"documents": str(one), "source": None}).load()
    assert [d.id for d in data.documents] == ["one.txt"] and data.retrieved[0] == (0,)


def test_bad_context_settings_are_refused_before_any_model_work(tmp_path, capital_task, collection, helpers):
    missing = tmp_path / "nowhere"
    with pytest.raises(ICLTaskError, match=rf"'capitals': context.documents '{missing}': .*does not exist"):
        capital_task(context={"documents": str(missing)}).load()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ICLTaskError, match=rf"'capitals': context.documents '{empty}': Folder .* holds no"):
        capital_task(context={"documents": str(empty)}).load()
    (empty / "blank.txt").write_text("  \n\n")
    with pytest.raises(ICLTaskError, match=rf"context.documents '{empty}' holds no documents"):
        capital_task(context={"documents": str(empty)}).load()
    with pytest.raises(ICLTaskError, match="top_k asks for 7 documents per query but the collection .* holds 6"):
        capital_task(context={"top_k": [1, 7]}).load()
    for top_k in ([], [-1], [1, -2]):
        with pytest.raises(ICLTaskError, match=r"'capitals': context.top_k must be a non-empty list of integers >= 0"):
            capital_task(context={"top_k": top_k})
    rows = query_rows()
    del rows[2]["sources"]
    with pytest.raises(ICLTaskError, match=r"query .*queries.jsonl: row 3: field\(s\) \['sources'\] not found"):
        capital_task(rows).load()
    rows = query_rows()
    rows[0]["sources"] = 3
    with pytest.raises(ICLTaskError, match=r"row 1: field 'sources' \(context.source\) must be a document id or a list"):
        capital_task(rows).load()
    with pytest.raises(ICLTaskError, match="`calibrate` together with `context` is not supported"):
        capital_task(choices=["Quellen", "Mirefeld"], calibrate=True)
    with pytest.raises(ICLTaskError, match=r"context.template 'Doc: {text}' must contain \{document\}"):
        capital_task(context={"template": "Doc: {text}"})
    with pytest.raises(ICLTaskError, match=r"context.template .* uses \['title'\]"):
        capital_task(context={"template": "{title}: {document}"})
    with pytest.raises(ICLTaskError, match="context.max_tokens must be >= 1"):
        capital_task(context={"max_tokens": 0})


def test_a_prompt_with_documents_over_the_context_says_how_many_tokens_and_the_fix(
    capital_task, collection, tiny_checkpoint
):
    (collection / "Zorbia.txt").write_text(" ".join(f"Zorbia has {i} glaciers." for i in range(60)))
    task = capital_task(shots=[2], demos=None, truncate_demos=True, context={"top_k": [1], "max_tokens": 200})
    runner = ICLRunner([task])
    with pytest.raises(ICLTaskError) as raised:  # truncate_demos drops both demonstrations, never the document
        runner.prepare(*tokenizer_and_block(tiny_checkpoint, block_size=80))
    message = str(raised.value)
    assert "'capitals': query " in message and "queries.jsonl: row 1 (k=2, 1 doc, seed=0) needs " in message
    assert "more than the model's context of 80; lower context.top_k" in message
    assert "context.max_tokens (each document is cut to 200 tokens)" in message


def test_the_icl_command_reads_a_context(tmp_path, tiny_checkpoint, collection, helpers, capsys):
    queries = helpers.write_jsonl(tmp_path / "queries.jsonl", query_rows())
    config = {
        "checkpoint_dir": str(tiny_checkpoint), "progress": False,
        "tasks": [{"name": "capitals", "queries": str(queries), "template": TEMPLATE, "target": "answer",
                   "choices": CAPITALS, "context": {"documents": str(collection), "top_k": [1], "source": "sources"},
                   "selection": {"fraction": 0.5}}],
    }
    path = tmp_path / "icl.yaml"
    path.write_text(json.dumps(config))
    main(["icl", "--config", str(path), "--top_k", "[0, 2]"])
    out = capsys.readouterr().out
    assert "k | docs |" in out and "hit" in out
    assert [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("0 |")] == ["0", "2"]
    config["tasks"][0]["context"]["top_k"] = [-1]
    path.write_text(json.dumps(config))
    with pytest.raises(SystemExit) as raised:
        main(["icl", "--config", str(path)])
    assert str(raised.value).splitlines()[0] == (
        "lightning-adapt icl: error: ICL task 'capitals': context.top_k must be a non-empty list of integers >= 0 "
        "(numbers of retrieved documents per prompt; 0: none), got [-1]"
    )


def test_a_context_from_a_dict_and_a_data_source_keep_the_defaults(collection):
    task = ICLTask(name="t", queries=DataSource("q.jsonl"), template="{x}", target="y", choices=["a"],
                   context={"documents": str(collection)})
    assert task.context == Context(str(collection)) and task.context.top_k == [1]
