"""Support requests and replies of a fictional company in its house style, for style fine-tuning demos.

Nimbus Outfitters, an invented outdoor-gear shop, answers every request the same way::

    Hello <first name>,
    <one sentence acknowledging the topic>. <the category's action sentence>. Your ticket is #<CODE>-<4 digits>.
    Best regards,
    Nimbus Support

where CODE names the request's category (``DL`` delivery, ``RF`` refund, ``AC`` account, ``DF`` defect, ``EX``
exchange, ``BL`` billing). The greeting, the ticket format and the sign-off are checkable with regular expressions,
and no pretrained model can know them: a prompted model has to pick them up from demonstrations, a fine-tuned one
from the training replies.

Everything here is pure standard library and deterministic for a seed. Each split has its own customers' first
names and its own request phrasings per category (train, validation, demos and test share none), so a score on the
test split measures the style carried over to new people and new wordings, not recall of training requests.

    splits = support_splits(seed=0)   # {"train": [...], "validation": [...], "demos": [...], "test": [...]}
    write_support_data(out_dir)       # one JSONL file per split; rows have name, request, reply, category

The shipped ``builtin:support/*.jsonl`` are ``write_support_data()`` with its defaults; rewrite them with
``python -m lightning_adapt.data.house_style``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CATEGORIES", "SIGN_OFF", "SPLIT_SIZES", "Category", "render_reply", "support_splits", "write_support_data",
]

SIGN_OFF = "Best regards,\nNimbus Support"
"""The last two lines of every reply."""

BUILTIN_DIR = Path(__file__).parent / "builtin" / "support"
"""Where the shipped splits live (``builtin:support/<split>.jsonl``)."""


@dataclass(frozen=True)
class Category:
    """One kind of request: its ticket code, the reply's two middle sentences and the ways customers ask."""

    code: str
    """Two capital letters: the ticket number's prefix."""
    acknowledgement: str
    """The reply's first sentence (no final full stop); ``{item}`` is the product the request names."""
    action: str
    """What the company does about it: the reply's second sentence (no final full stop)."""
    requests: tuple[str, ...]
    """Request phrasings (``{item}`` optional), dealt out to the splits: none is in two splits."""


CATEGORIES: dict[str, Category] = {
    "delivery": Category(
        code="DL",
        acknowledgement="I am sorry that your {item} has not arrived yet",
        action="Our delivery team is tracing the parcel and will email you within two days",
        requests=(
            "My {item} still hasn't arrived and it has been over a week.",
            "Where is my {item}? The tracking page has not changed in days.",
            "I ordered a {item} two weeks ago and nothing has shown up yet.",
            "The courier says my {item} was delivered, but it is not here.",
            "Can you tell me when my {item} will finally be delivered?",
            "My parcel with the {item} seems to be stuck somewhere in transit.",
            "Still waiting on the {item} I ordered, any news on the delivery?",
            "The {item} was supposed to arrive on Friday and it never came.",
            "It's been ten days and there is no sign of my {item}.",
            "Has my {item} even been shipped? I have heard nothing since I paid.",
        ),
    ),
    "refund": Category(
        code="RF",
        acknowledgement="Thank you for asking about a refund for your {item}",
        action="Our returns team will send the money back within five working days",
        requests=(
            "I would like my money back for the {item} I bought last month.",
            "Please refund the {item}, it is not what I expected.",
            "I returned the {item} last week, when will I get my refund?",
            "Can I get a refund for the {item}? I never used it.",
            "I sent the {item} back and still have not seen the money.",
            "The {item} doesn't suit me, how do I get a refund?",
            "I changed my mind about the {item} and want to return it for a refund.",
            "How long does a refund take? I posted the {item} back on Monday.",
            "I want to return the {item} and be refunded in full.",
            "My refund for the {item} is missing from my bank statement.",
        ),
    ),
    "account": Category(
        code="AC",
        acknowledgement="I am sorry that your Nimbus account is giving you trouble",
        action="Our account team will email you the next steps within one day",
        requests=(
            "I can't log in to my account, it says my password is wrong.",
            "How do I change the email address on my account?",
            "My account got locked after I tried to sign in a few times.",
            "I never received the password reset email.",
            "Please delete my account and all my details.",
            "There are orders in my account that I did not place.",
            "The website keeps logging me out of my account.",
            "I want to update the delivery address saved in my account.",
            "I made two accounts by mistake, can you merge them?",
            "My account page shows an error whenever I open it.",
        ),
    ),
    "defect": Category(
        code="DF",
        acknowledgement="I am sorry that your {item} is faulty",
        action="Please reply with a photo of the fault and we will send a replacement",
        requests=(
            "My new {item} broke the first time I used it.",
            "The {item} arrived with a tear in it.",
            "The {item} stopped working after two days.",
            "There is a crack in the {item} I just received.",
            "The stitching on my {item} is already coming apart.",
            "My {item} is faulty and I am very disappointed.",
            "The {item} came damaged, one part is bent.",
            "Part of my {item} snapped off on the first trip.",
            "My {item} looks used and has a stain on it.",
            "The {item} is falling apart after one weekend.",
        ),
    ),
    "exchange": Category(
        code="EX",
        acknowledgement="Thank you for telling us that your {item} is not right for you",
        action="We will email you a free return label to swap it",
        requests=(
            "The {item} is too small, can I swap it for a bigger size?",
            "I got the {item} in the wrong colour, I ordered green.",
            "Could I exchange my {item} for the larger model?",
            "You sent me the wrong {item}, this is not the one I ordered.",
            "The {item} fits badly, I'd like a different size please.",
            "I would like to swap the {item} for the same one in blue.",
            "Can I trade the {item} I bought for a smaller one?",
            "The {item} in my parcel is the wrong size.",
            "Is it possible to exchange the {item} for another colour?",
            "I need the {item} in a medium instead of a large.",
        ),
    ),
    "billing": Category(
        code="BL",
        acknowledgement="I am sorry about the payment problem with your {item}",
        action="Our billing team will check the charge within three working days",
        requests=(
            "I was charged twice for my {item}.",
            "My card was billed more than the price of the {item}.",
            "There is a charge on my statement for a {item} I never ordered.",
            "The discount code did not apply when I paid for the {item}.",
            "Why was I charged a delivery fee for the {item}?",
            "I paid for the {item} but the invoice shows the wrong amount.",
            "Can you send me a corrected invoice for the {item}?",
            "The price of the {item} dropped the day after I bought it.",
            "My payment for the {item} was taken but the order says unpaid.",
            "I see two payments for the same {item} on my card.",
        ),
    ),
}

ITEMS = (
    "tent", "rain jacket", "sleeping bag", "backpack", "headlamp", "camping stove", "water filter", "fleece jacket",
    "climbing harness", "kayak paddle", "camp chair", "hammock", "bike helmet", "trail runner", "down vest",
    "cooler box",
)
"""Products a request names (singular, none starting with a vowel: every phrasing reads right with "a {item}")."""

OPENERS = ("", "Hi there. ", "Good morning. ", "Hi, ")
CLOSERS = ("", " Thanks.", " Please help.", " Thank you in advance.")

FIRST_NAMES = (
    "Alma", "Bastian", "Celeste", "Dorian", "Elodie", "Fabian", "Gemma", "Hector", "Isolde", "Jasper",
    "Katya", "Lorenzo", "Maeve", "Nils", "Ophelia", "Pascal", "Quinn", "Rosa", "Soren", "Tamsin",
    "Ulrich", "Vera", "Wendell", "Xenia", "Yannick", "Zelda", "Anders", "Bettina", "Cormac", "Daria",
    "Emil", "Flora", "Gideon", "Hanna", "Ivo", "Juno", "Kasper", "Lidia", "Magnus", "Nadia",
    "Orla", "Piers", "Renata", "Simeon", "Talia", "Ugo", "Vivienne", "Warren", "Yara", "Zoltan",
    "Agnes", "Bruno", "Clara", "Desmond", "Esme", "Frederik", "Greer", "Hamish", "Inga", "Jules",
    "Keira", "Lionel", "Mila", "Niamh", "Otto", "Paloma", "Rufus", "Selma", "Tobin", "Ursula",
    "Viggo", "Wanda",
)
"""Customers' first names (``[A-Z][a-z]+``, so a greeting check can match them), dealt out to the splits."""

LAST_NAMES = (
    "Abbott", "Bergstrom", "Carvalho", "Dankworth", "Ellery", "Fontaine", "Gallagher", "Hollis", "Iverson",
    "Jablonski", "Kerrigan", "Lindahl", "Mancini", "Northcott", "Ortega", "Prescott", "Rainsford", "Salazar",
    "Tiernan", "Underwood", "Vasquez", "Wexler", "Yardley", "Zimmer", "Ainsworth", "Blackwood", "Castell",
    "Devereux", "Estrada", "Falkner", "Granger", "Huxley", "Ingleby", "Jarvis", "Kettering", "Lowell",
    "Merriman", "Nakashima", "Oakes", "Pemberton",
)

SPLIT_SIZES = {"train": 34, "validation": 4, "demos": 4, "test": 8}
"""Rows per category in each split (6 categories: 204, 24, 24 and 48 rows)."""
PHRASINGS_PER_SPLIT = {"train": 5, "validation": 1, "demos": 2, "test": 2}
"""Request phrasings per category each split draws from (they add up to the 10 each category has)."""
FIRST_NAMES_PER_SPLIT = {"train": 40, "validation": 8, "demos": 8, "test": 16}


def render_reply(first_name: str, category: str, item: str, ticket: int) -> str:
    """The house-style reply to a customer's request (``ticket``: the 4-digit number)."""
    kind = CATEGORIES[category]
    body = f"{kind.acknowledgement.format(item=item)}. {kind.action}. Your ticket is #{kind.code}-{ticket:04d}."
    return f"Hello {first_name},\n{body}\n{SIGN_OFF}"


def _deal(rng: random.Random, values: tuple[str, ...], counts: dict[str, int]) -> dict[str, list[str]]:
    """``values`` shuffled and cut into disjoint parts of ``counts[split]`` values, in ``counts``' order."""
    shuffled = rng.sample(values, len(values))
    parts, start = {}, 0
    for split, count in counts.items():
        parts[split] = shuffled[start : start + count]
        start += count
    return parts


def support_splits(seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """The four splits (train, validation, demos, test), each row ``{name, request, reply, category}``.

    Per split, every category has ``SPLIT_SIZES[split]`` rows, its phrasings used in turn; customers (unique full
    names over all splits), products, openers, closers and ticket numbers (unique over all splits) are drawn from the
    seeded generator; the rows of a split are shuffled so that any prefix mixes the categories.
    """
    rng = random.Random(seed)
    first_names = _deal(rng, FIRST_NAMES, FIRST_NAMES_PER_SPLIT)
    phrasings = {category: _deal(rng, kind.requests, PHRASINGS_PER_SPLIT) for category, kind in CATEGORIES.items()}
    total = sum(SPLIT_SIZES.values()) * len(CATEGORIES)
    tickets = iter(rng.sample(range(10000), total))
    used_names: set[str] = set()
    splits = {}
    for split, size in SPLIT_SIZES.items():
        rows = []
        for category in CATEGORIES:
            requests: set[str] = set()
            for index in range(size):
                phrasing = phrasings[category][split][index % PHRASINGS_PER_SPLIT[split]]
                item, request = _new(requests, lambda: _request(rng, phrasing))
                first = rng.choice(first_names[split])
                _, name = _new(used_names, lambda: (first, f"{first} {rng.choice(LAST_NAMES)}"))
                reply = render_reply(first, category, item, next(tickets))
                rows.append({"name": name, "request": request, "reply": reply, "category": category})
        rng.shuffle(rows)
        splits[split] = rows
    return splits


def _request(rng: random.Random, phrasing: str) -> tuple[str, str]:
    """A product and a request about it in ``phrasing``, with an opener and a closer."""
    item = rng.choice(ITEMS)
    return item, rng.choice(OPENERS) + phrasing.format(item=item) + rng.choice(CLOSERS)


def _new(seen: set[str], draw: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    """A draw whose second value is not in ``seen`` (then added to it); the lists are sized so that one exists."""
    for _ in range(1000):
        value = draw()
        if value[1] not in seen:
            seen.add(value[1])
            return value
    raise RuntimeError("house_style: ran out of distinct values; enlarge the word lists")


def write_support_data(out_dir: str | Path = BUILTIN_DIR, seed: int = 0) -> dict[str, Path]:
    """Write ``<split>.jsonl`` for each split of ``support_splits(seed)`` into ``out_dir`` and return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, rows in support_splits(seed).items():
        paths[split] = out / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python -m lightning_adapt.data.house_style [OUT_DIR] [--seed N]`` (default: the shipped builtin/support)."""
    parser = argparse.ArgumentParser(description="Write the house-style support requests and replies (JSONL splits).")
    parser.add_argument("out_dir", type=Path, nargs="?", default=BUILTIN_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, path in write_support_data(args.out_dir, args.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
