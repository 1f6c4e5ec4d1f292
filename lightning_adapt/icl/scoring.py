"""Running a LitGPT model for ICL: log-likelihoods and greedy generation, sharing prompt prefixes.

Requests whose inputs are equal or extend one another share a row (all single-token choices of a
query are read from one sequence). Rows are grouped (by demonstration set), groups ordered by their
tokens, and each group's rows batched longest first. For a batch, the longest common token prefix
of its rows (capped so every row keeps its last context token) is run once, with batch size 1, into
LitGPT's KV cache and copied to every cache row; only the differing suffixes run batched on top of
it, and the next batch recomputes only the part of its prefix not already cached. Because the
prefix is found on tokens, not text, the inputs are exactly those of a separate forward per
sequence. The LM head is applied only to the hidden states that predict continuation tokens.

``scores`` adds lm-evaluation-harness's ``is_greedy`` to each log-likelihood.
``naive_loglikelihood`` and ``naive_generate`` are the references: one full forward per sequence
(per step), which is what lm-evaluation-harness does. Tests and the benchmark compare against them;
models with sliding-window attention (whose ring-buffer cache does not fit the copy) use them too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
from litgpt import GPT
from litgpt.model import batched_index_select, do_softcapping

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    """A token sequence to score from ``start`` on (log-likelihood), or to continue (generation:
    ``start == len(tokens)``). Requests with the same ``group`` are batched together."""

    tokens: tuple[int, ...]
    start: int
    group: Hashable = None


def loglikelihoods(
    model: GPT, requests: Sequence[Request], batch_size: int = 16, on_batch: Callable[[int], None] | None = None
) -> list[float]:
    """Sum of log-probabilities of ``tokens[start:]`` given ``tokens[:start]``, per request. ``on_batch`` is told
    how many requests each finished forward pass scored (for progress bars)."""
    return [logprob for logprob, _ in scores(model, requests, batch_size, on_batch)]


@torch.no_grad()
def scores(
    model: GPT, requests: Sequence[Request], batch_size: int = 16, on_batch: Callable[[int], None] | None = None
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
    with _kv_cache(model, batch_size, max(len(fed) for fed, _, _ in rows)):
        cache = _PrefixCache(model)
        for batch in _batches([(fed, group) for fed, group, _ in rows], batch_size):
            inputs = [rows[j][0] for j in batch]
            reads = [(row, i) for row, j in enumerate(batch) for i in rows[j][2]]
            prefix = min(_common_prefix(inputs), min(requests[i].start for _, i in reads) - 1)
            cache.extend(inputs[0][:prefix])
            hidden = _run_suffixes(model, inputs, prefix)
            for (_, i), value in zip(reads, _score_reads(model, hidden, [(r, requests[i]) for r, i in reads], prefix)):
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
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy continuation of each request, ending at ``eos_id``, a ``stop`` string (cut off) or
    ``max_new_tokens``. ``on_batch`` is told how many requests each finished batch completed."""
    if not requests:
        return []
    on_batch = on_batch or _ignore
    if not _can_share_prefix(model):
        return [
            _counted(naive_generate(model, r.tokens, max_new_tokens, stop, eos_id, decode), on_batch) for r in requests
        ]
    out = [""] * len(requests)
    device = _device(model)
    with _kv_cache(model, batch_size, max(len(r.tokens) for r in requests) + max_new_tokens - 1):
        cache = _PrefixCache(model)
        for batch in _batches([(r.tokens, r.group) for r in requests], batch_size):
            inputs = [requests[i].tokens for i in batch]
            prefix = min(_common_prefix(inputs), min(len(t) for t in inputs) - 1)
            cache.extend(inputs[0][:prefix])
            hidden = _run_suffixes(model, inputs, prefix)
            last = torch.tensor([len(t) - 1 - prefix for t in inputs], device=device)
            next_tokens = _logits(model, hidden[torch.arange(len(inputs), device=device), last]).argmax(-1)
            positions = torch.tensor([len(t) for t in inputs], device=device)
            generated: list[list[int]] = [[] for _ in inputs]
            done = [False] * len(inputs)
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
                out[i] = _text(tokens, stop, eos_id, decode)
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
) -> str:
    """Reference greedy generation: a full forward over the whole sequence for every new token."""
    sequence, generated = list(tokens), []
    with _kv_cache(model, 0, len(tokens) + max_new_tokens - 1):
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([sequence], device=_device(model)))[0, -1]
            generated.append(int(logits.argmax()))
            sequence.append(generated[-1])
            if _finished(generated, stop, eos_id, decode):
                break
    return _text(generated, stop, eos_id, decode)


def _score_reads(
    model: GPT, hidden: torch.Tensor, reads: list[tuple[int, Request]], prefix: int
) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each request read from row ``row`` of ``hidden`` (positions after
    ``prefix``); the LM head runs once per distinct hidden state that predicts a continuation token."""
    device = hidden.device
    read_ids, flat, targets = [], [], []
    for n, (row, request) in enumerate(reads):
        tokens, start = request.tokens, request.start
        read_ids += [n] * (len(tokens) - start)
        flat += [row * hidden.shape[1] + p for p in range(start - 1 - prefix, len(tokens) - 1 - prefix)]
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


def _batches(items: Sequence[tuple[Sequence[int], Hashable]], batch_size: int) -> list[list[int]]:
    """Indices of ``(tokens, group)`` items batched within groups, groups in token order, longest first."""
    groups: dict[Hashable, list[int]] = {}
    for i, (_, group) in enumerate(items):
        groups.setdefault(group, []).append(i)
    batches = []
    for members in sorted(groups.values(), key=lambda m: tuple(items[m[0]][0])):
        members.sort(key=lambda i: -len(items[i][0]))
        batches += [members[j : j + batch_size] for j in range(0, len(members), batch_size)]
    return batches


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


def _run_suffixes(model: GPT, inputs: Sequence[Sequence[int]], prefix: int) -> torch.Tensor:
    """Hidden states of ``inputs[i][prefix:]`` (right-padded) on top of the cached prefix."""
    width = max(len(t) for t in inputs) - prefix
    idx = torch.zeros((len(inputs), width), dtype=torch.long)
    for i, tokens in enumerate(inputs):
        idx[i, : len(tokens) - prefix] = torch.tensor(tokens[prefix:])
    device = _device(model)
    return _hidden(model, idx.to(device), torch.arange(prefix, prefix + width, device=device), prefix + width)


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
    rope_indices = getattr(config, "rope_indices", None)
    for i, block in enumerate(model.transformer.h):
        c, s = (cos, sin) if rope_indices is None else (cos[..., rope_indices[i]], sin[..., rope_indices[i]])
        x = block(x, c, s, mask, input_pos, input_pos_maxp1)
    return model.transformer.ln_f(x)


def _logits(model: GPT, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.lm_head(hidden)
    if model.config.final_logit_softcapping is not None:
        logits = do_softcapping(logits, model.config.final_logit_softcapping)
    return logits.float()
