"""Tokenizing prompts exactly as lm-evaluation-harness does, and checking they fit the model.

A prompt starts with a BOS token when the model's Hugging Face tokenizer adds one by default (lm-eval's
``add_bos_token=None``), or as the task's ``add_bos`` says.

lm-eval encodes a (context, continuation) pair by moving the context's trailing whitespace to the
continuation, encoding the whole string and the context separately, and taking the continuation
tokens as ``whole[len(context_tokens):]``; the model input is ``context_tokens + continuation_tokens``
(without the last token). ``encode_pair`` reproduces that rule; ``PromptEncoder`` applies it to the prompts of a
task (``plan.encode_task`` to every prompt once, so repeated evaluations during training only run the model), and
cuts each retrieved document to the context's ``max_tokens`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from litgpt import Tokenizer

from lightning_adapt.icl.metrics import RESPONSE_LOGPROB
from lightning_adapt.icl.prompts import Prompt
from lightning_adapt.icl.task import ICLTaskError, TaskData
from lightning_adapt.model.loading import bos_rule, encode_text


def encode_pair(
    tokenizer: Tokenizer, context: str, continuation: str, add_bos: bool
) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) with lm-eval's boundary rule; `add_bos`: start the context with BOS."""
    prefix = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id
    if context == "":  # like lm-eval, condition an empty context on BOS (or, without one, the end-of-text token),
        ids = encode_text(tokenizer, continuation, False)  # unless the continuation starts with that token
        return ([prefix], ids) if ids[:1] != [prefix] else (ids[:1], ids[1:])
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = encode_text(tokenizer, context + continuation, add_bos)
    context_ids = encode_text(tokenizer, context, add_bos)
    if not context_ids:  # a context of whitespace only
        return [prefix], whole
    return context_ids, whole[len(context_ids) :]


@dataclass(frozen=True)
class Encoded:
    """A tokenized prompt: context tokens and one continuation per choice (none for generation)."""

    prompt: Prompt
    context: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...] = ()
    reference: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    """A generation task's reference answer scored for ``response_logprob``: (context tokens, continuation tokens)
    with lm-eval's pair rule, as a choice is; None when the task does not score it."""

    def input_length(self, max_new_tokens: int = 0) -> int:
        """Tokens the model must attend to: the longest context + continuation (or generated reply), minus the last
        token."""
        longest = max((len(c) for c in self.continuations), default=0)
        scored = len(self.reference[0]) + len(self.reference[1]) - 1 if self.reference else 0
        return max(len(self.context) + max(longest, max_new_tokens) - 1, scored)


class PromptEncoder:
    """Encodes prompts of one task, memoizing repeated contexts (k=0 prompts repeat across seeds)."""

    def __init__(self, data: TaskData, tokenizer: Tokenizer) -> None:
        self.data, self.tokenizer = data, tokenizer
        self.add_bos = bos_rule(tokenizer, data.task.add_bos)
        self.cache: dict[tuple[str, tuple[str, ...]], Encoded] = {}
        self.generate = data.task.generate
        self.documents: dict[int, str] = {}

    def document(self, index: int) -> str:
        """Document ``index`` of the task's collection as a prompt holds it: its first ``context.max_tokens`` tokens
        (the kept tokens decoded; a shorter document whole) through the context's template."""
        if index not in self.documents:
            context, document = self.data.task.context, self.data.documents[index]
            ids = encode_text(self.tokenizer, document.text, False)
            text = document.text
            if len(ids) > context.max_tokens:
                text = self.tokenizer.decode(torch.tensor(ids[: context.max_tokens], dtype=torch.long))
            self.documents[index] = context.render(document, text)
        return self.documents[index]

    def __call__(self, prompt: Prompt, choices: list[str]) -> Encoded:
        scored = self.generate is not None and RESPONSE_LOGPROB in self.generate.metrics
        reference = self.data.task.answer(self.data.queries[prompt.query])[1] if scored else None
        key = (prompt.context, tuple(choices), reference)
        if key not in self.cache:
            if self.generate is not None:
                context = encode_text(self.tokenizer, prompt.context, self.add_bos)
                pair = self._pair(prompt, reference, "the reference answer") if reference is not None else None
                self.cache[key] = Encoded(prompt, tuple(context), reference=pair)
            else:
                pairs = [self._pair(prompt, c, f"choice {c!r}") for c in choices]
                self.cache[key] = Encoded(prompt, pairs[0][0], tuple(p[1] for p in pairs))
        cached = self.cache[key]
        return cached if cached.prompt == prompt else replace(cached, prompt=prompt)

    def _pair(self, prompt: Prompt, answer: str, what: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(context, continuation) tokens of the prompt and ``target_delimiter + answer`` (``encode_pair``)."""
        delimiter = self.data.task.target_delimiter
        context, continuation = encode_pair(self.tokenizer, prompt.context, delimiter + answer, self.add_bos)
        if not continuation:
            raise ICLTaskError(
                f"ICL task {self.data.task.name!r}: query {self.data.query_where[prompt.query]}: {what} has no tokens "
                "of its own (it merges into the context); use a target_delimiter such as ' '"
            )
        return tuple(context), tuple(continuation)
