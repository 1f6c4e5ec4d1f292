"""The built-in demo data: review sentiment splits, the biography generator and the general text."""

from __future__ import annotations

import importlib.resources
import importlib.util
import itertools
import json
import re
from pathlib import Path

import pytest

from lightning_adapt.data import biographies as bio

BUILTIN = importlib.resources.files("lightning_adapt") / "data" / "builtin"
SPLITS = ("demos", "train", "validation", "test")
EXPECTED_SIZES = {"demos": 40, "train": 300, "validation": 80, "test": 120}
LABELS = {"Positive", "Negative"}
# Two reviews are near-duplicates when the Jaccard similarity of their sets of lower-cased words,
# or of their sets of word 5-gram shingles, reaches this threshold.
NEAR_DUPLICATE_THRESHOLD = 0.6


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def load_split(name: str) -> list[dict]:
    lines = (BUILTIN / "sentiment" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {name: load_split(name) for name in SPLITS}


@pytest.fixture(scope="module")
def all_reviews(splits) -> list[dict]:
    return [row for rows in splits.values() for row in rows]


# ---------------------------------------------------------------- sentiment


def test_split_sizes(splits):
    assert {name: len(rows) for name, rows in splits.items()} == EXPECTED_SIZES
    assert sum(EXPECTED_SIZES.values()) >= 440


@pytest.mark.parametrize("name", SPLITS)
def test_rows_have_fields_and_valid_labels(splits, name):
    for i, row in enumerate(splits[name], start=1):
        assert set(row) == {"text", "label", "domain"}, f"{name}.jsonl row {i}: fields {sorted(row)}"
        assert isinstance(row["text"], str) and row["text"].strip() == row["text"] != "", f"{name} row {i}"
        assert row["label"] in LABELS, f"{name}.jsonl row {i}: label {row['label']!r}"
        assert isinstance(row["domain"], str) and row["domain"], f"{name}.jsonl row {i}: domain"


@pytest.mark.parametrize("name", SPLITS)
def test_labels_balanced_per_split(splits, name):
    rows = splits[name]
    positive = sum(r["label"] == "Positive" for r in rows)
    share = positive / len(rows)
    assert 0.4 <= share <= 0.6, f"{name}: {positive}/{len(rows)} Positive"


def test_domains(splits, all_reviews):
    domains = {r["domain"] for r in all_reviews}
    assert len(domains) >= 4
    for domain in domains:
        assert {r["label"] for r in all_reviews if r["domain"] == domain} == LABELS, domain
    for name, rows in splits.items():
        assert {r["domain"] for r in rows} == domains, f"{name} lacks a domain"


def test_no_review_in_two_splits(splits):
    seen: dict[str, str] = {}
    for name, rows in splits.items():
        for row in rows:
            key = " ".join(words(row["text"]))
            assert key not in seen, f"{row['text']!r} is in both {seen[key]} and {name}"
            seen[key] = name


def test_no_near_duplicates(all_reviews):
    texts = [r["text"] for r in all_reviews]
    word_sets = [set(words(t)) for t in texts]
    shingle_sets = [shingles(t) for t in texts]
    worst = (0.0, "", "")
    for i, j in itertools.combinations(range(len(texts)), 2):
        sim = max(jaccard(word_sets[i], word_sets[j]), jaccard(shingle_sets[i], shingle_sets[j]))
        if sim > worst[0]:
            worst = (sim, texts[i], texts[j])
    sim, a, b = worst
    assert sim < NEAR_DUPLICATE_THRESHOLD, f"near-duplicates (Jaccard {sim:.3f}):\n{a}\n{b}"


def test_near_duplicate_measure_catches_near_duplicates():
    a = "The room was spotless and the staff were lovely."
    assert jaccard(set(words(a)), set(words("The room was spotless, and the staff were so lovely!"))) >= 0.6
    assert jaccard(set(words(a)), set(words("Cold fries and a burger reheated twice."))) < 0.6


def test_reviews_are_short(all_reviews):
    lengths = sorted(len(words(r["text"])) for r in all_reviews)
    assert lengths[0] >= 1
    assert lengths[int(0.9 * len(lengths))] <= 50  # mostly short, so k=8 prompts stay short
    assert lengths[-1] <= 60


def test_generator_script_matches_files():
    script = Path(__file__).resolve().parents[2] / "scripts" / "write_reviews.py"
    if not script.exists():
        pytest.skip("scripts/write_reviews.py is not part of an installed package")
    spec = importlib.util.spec_from_file_location("write_reviews", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, rows in module.make_splits().items():
        assert load_split(name) == rows, f"{name}.jsonl is out of date: run python scripts/write_reviews.py"


# ---------------------------------------------------------------- biographies


def test_value_lists_and_templates():
    for values in (bio.CITIES, bio.UNIVERSITIES, bio.FIELDS, bio.EMPLOYERS):
        assert 20 <= len(values) <= 60
        assert len(set(values)) == len(values)
    assert len(set(bio.FIRST_NAMES)) == len(bio.FIRST_NAMES)
    assert len(set(bio.LAST_NAMES)) == len(bio.LAST_NAMES)
    assert set(bio.TEMPLATES) == set(bio.ATTRIBUTES) == set(bio.QUESTIONS)
    for attribute, templates in bio.TEMPLATES.items():
        assert len(set(templates)) >= 5, attribute


def test_make_people_deterministic_and_seeded():
    assert bio.make_people(50, seed=0) == bio.make_people(50, seed=0)
    assert bio.make_people(50, seed=0) != bio.make_people(50, seed=1)
    people = bio.make_people(50, seed=3)
    for person in people:
        assert person.birth_city in bio.CITIES
        assert person.university in bio.UNIVERSITIES
        assert person.field in bio.FIELDS
        assert person.employer in bio.EMPLOYERS
        assert re.fullmatch(r"[A-Z][a-z]+ \d{1,2}, (19[2-9]\d|2000)", person.birth_date)


def test_names_unique():
    capacity = len(bio.FIRST_NAMES) * len(bio.LAST_NAMES)
    people = bio.make_people(capacity, seed=0)
    assert len({p.name for p in people}) == capacity
    with pytest.raises(ValueError):
        bio.make_people(capacity + 1)


def test_render_deterministic_and_paraphrases_differ():
    people = bio.make_people(30, seed=0)
    texts = bio.render_biographies(people, paraphrases=4, seed=0)
    assert texts == bio.render_biographies(people, paraphrases=4, seed=0)
    assert texts != bio.render_biographies(people, paraphrases=4, seed=1)
    assert len(texts) == 30 * 4
    for k, person in enumerate(people):
        own = texts[4 * k : 4 * k + 4]
        assert len(set(own)) == 4, person.name
        for text in own:
            for value in (person.name, person.birth_date, person.birth_city, person.university,
                          person.field, person.employer):
                assert value in text, (value, text)
    # a person renders the same whatever else is in the list
    assert bio.render_biographies(people[5:6], paraphrases=4, seed=0) == texts[20:24]


def test_paraphrases_use_varied_templates_and_orders():
    person = bio.make_people(1, seed=0)[0]
    texts = bio.render_person(person, paraphrases=20, seed=0)
    first_sentences = {t.split(". ")[0] for t in texts}
    assert len(first_sentences) >= 5


def test_knowledge_probe():
    people = bio.make_people(40, seed=0)
    rows = bio.knowledge_probe(people, seed=0)
    assert rows == bio.knowledge_probe(people, seed=0)
    assert rows != bio.knowledge_probe(people, seed=1)
    assert len(rows) == 40 * len(bio.ATTRIBUTES)
    by_name = {p.name: p for p in people}
    for row in rows:
        assert set(row) == {"question", "prompt", "choices", "answer", "attribute", "person"}
        assert row["person"] in row["question"] and row["prompt"].startswith(row["person"])
        assert row["question"].endswith("?") and not row["prompt"].endswith(" ")
        choices = row["choices"]
        assert len(choices) == 4 and len(set(choices)) == 4
        assert choices.count(row["answer"]) == 1
        assert row["answer"] == getattr(by_name[row["person"]], row["attribute"])
        if row["attribute"] != "birth_date":
            assert set(choices) <= set(bio.ATTRIBUTE_VALUES[row["attribute"]])
    # the correct option is not always in the same position
    positions = {row["choices"].index(row["answer"]) for row in rows}
    assert positions == {0, 1, 2, 3}


def test_write_biography_corpus(tmp_path):
    paths = bio.write_biography_corpus(tmp_path / "bio", n_people=10, paraphrases=3, seed=2)
    corpus = sorted(paths["corpus"].glob("*.txt"))
    heldout = sorted(paths["heldout"].glob("*.txt"))
    assert len(corpus) == 30 and len(heldout) == 10
    corpus_texts = {p.read_text(encoding="utf-8") for p in corpus}
    assert len(corpus_texts) == 30
    assert not corpus_texts & {p.read_text(encoding="utf-8") for p in heldout}
    probe = [json.loads(line) for line in paths["probe"].read_text(encoding="utf-8").splitlines()]
    assert len(probe) == 10 * len(bio.ATTRIBUTES)
    people_rows = bio.make_people(10, seed=2)
    assert [{k: v for k, v in row.items() if k != "sources"} for row in probe] == bio.knowledge_probe(people_rows, 2)
    for row in probe:  # each question names its person's training biographies, by file name in corpus/
        assert len(row["sources"]) == 3
        assert all(row["person"] in (paths["corpus"] / name).read_text(encoding="utf-8") for name in row["sources"])
    people = [json.loads(line) for line in paths["people"].read_text(encoding="utf-8").splitlines()]
    assert people == [p.to_dict() for p in bio.make_people(10, seed=2)]
    # rewriting with fewer people leaves no stale documents behind
    bio.write_biography_corpus(tmp_path / "bio", n_people=2, paraphrases=3, seed=2)
    assert len(list(paths["corpus"].glob("*.txt"))) == 6


def test_biography_corpus_never_replaces_a_folder_it_did_not_write(tmp_path):
    from lightning_adapt.core.atomic import OutputError

    mine = tmp_path / "data"
    (mine / "corpus").mkdir(parents=True)
    (mine / "corpus" / "bio_00000_0.txt").write_text("my own notes")
    with pytest.raises(OutputError, match="not written by lightning-adapt"):
        bio.write_biography_corpus(mine, n_people=2)
    assert (mine / "corpus" / "bio_00000_0.txt").read_text() == "my own notes"


# ---------------------------------------------------------------- general text


def test_general_text():
    text = (BUILTIN / "general_text.txt").read_text(encoding="utf-8")
    assert len(text.split()) >= 3500
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    assert len(paragraphs) >= 20
    tokens = set(re.findall(r"[A-Za-z]+", text))
    assert not tokens & set(bio.LAST_NAMES), "general text mentions a biography surname"


def test_replay_text_is_other_general_text():
    replay = (BUILTIN / "replay_text.txt").read_text(encoding="utf-8")
    general = (BUILTIN / "general_text.txt").read_text(encoding="utf-8")
    assert len(replay.split()) >= 3000
    assert not set(re.findall(r"[A-Za-z]+", replay)) & set(bio.LAST_NAMES)
    overlap = jaccard(shingles(replay), shingles(general))
    assert overlap < 0.01, f"replay text shares {overlap:.3f} of its 5-gram shingles with the held-out general text"


def test_readme_present():
    readme = (BUILTIN / "README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme
