"""Running a LitGPT model for ICL: log-likelihoods and greedy generation, sharing prompt prefixes.

Requests whose inputs are equal or extend one another share a row (all single-token choices of a
query are read from one sequence). Rows are grouped by their requests' ``group`` (a demonstration
set, or a context) and, within it, by context (the tokens before the first continuation token), groups
ordered by their tokens. A group of at least ``batch_size`` rows is batched on its own, longest
first. Smaller groups are packed together, each group whole: those under a node of the token trie
whose prefix is long enough to share get batches of their own, the others are packed with their
parent node's; each such set is sorted longest first and cut where padding plus forward passes
cost least. So a batch's rows share as long a prefix, and need as little padding, as packing allows.

Each batch runs in up to three steps on LitGPT's KV cache. The longest common token prefix of its
rows (capped so every row keeps the hidden state that predicts its first continuation token) runs
once, with batch size 1, and is copied to every cache row; the next batch recomputes only the part
of its prefix not already cached. Where that is cheaper, each group's own longer prefix then runs
once per group (a fork: one cache row per group, copied to the group's rows). Last, every row's
remaining tokens run batched, each at its own positions. A prefix is run apart only where that
saves more token positions than the extra forward pass costs (``_MIN_SHARED``), counting the rows of
the next batches that begin with part of it (the cache keeps it for them). Because prefixes
are found on tokens, not text, the inputs are exactly those of a separate forward per sequence.
The LM head is applied only to the hidden states that predict continuation tokens.

``scores`` adds lm-evaluation-harness's ``is_greedy`` to each log-likelihood.
``naive_loglikelihood`` and ``naive_generate`` are the references: one full forward per sequence
(per step), which is what lm-evaluation-harness does. Tests and the benchmark compare against them;
models with sliding-window attention (whose ring-buffer cache does not fit the copy) use them too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from litgpt import GPT
from litgpt.model import batched_index_select, do_softcapping

T = TypeVar("T")

BATCH_SIZE = 16
"""Sequences per forward pass of an ICL evaluation, unless its caller says otherwise (the one default every
evaluation entry point shares: `ICLEvaluation`, `evaluate_checkpoint`, `compare`'s `icl_batch_size`)."""
_MIN_SHARED = 64
"""What one more forward pass costs, in token positions (about that on a CPU): a shared prefix runs apart only
where it saves more positions (its length times the rows beyond the first) than its extra forward passes cost."""


@dataclass(frozen=True)
class Generated:
    """A greedy continuation: its text (cut at EOS and the first stop string) and the number of tokens generated,
    EOS and the tokens of a stop string included (what the decoding cost)."""

    text: str
    tokens: int


@dataclass(frozen=True)
class Request:
    """A token sequence to score from ``start`` on (log-likelihood), or to continue (generation:
    ``start == len(tokens)``). Requests with the same ``group`` are batched together."""

    tokens: tuple[int, ...]
    start: int
    group: Hashable = None


def loglikelihoods(
    model: GPT, requests: Sequence[Request], batch_size: int = BATCH_SIZE, on_batch: Callable[[int], None] | None = None
) -> list[float]:
    """Sum of log-probabilities of ``tokens[start:]`` given ``tokens[:start]``, per request. ``on_batch`` is told
    how many requests each finished forward pass scored (for progress bars)."""
    return [logprob for logprob, _ in scores(model, requests, batch_size, on_batch)]


@torch.no_grad()
def scores(
    model: GPT, requests: Sequence[Request], batch_size: int = BATCH_SIZE, on_batch: Callable[[int], None] | None = None
) -> list[tuple[float, bool]]:
    """``(log-likelihood, is_greedy)`` per request, as lm-evaluation-harness's ``loglikelihood`` returns them:
    ``is_greedy`` when every token of ``tokens[start:]`` is the argmax of its prediction."""
    if not requests:
        return []
    on_batch = on_batch or _ignore
    if not _can_share_prefix(model):
        return [_counted(naive_score(model, r.tokens, r.start), on_batch) for r in requests]
    out = [(0.0, False)] * len(requests)
    rows = _rows(requests)
    inputs = [fed for fed, _, _ in rows]
    limits = [min(requests[i].start for i in reads) - 1 for _, _, reads in rows]
    # within its group, a row's context (the tokens before its first continuation) groups it further: the choices
    # of one prompt share a fork, and prompts sharing a prefix are found in the token trie (``_cluster``)
    groups = [(group, fed[: limit + 1]) for (fed, group, _), limit in zip(rows, limits)]
    batches = _batches(inputs, groups, batch_size)
    plans = _plans(batches, inputs, groups, limits, model.config.block_size)
    with _kv_cache(model, batch_size, max(plan.length for plan in plans)):
        cache = _PrefixCache(model)
        for batch, plan in zip(batches, plans):
            hidden = _prefill(model, cache, [inputs[j] for j in batch], plan)
            reads = [(row, i) for row, j in enumerate(batch) for i in rows[j][2]]
            values = _score_reads(model, hidden, [(r, requests[i]) for r, i in reads], plan.offsets)
            for (_, i), value in zip(reads, values):
                out[i] = value
            on_batch(len(reads))
    return out


@torch.no_grad()
def generate(
    model: GPT,
    requests: Sequence[Request],
    max_new_tokens: int,
    stop: Sequence[str],
    eos_id: int | None,
    decode: Callable[[list[int]], str],
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> list[Generated]:
    """Greedy continuation of each request, ending at ``eos_id``, a ``stop`` string (cut off) or
    ``max_new_tokens``. ``on_batch`` is told how many requests each finished batch completed."""
    if not requests:
        return []
    on_batch = on_batch or _ignore
    if not _can_share_prefix(model):
        return [
            _counted(naive_generate(model, r.tokens, max_new_tokens, stop, eos_id, decode), on_batch) for r in requests
        ]
    out = [Generated("", 0)] * len(requests)
    device = _device(model)
    inputs, groups = [r.tokens for r in requests], [r.group for r in requests]
    batches = _batches(inputs, groups, batch_size)
    plans = _plans(batches, inputs, groups, [len(t) - 1 for t in inputs], model.config.block_size)
    length = max(max(plan.length for plan in plans), max(len(t) for t in inputs) + max_new_tokens - 1)
    with _kv_cache(model, batch_size, length):
        cache = _PrefixCache(model)
        for batch, plan in zip(batches, plans):
            batch_inputs = [inputs[i] for i in batch]
            hidden = _prefill(model, cache, batch_inputs, plan)
            last = torch.tensor([len(t) - 1 - o for t, o in zip(batch_inputs, plan.offsets)], device=device)
            next_tokens = _logits(model, hidden[torch.arange(len(batch), device=device), last]).argmax(-1)
            positions = torch.tensor([len(t) for t in batch_inputs], device=device)
            generated: list[list[int]] = [[] for _ in batch]
            done = [False] * len(batch)
            for step in range(max_new_tokens):
                for i, token in enumerate(next_tokens.tolist()):
                    if not done[i]:
                        generated[i].append(token)
                        done[i] = _finished(generated[i], stop, eos_id, decode)
                if all(done) or step == max_new_tokens - 1:
                    break
                # each row writes its own next position; its padding beyond it stays masked
                hidden = _hidden(model, next_tokens.view(-1, 1), positions.view(-1, 1), int(positions.max()) + 1)
                next_tokens = _logits(model, hidden[:, 0]).argmax(-1)
                positions += 1
            for i, tokens in zip(batch, generated):
                out[i] = Generated(_text(tokens, stop, eos_id, decode), len(tokens))
            on_batch(len(batch))
    return out


def _ignore(_: int) -> None:
    """The default ``on_batch``: no progress reporting."""


def _counted(value: T, on_batch: Callable[[int], None]) -> T:
    """``value``, after telling ``on_batch`` that one request is done."""
    on_batch(1)
    return value


def naive_loglikelihood(model: GPT, tokens: Sequence[int], start: int) -> float:
    """Reference: one full forward of ``tokens[:-1]``, full-vocabulary logits at every position."""
    return naive_score(model, tokens, start)[0]


@torch.no_grad()
def naive_score(model: GPT, tokens: Sequence[int], start: int) -> tuple[float, bool]:
    """``naive_loglikelihood`` and whether every continuation token is the argmax of its prediction."""
    idx = torch.tensor([list(tokens[:-1])], device=_device(model))
    with _kv_cache(model, 0, len(tokens) - 1):
        logprobs = model(idx)[0].float().log_softmax(-1)[start - 1 :]
    targets = torch.tensor(list(tokens[start:]), device=idx.device)
    greedy = bool((logprobs.argmax(-1) == targets).all())
    return logprobs.gather(-1, targets[:, None]).double().sum().item(), greedy


@torch.no_grad()
def naive_generate(
    model: GPT,
    tokens: Sequence[int],
    max_new_tokens: int,
    stop: Sequence[str],
    eos_id: int | None,
    decode: Callable[[list[int]], str],
) -> Generated:
    """Reference greedy generation: a full forward over the whole sequence for every new token."""
    sequence, generated = list(tokens), []
    with _kv_cache(model, 0, len(tokens) + max_new_tokens - 1):
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([sequence], device=_device(model)))[0, -1]
            generated.append(int(logits.argmax()))
            sequence.append(generated[-1])
            if _finished(generated, stop, eos_id, decode):
                break
    return Generated(_text(generated, stop, eos_id, decode), len(generated))


def _score_reads(
    model: GPT, hidden: torch.Tensor, reads: list[tuple[int, Request]], offsets: Sequence[int]
) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each request read from row ``row`` of ``hidden`` (positions from
    ``offsets[row]`` on); the LM head runs once per distinct hidden state that predicts a continuation token."""
    device = hidden.device
    read_ids, flat, targets = [], [], []
    for n, (row, request) in enumerate(reads):
        tokens, start = request.tokens, request.start
        base = row * hidden.shape[1] - offsets[row]
        read_ids += [n] * (len(tokens) - start)
        flat += range(base + start - 1, base + len(tokens) - 1)
        targets += tokens[start:]
    states, inverse = torch.unique(torch.tensor(flat, device=device), return_inverse=True)
    logprobs = _logits(model, hidden.flatten(0, 1)[states]).log_softmax(-1)
    targets = torch.tensor(targets, device=device)
    picked = logprobs[inverse, targets].double()
    missed = (logprobs.argmax(-1)[inverse] != targets).long()
    read_ids = torch.tensor(read_ids, device=device)
    sums = torch.zeros(len(reads), dtype=torch.float64, device=device).index_add_(0, read_ids, picked)
    misses = torch.zeros(len(reads), dtype=torch.long, device=device).index_add_(0, read_ids, missed)
    return [(total, n == 0) for total, n in zip(sums.tolist(), misses.tolist())]


def _finished(tokens: list[int], stop: Sequence[str], eos_id: int | None, decode: Callable) -> bool:
    if tokens[-1] == eos_id:
        return True
    text = decode(tokens)
    return any(s in text for s in stop)


def _text(tokens: list[int], stop: Sequence[str], eos_id: int | None, decode: Callable) -> str:
    if tokens and tokens[-1] == eos_id:
        tokens = tokens[:-1]
    text = decode(tokens)
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def _device(model: GPT) -> torch.device:
    return model.transformer.wte.weight.device


def _can_share_prefix(model: GPT) -> bool:
    return not any(getattr(block.attn, "apply_sliding_window_attention", False) for block in model.transformer.h)


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for s in sequences[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def _rows(requests: Sequence[Request]) -> list[tuple[tuple[int, ...], Hashable, list[int]]]:
    """The sequences to run: ``(tokens, group, request indices)``. A request feeds ``tokens[:-1]``;
    requests whose fed tokens are equal, or a prefix of another request's, read from the same row
    (e.g. all single-token choices of a query share one row). In sorted order a prefix comes right
    before the sequences extending it, so one backward pass merges them."""
    members: dict[tuple[int, ...], list[int]] = {}
    for i, request in enumerate(requests):
        members.setdefault(tuple(request.tokens[:-1]), []).append(i)
    rows: list[tuple[tuple[int, ...], Hashable, list[int]]] = []
    for fed in sorted(members, reverse=True):
        if rows and rows[-1][0][: len(fed)] == fed:
            rows[-1][2].extend(members[fed])
        else:
            rows.append((fed, requests[members[fed][0]].group, list(members[fed])))
    return rows


def _members(keys: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """Indices of each distinct key, keys in order of first appearance."""
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    return members


@dataclass(frozen=True)
class _Group:
    """The sequences of one group: ``key`` is its first in token order, ``longest`` the length of its longest."""

    key: tuple[int, ...]
    members: list[int]
    longest: int


def _batches(sequences: Sequence[Sequence[int]], groups: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Indices of the sequences per batch, groups in token order. A group of at least ``batch_size`` sequences is
    batched on its own, longest first; the smaller groups between two such groups are packed together (``_pack``)."""
    ordered = []
    for members in _members(groups).values():
        members.sort(key=lambda i: -len(sequences[i]))
        ordered.append(_Group(min(tuple(sequences[i]) for i in members), members, len(sequences[members[0]])))
    batches: list[list[int]] = []
    small: list[_Group] = []
    for group in sorted(ordered, key=lambda g: g.key):
        if len(group.members) < batch_size:
            small.append(group)
        else:
            batches += _pack(small, batch_size)
            batches += [group.members[j : j + batch_size] for j in range(0, len(group.members), batch_size)]
            small = []
    return batches + _pack(small, batch_size)


def _pack(groups: list[_Group], batch_size: int) -> list[list[int]]:
    """Small groups (in token order) in batches of up to ``batch_size`` sequences, each group whole: clusters that
    share a long prefix get batches of their own (``_cluster``), all other groups are packed together (``_fill``)."""
    if not groups:
        return []
    batches, rest = _cluster(groups, 0, batch_size)
    return batches + _fill(rest, batch_size)


def _cluster(groups: list[_Group], parent: int, batch_size: int) -> tuple[list[list[int]], list[_Group]]:
    """Walk the token trie of the groups' keys (in token order) below a node ``parent`` tokens deep: a node whose
    common prefix is long enough to share between its groups (``_worth_sharing``, for two more forward passes)
    packs those of its groups not packed further down into batches of its own. Returns the batches made and the
    groups left to the parent."""
    depth = _common_prefix([groups[0].key, groups[-1].key])  # in token order, the first and last share least
    parts = _split(groups, depth)
    batches: list[list[int]] = []
    if len(parts) == 1:  # a leaf: every key is the same
        rest = groups
    else:
        rest = []
        for part in parts:
            part_batches, part_rest = _cluster(part, depth, batch_size)
            batches += part_batches
            rest += part_rest
    if _worth_sharing(depth - parent, len(rest), 2):
        return batches + _fill(rest, batch_size), []
    return batches, rest


def _split(groups: list[_Group], depth: int) -> list[list[_Group]]:
    """Groups (in token order) split by the token of their key at ``depth``."""
    parts: dict[tuple[int, ...], list[_Group]] = {}
    for group in groups:
        parts.setdefault(group.key[depth : depth + 1], []).append(group)
    return list(parts.values())


def _fill(groups: list[_Group], batch_size: int) -> list[list[int]]:
    """The groups' sequences, longest first, in batches of up to ``batch_size``, each group whole, cut where the
    padded length of the batches plus ``_MIN_SHARED`` per batch is least."""
    groups = sorted(groups, key=lambda g: -g.longest)
    best, cut = [0.0] + [math.inf] * len(groups), [0] * (len(groups) + 1)
    for end in range(1, len(groups) + 1):
        rows = 0
        for begin in range(end - 1, -1, -1):
            rows += len(groups[begin].members)
            if rows > batch_size:
                break
            cost = best[begin] + rows * groups[begin].longest + _MIN_SHARED
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    batches, end = [], len(groups)
    while end:
        batches.append([i for group in groups[cut[end] : end] for i in group.members])
        end = cut[end]
    return batches[::-1]


def _worth_sharing(tokens: int, rows: int, forwards: int) -> bool:
    """Whether running ``tokens`` once instead of for each of ``rows`` rows saves more positions than ``forwards``
    more forward passes cost (``_MIN_SHARED`` each)."""
    return tokens * (rows - 1) >= forwards * _MIN_SHARED


@dataclass(frozen=True)
class _Plan:
    """How one batch runs: ``shared`` in every cache row, then each fork's tokens (``(tokens after shared, rows)``)
    once for its rows, then every row from its ``offsets`` entry on, right-padded to ``width`` tokens."""

    shared: tuple[int, ...]
    forks: list[tuple[tuple[int, ...], list[int]]]
    offsets: list[int]
    width: int

    @property
    def length(self) -> int:
        """Cache positions the batch writes (padding included)."""
        return max(self.offsets) + self.width

    @property
    def cost(self) -> int:
        """Token positions run on top of ``shared`` (padding included), a forward pass counted as ``_MIN_SHARED``."""
        forks = len(self.forks) * max(len(tokens) for tokens, _ in self.forks) + _MIN_SHARED if self.forks else 0
        return forks + len(self.offsets) * self.width


def _plans(
    batches: list[list[int]],
    sequences: Sequence[tuple[int, ...]],
    groups: Sequence[Hashable],
    limits: Sequence[int],
    length: int,
) -> list[_Plan]:
    """The ``_Plan`` of every batch, each starting from the prefix the batch before left in the cache and writing
    no cache position from ``length`` on."""
    prefixes = [_shareable([sequences[j] for j in batch], [limits[j] for j in batch]) for batch in batches]
    plans: list[_Plan] = []
    for n, batch in enumerate(batches):
        inputs, cached = [sequences[j] for j in batch], plans[-1].shared if plans else ()
        flat = _flat(inputs, _kept(prefixes[n:], [len(b) for b in batches[n:]], _common_prefix([cached, prefixes[n]])))
        forked = _forked(inputs, [groups[j] for j in batch], [limits[j] for j in batch], len(flat.shared))
        plans.append(forked if forked.length <= length and forked.cost < flat.cost else flat)
    return plans


def _shareable(inputs: Sequence[tuple[int, ...]], limits: Sequence[int]) -> tuple[int, ...]:
    """The longest prefix all rows of a batch share and may leave to the cache; ``limits[r]`` is the longest prefix
    row ``r`` may leave (it needs the hidden states from there on)."""
    return tuple(inputs[0][: min(_common_prefix(inputs), min(limits))])


def _kept(prefixes: Sequence[tuple[int, ...]], rows: Sequence[int], have: int) -> int:
    """How many tokens of the first batch's shareable prefix (``prefixes[0]``, ``rows[0]`` rows) the cache is to hold,
    its first ``have`` being there already: all of them if running the rest once saves ``_MIN_SHARED`` positions,
    counting the rows of the batches after it that begin with part of it (the cache keeps it for them), else none
    more."""
    depth = len(prefixes[0])
    saved = (depth - have) * (rows[0] - 1)
    for prefix, count in zip(prefixes[1:], rows[1:]):
        if saved >= _MIN_SHARED:
            break
        depth = _common_prefix([prefixes[0][:depth], prefix])
        if depth <= have:
            break
        saved += (depth - have) * count
    return len(prefixes[0]) if saved >= _MIN_SHARED else have


def _flat(inputs: Sequence[tuple[int, ...]], shared: int) -> _Plan:
    """Every row on top of the first ``shared`` tokens (which every row has), right-padded to the longest rest."""
    return _Plan(tuple(inputs[0][:shared]), [], [shared] * len(inputs), max(len(t) for t in inputs) - shared)


def _forked(
    inputs: Sequence[tuple[int, ...]], groups: Sequence[Hashable], limits: Sequence[int], shared: int
) -> _Plan:
    """Every group's rows on top of the group's own common prefix (a fork), run once per group after ``shared``."""
    offsets, forks = [shared] * len(inputs), []
    for rows in _members(groups).values():
        depth = min(_common_prefix([inputs[r] for r in rows]), min(limits[r] for r in rows))
        if depth > shared:
            forks.append((tuple(inputs[rows[0]][shared:depth]), rows))
            for r in rows:
                offsets[r] = depth
    width = max(len(tokens) - offset for tokens, offset in zip(inputs, offsets))
    return _Plan(tuple(inputs[0][:shared]), forks, offsets, width)


@contextmanager
def _kv_cache(model: GPT, batch_size: int, length: int) -> Iterator[None]:
    """Make room for ``length`` positions (and a KV cache of ``batch_size`` rows, if > 0); afterwards
    clear the cache and put back the model's own RoPE cache and ``max_seq_length`` untouched."""
    saved = model.max_seq_length, model.cos, model.sin
    try:
        if saved[0] < length:
            model.max_seq_length = length
            model.cos, model.sin = model.cos.to(saved[1].dtype), model.sin.to(saved[2].dtype)
        if batch_size:
            model.set_kv_cache(batch_size, max_seq_length=length, device=_device(model))
        yield
    finally:
        model.clear_kv_cache()
        if model.max_seq_length != saved[0]:
            model._max_seq_length = saved[0]  # the property setter would rebuild the RoPE cache
            model.cos, model.sin = saved[1], saved[2]


class _PrefixCache:
    """Tracks which token prefix every KV-cache row holds; extends it by running only new tokens."""

    def __init__(self, model: GPT) -> None:
        self.model, self.tokens = model, ()

    def extend(self, prefix: tuple[int, ...]) -> None:
        have = _common_prefix([self.tokens, prefix]) if self.tokens else 0
        if have < len(prefix):
            device = _device(self.model)
            idx = torch.tensor([prefix[have:]], device=device)
            _hidden(self.model, idx, torch.arange(have, len(prefix), device=device), len(prefix))
            for block in self.model.transformer.h:  # row 0 was written; copy it to the other rows
                cache = block.attn.kv_cache
                cache.k[1:, :, have : len(prefix)] = cache.k[:1, :, have : len(prefix)]
                cache.v[1:, :, have : len(prefix)] = cache.v[:1, :, have : len(prefix)]
        self.tokens = prefix


def _prefill(model: GPT, cache: _PrefixCache, inputs: Sequence[Sequence[int]], plan: _Plan) -> torch.Tensor:
    """Run a batch as ``plan`` says: hidden states of ``inputs[r][plan.offsets[r]:]``, right-padded."""
    cache.extend(plan.shared)
    if plan.forks:
        _run_forks(model, plan)
    return _run_rows(model, inputs, plan.offsets, plan.width)


def _run_forks(model: GPT, plan: _Plan) -> None:
    """Run each fork's tokens once on top of ``plan.shared`` (fork ``n`` in cache row ``n``), then copy them into
    the cache rows of the fork's rows."""
    start, device = len(plan.shared), _device(model)
    width = max(len(tokens) for tokens, _ in plan.forks)
    idx = _padded([tokens for tokens, _ in plan.forks], width).to(device)
    _hidden(model, idx, torch.arange(start, start + width, device=device), start + width)
    rows = torch.tensor([r for _, rows in plan.forks for r in rows], device=device)
    slots = torch.tensor([n for n, (_, rows) in enumerate(plan.forks) for _ in rows], device=device)
    for block in model.transformer.h:
        cache = block.attn.kv_cache
        cache.k[rows, :, start : start + width] = cache.k[slots, :, start : start + width]
        cache.v[rows, :, start : start + width] = cache.v[slots, :, start : start + width]


def _run_rows(model: GPT, inputs: Sequence[Sequence[int]], offsets: Sequence[int], width: int) -> torch.Tensor:
    """Hidden states of ``inputs[r][offsets[r]:]`` (right-padded to ``width``), each row at its own positions on
    top of what its cache row holds."""
    device = _device(model)
    idx = _padded([tokens[offset:] for tokens, offset in zip(inputs, offsets)], width).to(device)
    positions = torch.tensor(offsets, device=device)[:, None] + torch.arange(width, device=device)
    return _hidden(model, idx, positions, max(offsets) + width)


def _padded(sequences: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """The sequences as one tensor of token ids, right-padded with zeros to ``width``."""
    idx = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, tokens in enumerate(sequences):
        idx[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return idx


def _hidden(model: GPT, idx: torch.Tensor, input_pos: torch.Tensor, input_pos_maxp1: int) -> torch.Tensor:
    """``GPT.forward`` with a KV cache, stopping before the LM head: final-norm hidden states."""
    cos = batched_index_select(model.cos, 0, input_pos)
    sin = batched_index_select(model.sin, 0, input_pos)
    if input_pos.dim() == 1:
        cos, sin = cos.unsqueeze(0), sin.unsqueeze(0)
    mask = batched_index_select(model.mask_cache, 2, input_pos)
    if mask.dim() > 4:
        mask = mask.view(*(mask.shape[0:1] + mask.shape[2:]))
    mask = mask[..., :input_pos_maxp1]
    config = model.config
    x = model.transformer.wte(idx)
    if config.scale_embeddings:
        x = x * torch.tensor(config.n_embd**0.5, dtype=x.dtype)
    return model.transformer.ln_f(run_blocks(model, x, cos, sin, mask, input_pos, input_pos_maxp1))


def run_blocks(
    model: GPT, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
    input_pos: torch.Tensor | None = None, input_pos_maxp1: int | None = None,
) -> torch.Tensor:
    """The transformer blocks on ``x``, each with its layer's part of the RoPE cache; with ``input_pos``, on the
    KV cache."""
    rope_indices = getattr(model.config, "rope_indices", None)
    for i, block in enumerate(model.transformer.h):
        c, s = (cos, sin) if rope_indices is None else (cos[..., rope_indices[i]], sin[..., rope_indices[i]])
        x = block(x, c, s, mask, input_pos, input_pos_maxp1)
    return x


def _logits(model: GPT, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.lm_head(hidden)
    if model.config.final_logit_softcapping is not None:
        logits = do_softcapping(logits, model.config.final_logit_softcapping)
    return logits.float()
