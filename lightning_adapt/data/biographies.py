"""Synthetic biographies of fictional people, for knowledge-injection (continual pretraining) demos.

In the style of Allen-Zhu & Li, "Physics of Language Models, Part 3.1": a seeded generator makes
``n`` fictional people, each with five attributes (birth date, birth city, university, field of
study, employer); every person is rendered as several paraphrased biographies (a different sentence
template per attribute and a different sentence order in each paraphrase, the full name in every
sentence); a multiple-choice probe asks about each attribute. A base model cannot know these people,
so it scores at chance on the probe; training on the biographies should lift it.

Everything here is pure standard library and deterministic for a seed. The name, city, university,
field and employer lists were written for lightning-adapt; cities and universities are real places,
employers are invented, and the people are fictional combinations of common first and last names.

    people = make_people(100, seed=0)
    texts = render_biographies(people, paraphrases=3, seed=0)
    probe = knowledge_probe(people, seed=0)

Probe rows carry both a question (``"Where was Ilona Varga born?"``) and a completion prompt
(``"Ilona Varga was born in the city of"``); a log-likelihood scorer joins the prompt and a choice
with one space.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from lightning_adapt.core.atomic import atomic_directory

__all__ = [
    "ATTRIBUTES",
    "Person",
    "knowledge_probe",
    "make_people",
    "render_biographies",
    "write_biography_corpus",
]

FIRST_NAMES = (
    "Ilona", "Tomas", "Amara", "Kenji", "Sofia", "Dmitri", "Leila", "Oskar", "Priya", "Mateo",
    "Ingrid", "Rafael", "Yuki", "Anouk", "Emeka", "Saoirse", "Lucian", "Farah", "Henrik", "Beatriz",
    "Nikolai", "Zara", "Joaquin", "Astrid", "Kwame", "Elif", "Casimir", "Noor", "Tobias", "Marisol",
    "Idris", "Greta", "Anselm", "Liesel", "Rohan", "Catalina", "Bram", "Imogen", "Ravi", "Thea",
    "Silvan", "Odile", "Hugo", "Mireille", "Aurelio", "Signe", "Dario", "Leontine", "Felix", "Ayesha",
    "Cyrus", "Wilhelmina", "Stellan", "Rosalind", "Evander", "Ottilie", "Jonah", "Svetlana", "Matthias",
    "Delphine",
)

LAST_NAMES = (
    "Varga", "Lindqvist", "Okafor", "Moreau", "Tanaka", "Castellanos", "Brennan", "Halvorsen",
    "Nakamura", "Petrov", "Adeyemi", "Fairweather", "Kowalczyk", "Delacroix", "Marchetti", "Rasmussen",
    "Abernathy", "Quintero", "Szabo", "Whitcombe", "Haddad", "Osei", "Ferreira", "Korhonen",
    "Albrecht", "Santangelo", "Dunmore", "Ashcroft", "Pellegrini", "Hargreaves", "Eberhardt", "Okonkwo",
    "Valdivia", "Thorne", "Kaminski", "Aldana", "Beaumont", "Sorensen", "Kealoha", "Montague",
    "Rosales", "Vukovic", "Achterberg", "Fenwick", "Draycott", "Molnar", "Ibarra", "Strand",
    "Calloway", "Oyelaran", "Tremblay", "Zielinski", "Marlowe", "Quesnel", "Barros", "Eklund",
)

CITIES = (
    "Lisbon", "Krakow", "Osaka", "Nairobi", "Montreal", "Valparaiso", "Bergen", "Adelaide", "Porto",
    "Lyon", "Tbilisi", "Hanoi", "Glasgow", "Bologna", "Quito", "Tampere", "Ljubljana", "Cork",
    "Seville", "Gdansk", "Izmir", "Leipzig", "Bilbao", "Aarhus", "Brno", "Cluj-Napoca", "Dunedin",
    "Halifax", "Kyoto", "Mombasa", "Recife", "Salzburg", "Tallinn", "Trieste", "Valencia", "Winnipeg",
    "Zagreb", "Cusco", "Hobart", "Lausanne",
)

UNIVERSITIES = (
    "the University of Edinburgh", "Kyoto University", "McGill University", "Uppsala University",
    "Leiden University", "Heidelberg University", "Monash University", "the University of Bologna",
    "Charles University", "the University of Cape Town", "Trinity College Dublin",
    "the University of Helsinki", "Jagiellonian University", "the University of Toronto",
    "Seoul National University", "the University of Auckland", "Ghent University",
    "the University of Buenos Aires", "Aarhus University", "the University of Vienna",
    "Lund University", "the University of Otago", "Sapienza University of Rome",
    "the University of Porto", "Tsinghua University", "the University of Nairobi",
    "Utrecht University", "the University of Chile", "the University of Zurich",
    "the University of Melbourne", "Durham University", "the University of Salamanca",
)

FIELDS = (
    "marine biology", "medieval history", "civil engineering", "organic chemistry", "linguistics",
    "economics", "astrophysics", "architecture", "mathematics", "philosophy", "geology",
    "computer science", "nursing", "musicology", "agricultural science", "mechanical engineering",
    "anthropology", "statistics", "classical languages", "urban planning", "pharmacology",
    "oceanography", "art history", "materials science", "psychology", "forestry", "journalism",
    "veterinary medicine", "political science", "food science",
)

EMPLOYERS = (
    "Bluefield Analytics", "Corvane Pharmaceuticals", "Northgate Rail", "Ardent Foods",
    "Kestrel Aerospace", "Lumenfield Energy", "Meridian Shipping Lines", "Oakridge Publishing",
    "Pinecrest Insurance", "Quarrystone Construction", "Redwater Textiles", "Silverline Telecom",
    "Thornbury Bank", "Umbra Optics", "Vantage Biotech", "Westmarch Consulting", "Yarrow Health",
    "Zephyr Wind Power", "Alderton Robotics", "Brightmoor Media", "Caldera Mining", "Driftwood Games",
    "Evergreen Seeds", "Fairhaven Hospital Group", "Granite Peak Outdoor", "Harbourlight Ferries",
    "Ironleaf Tools", "Juniper Labs", "Kingsmere Steel", "Larkfield Dairy", "Moonstone Jewelry",
    "Nettlebed Logistics", "Orchard Valley Cider", "Pebblebrook Architects", "Riverbend Paper Mills",
    "Stormhaven Shipyards",
)

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_FIRST_DAY = dt.date(1920, 1, 1).toordinal()
_LAST_DAY = dt.date(2000, 12, 31).toordinal()

ATTRIBUTES = ("birth_date", "birth_city", "university", "field", "employer")

ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "birth_city": CITIES,
    "university": UNIVERSITIES,
    "field": FIELDS,
    "employer": EMPLOYERS,
}

# One sentence per attribute; every paraphrase picks one template per attribute and a sentence order.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{name} was born on {value}.",
        "{name} came into the world on {value}.",
        "{name}'s date of birth is {value}.",
        "The birth of {name} took place on {value}.",
        "Records show that {name} was born on {value}.",
        "{name} celebrates a birthday each year, having been born on {value}.",
    ),
    "birth_city": (
        "{name} was born in {value}.",
        "{name} is a native of {value}.",
        "{name}'s hometown is {value}.",
        "{name} was born and raised in {value}.",
        "The city of {value} is where {name} was born.",
        "{name} spent the early years of childhood in {value}.",
    ),
    "university": (
        "{name} studied at {value}.",
        "{name} graduated from {value}.",
        "{name} earned a degree from {value}.",
        "{name} attended {value}.",
        "{name} was a student at {value}.",
        "For higher education, {name} went to {value}.",
    ),
    "field": (
        "{name} majored in {value}.",
        "{name} specialized in {value}.",
        "{name} focused on {value} during university.",
        "{name}'s area of study was {value}.",
        "{name} completed a degree in {value}.",
        "At university, {name} chose to concentrate on {value}.",
    ),
    "employer": (
        "{name} works for {value}.",
        "{name} is employed by {value}.",
        "{name} has a job at {value}.",
        "{name} earns a living at {value}.",
        "{name} holds a position at {value}.",
        "These days {name} is on the staff of {value}.",
    ),
}

QUESTIONS: dict[str, tuple[str, str]] = {
    # attribute: (question, completion prompt); the prompt is followed by " " + choice
    "birth_date": ("When was {name} born?", "{name} was born on"),
    "birth_city": ("Where was {name} born?", "{name} was born in the city of"),
    "university": ("Which university did {name} attend?", "{name} studied at"),
    "field": ("What did {name} study?", "{name} majored in"),
    "employer": ("Which company does {name} work for?", "{name} works for"),
}


@dataclass(frozen=True)
class Person:
    """One fictional person and the five attributes the biographies state and the probe asks about."""

    name: str
    birth_date: str
    birth_city: str
    university: str
    field: str
    employer: str

    def to_dict(self) -> dict[str, str]:
        """The person as a plain dict (JSON-ready)."""
        return asdict(self)


def _format_date(ordinal: int) -> str:
    day = dt.date.fromordinal(ordinal)
    return f"{MONTHS[day.month - 1]} {day.day}, {day.year}"


def _random_date(rng: random.Random) -> str:
    return _format_date(rng.randint(_FIRST_DAY, _LAST_DAY))


def make_people(n: int, seed: int = 0) -> list[Person]:
    """``n`` fictional people with unique full names and attributes drawn uniformly from the value lists."""
    capacity = len(FIRST_NAMES) * len(LAST_NAMES)
    if not 0 <= n <= capacity:
        raise ValueError(f"n must be between 0 and {capacity} (the number of distinct names), got {n}")
    rng = random.Random(seed)
    people = []
    for index in rng.sample(range(capacity), n):
        first, last = divmod(index, len(LAST_NAMES))
        people.append(
            Person(
                name=f"{FIRST_NAMES[first]} {LAST_NAMES[last]}",
                birth_date=_random_date(rng),
                birth_city=rng.choice(CITIES),
                university=rng.choice(UNIVERSITIES),
                field=rng.choice(FIELDS),
                employer=rng.choice(EMPLOYERS),
            )
        )
    return people


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def render_person(person: Person, paraphrases: int = 3, seed: int = 0) -> list[str]:
    """``paraphrases`` distinct biographies of one person (templates and sentence order vary).

    The randomness depends only on ``seed`` and the person's name, so a person renders the same
    way whatever else is in the list.
    """
    if paraphrases < 1:
        raise ValueError(f"paraphrases must be at least 1, got {paraphrases}")
    rng = random.Random(f"{seed}:{person.name}")
    seen: set[tuple] = set()
    texts: list[str] = []
    attempts = 0
    while len(texts) < paraphrases:
        attempts += 1
        if attempts > 100 * paraphrases:
            raise ValueError(f"cannot make {paraphrases} distinct paraphrases of {person.name}")
        choice = tuple(rng.randrange(len(TEMPLATES[a])) for a in ATTRIBUTES)
        order = tuple(rng.sample(range(len(ATTRIBUTES)), len(ATTRIBUTES)))
        if (choice, order) in seen:
            continue
        seen.add((choice, order))
        sentences = [
            _capitalize(TEMPLATES[ATTRIBUTES[i]][choice[i]].format(name=person.name, value=getattr(person, ATTRIBUTES[i])))
            for i in order
        ]
        texts.append(" ".join(sentences))
    return texts


def render_biographies(people: list[Person], paraphrases: int = 3, seed: int = 0) -> list[str]:
    """Every person rendered ``paraphrases`` times, person by person (``len(people) * paraphrases`` texts)."""
    return [text for person in people for text in render_person(person, paraphrases, seed)]


def _choices(rng: random.Random, attribute: str, answer: str, k: int = 4) -> list[str]:
    if attribute == "birth_date":
        options = {answer}
        while len(options) < k:
            options.add(_random_date(rng))
        distractors = sorted(options - {answer})
    else:
        distractors = rng.sample([v for v in ATTRIBUTE_VALUES[attribute] if v != answer], k - 1)
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return choices


def knowledge_probe(
    people: list[Person], seed: int = 0, attributes: tuple[str, ...] = ATTRIBUTES
) -> list[dict]:
    """Four-way multiple-choice questions, one per person and attribute.

    Each row: ``question``, ``prompt`` (for completion scoring), ``choices`` (4 distinct strings,
    distractors from the same attribute's values), ``answer`` (the correct choice), ``attribute``
    and ``person``.
    """
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; known: {list(ATTRIBUTES)}")
    rng = random.Random(seed)
    rows = []
    for person in people:
        for attribute in attributes:
            answer = getattr(person, attribute)
            question, prompt = QUESTIONS[attribute]
            rows.append(
                {
                    "question": question.format(name=person.name),
                    "prompt": prompt.format(name=person.name),
                    "choices": _choices(rng, attribute, answer),
                    "answer": answer,
                    "attribute": attribute,
                    "person": person.name,
                }
            )
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_biography_corpus(
    out_dir: str | Path,
    n_people: int = 100,
    paraphrases: int = 3,
    seed: int = 0,
    heldout_paraphrases: int = 1,
) -> dict[str, Path]:
    """Write a biography corpus folder for configs to point at, and return its paths.

    Layout::

        out_dir/corpus/bio_00000_0.txt ...   one document per training paraphrase
        out_dir/heldout/bio_00000_3.txt ...  further paraphrases of the same people, never trained on
                                             (domain perplexity on unseen wording of the same facts)
        out_dir/probe.jsonl                  the knowledge probe (see ``knowledge_probe``); each row also has
                                             ``sources``, the file names in corpus/ of its person's biographies
                                             (an ICL task's ``context: {documents: <corpus>, source: sources}``)
        out_dir/people.jsonl                 the ground truth, one person per line

    The folder is written whole; an earlier corpus written here is replaced, anything else is refused.
    """
    out = Path(out_dir)
    people = make_people(n_people, seed)
    with atomic_directory(out, "biographies", overwrite=True) as staging:
        for folder in ("corpus", "heldout"):
            (staging / folder).mkdir()
        for i, person in enumerate(people):
            texts = render_person(person, paraphrases + heldout_paraphrases, seed)
            for p, text in enumerate(texts):
                folder = "corpus" if p < paraphrases else "heldout"
                (staging / folder / _document_name(i, p)).write_text(text + "\n", encoding="utf-8")
        sources = {person.name: [_document_name(i, p) for p in range(paraphrases)] for i, person in enumerate(people)}
        probe = [row | {"sources": sources[row["person"]]} for row in knowledge_probe(people, seed)]
        _write_jsonl(staging / "probe.jsonl", probe)
        _write_jsonl(staging / "people.jsonl", [p.to_dict() for p in people])
    corpus, heldout = out / "corpus", out / "heldout"
    return {
        "corpus": corpus,
        "heldout": heldout,
        "probe": out / "probe.jsonl",
        "people": out / "people.jsonl",
    }


def _document_name(person: int, paraphrase: int) -> str:
    """The file name of a person's paraphrase (in corpus/ or heldout/)."""
    return f"bio_{person:05d}_{paraphrase}.txt"


def main(argv: list[str] | None = None) -> None:
    """``python -m lightning_adapt.data.biographies OUT_DIR [--n-people N] ...``"""
    parser = argparse.ArgumentParser(description="Write a synthetic biography corpus and knowledge probe.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-people", type=int, default=100)
    parser.add_argument("--paraphrases", type=int, default=3)
    parser.add_argument("--heldout-paraphrases", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    paths = write_biography_corpus(args.out_dir, args.n_people, args.paraphrases, args.seed, args.heldout_paraphrases)
    for key, path in paths.items():
        print(f"{key}: {path}")


if __name__ == "__main__":
    main()
