"""lightning-adapt's generation metrics of lm-eval `generate_until` tasks, beside lm-eval's own (`generation_metrics`).

Per logged sample (one per document and filter), as lightning-adapt's own generation tasks define them:

- `chrf`, `rougeL` (`lightning_adapt.icl.metrics`): the sample's first filtered response against the document's
  reference;
- `response_logprob`: the mean per-token log-likelihood of the reference given the document's context, scored as
  lm-eval would score it — the request (context, target_delimiter + reference) through `ScorerLM.loglikelihood`,
  its tokens counted by `encode_pair`; left out where that continuation alone is longer than the model's context;
- `generated_tokens` (`GENERATED_TOKENS`): the tokens the model generated for the document (EOS counted, a stop
  string's tokens included), with or without a reference.

The reference is lm-eval's target as its `process_results` reads it: with `doc_to_choice`, the choice a number
names; of a list of targets (`multiple_target`), the FIRST only; a number, as text. A document whose target is
none of these, or blank, has no reference and gets no reference metrics. A metric lm-eval's own task reports under
the same name (e.g. its corpus-level `chrf`) keeps lm-eval's value: ours is not added.
"""

from __future__ import annotations

import statistics
from typing import Any

from lightning_adapt.icl.keys import GENERATED_TOKENS
from lightning_adapt.icl.metrics import RESPONSE_LOGPROB, chrf, rouge_l

from lightning_adapt_lm_eval.model import ScorerLM

TEXT_METRICS = {"chrf": chrf, "rougeL": rouge_l}
"""Metrics of a filtered response against the reference (one value per filter)."""
PER_DOCUMENT = (RESPONSE_LOGPROB, GENERATED_TOKENS)
"""Metrics of the document, the same under every filter (so a row's mean of them is one per document)."""


def generation_metrics(lm: ScorerLM, tasks: dict[str, Any], samples: dict[str, list[dict[str, Any]]]
                       ) -> dict[str, list[dict[str, float]]]:
    """Our metrics of each logged sample of lm-eval's `samples` (by leaf task name, as `evaluate` logs them), in the
    same order; none for the samples of a task that does not generate. `lm` is the model that just answered them
    (its `generated_tokens`); the log-likelihoods it is asked for run on its scorer."""
    metrics: dict[str, list[dict[str, float]]] = {}
    pairs: dict[tuple[str, int], tuple[str, str]] = {}  # (task, doc_id) -> (context, continuation), once per document
    for name, logged in samples.items():
        task = tasks[name]
        generates = task.get_config("output_type") == "generate_until"
        metrics[name] = [_sample_metrics(lm, task, sample, pairs, name) if generates else {} for sample in logged]
    logprobs = dict(zip(pairs, lm.mean_loglikelihoods(list(pairs.values()))))
    for name, logged in samples.items():
        for sample, values in zip(logged, metrics[name]):
            logprob = logprobs.get((name, sample["doc_id"]))
            if logprob is not None and RESPONSE_LOGPROB not in sample["metrics"]:
                values[RESPONSE_LOGPROB] = logprob
    return metrics


def reference(task: Any, sample: dict[str, Any]) -> str | None:
    """The document's reference text (see the module docstring), or None."""
    target = sample["target"]
    if task.config.doc_to_choice is not None and isinstance(target, int):
        target = task.doc_to_choice(sample["doc"])[target]
    if isinstance(target, (list, tuple)):
        target = target[0] if target else None
    if isinstance(target, (int, float)):
        target = str(target)
    return target if isinstance(target, str) and target.strip() else None


def _sample_metrics(lm: ScorerLM, task: Any, sample: dict[str, Any], pairs: dict[tuple[str, int], tuple[str, str]],
                    name: str) -> dict[str, float]:
    """`generated_tokens` and the text metrics of one sample of task `name`; its document's log-likelihood request
    put in `pairs`."""
    context, gen_kwargs = sample["arguments"][0][:2]
    values = {GENERATED_TOKENS: lm.generated_tokens[(context, lm.generation_settings(gen_kwargs))]}
    target = reference(task, sample)
    if target is not None:
        pairs[(name, sample["doc_id"])] = (context, f"{task.config.target_delimiter}{target}")
        response = sample["filtered_resps"][0]
        if isinstance(response, (list, tuple)):  # a filter that keeps every repeat
            response = response[0] if response else None
        if isinstance(response, str):
            values |= {metric: score(response, target) for metric, score in TEXT_METRICS.items()}
    return {metric: value for metric, value in values.items() if metric not in sample["metrics"]}


def row_means(samples: dict[str, list[dict[str, Any]]], metrics: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """The means of `generation_metrics` over the samples that have them, named as lm-eval's row names a metric
    (`chrf`, under a filter other than "none" `chrf:<filter>`), the per-document metrics once per document."""
    values: dict[str, list[float]] = {}
    for name, logged in samples.items():
        for sample, ours in zip(logged, metrics[name]):
            for metric, value in ours.items():
                plain = metric in PER_DOCUMENT or sample["filter"] == "none"
                values.setdefault(metric if plain else f"{metric}:{sample['filter']}", []).append(value)
    return {key: statistics.fmean(numbers) for key, numbers in values.items()}
