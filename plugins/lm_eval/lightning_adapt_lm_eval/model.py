"""lm-evaluation-harness's model interface on lightning-adapt's scorer: `ScorerLM` (any model being evaluated, e.g.
inside `ICLEvaluation` during training) and `LightningAdaptLM` (`lm_eval --model lightning-adapt`, a checkpoint
folder).

lm-eval builds the requests (prompts, few-shot samples, choices) and aggregates the metrics; `ScorerLM` turns each
request into tokens exactly as lm-eval's Hugging Face model (`HFLM`) does — the same BOS rule (`bos_rule`), the
same context/continuation split (`encode_pair`), an empty context conditioned on BOS (else EOS), left truncation to
the model's context, the same rolling windows for perplexity — and runs them through a `Scorer`
(`lightning_adapt.icl.runner`), which shares the KV cache of common prompt prefixes (requests are grouped by
context, groups run in token order, so few-shot prompts with the same demonstrations reuse them) and, under data
parallelism, shares the requests between ranks. Tokenizations are kept, so repeated evaluations only run the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning_adapt.icl.encoding import encode_pair
from lightning_adapt.icl.scorer import Scorer
from lightning_adapt.icl.scoring import BATCH_SIZE, Request
from lightning_adapt.model.loading import bos_rule, encode_text, load_config, load_model, load_tokenizer, resolve_checkpoint_dir
from lightning_adapt.core.plugins import PLUGIN_HINTS
from litgpt import Tokenizer

try:
    from lm_eval import utils
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs
except ModuleNotFoundError as error:  # only the lm-eval import itself is ours to explain
    if error.name is None or not error.name.startswith("lm_eval"):
        raise
    raise ModuleNotFoundError(
        f"The lightning-adapt model for lm-evaluation-harness needs the lm-eval package: {PLUGIN_HINTS['lm-eval']}"
    ) from error

MAX_GEN_TOKS = 256
"""lm-eval's default number of generated tokens when a task sets no `max_gen_toks` (HFLM's)."""
PROGRESS_NAME = "lm-eval"
"""The label of the scorer's progress bar."""
Settings = tuple[tuple[str, ...], int]
"""A generation request's (stop strings, max_gen_toks)."""


class ScorerLM(LM):
    """An lm-eval model whose requests are scored by `scorer` (set it before lm-eval calls the model)."""

    def __init__(self, tokenizer: Tokenizer, add_bos: bool | None, max_length: int, scorer: Scorer | None = None):
        """
        Args:
            tokenizer: The model's tokenizer (`lightning_adapt.model.loading.load_tokenizer`).
            add_bos: Start every request with BOS; None: the model's Hugging Face rule, lm-eval's default.
            max_length: The model's context in tokens (longer inputs are cut from the left, as HFLM does).
            scorer: Scores the requests on the model being evaluated.
        """
        super().__init__()
        self.tokenizer, self.max_length, self.scorer = tokenizer, int(max_length), scorer
        self.add_bos = bos_rule(tokenizer, add_bos)
        self._pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
        self._texts: dict[str, list[int]] = {}
        self.generated_tokens: dict[tuple[str, Settings], int] = {}
        """Tokens generated (EOS and stop strings included) per (context, `generation_settings`) of the last
        `generate_until` call."""

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is conditioned on (and rolling windows start from): BOS, else EOS, as in HFLM."""
        return self.tokenizer.bos_id if self.tokenizer.bos_id is not None else self.tokenizer.eos_id

    def tok_encode(self, text: str) -> list[int]:
        if text not in self._texts:
            self._texts[text] = encode_text(self.tokenizer, text, self.add_bos)
        return self._texts[text]

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(torch.tensor(list(ids), dtype=torch.long))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens) as HFLM splits them (`lightning_adapt.icl.encoding.encode_pair`)."""
        if (context, continuation) not in self._pairs:
            self._pairs[(context, continuation)] = encode_pair(self.tokenizer, context, continuation, self.add_bos)
        return self._pairs[(context, continuation)]

    # ---------------------------------------------------------------- log-likelihoods

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results = self._score([self.encode_pair(*request.args) for request in requests])
        for request, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", request.args, result)
        return results

    def mean_loglikelihoods(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """Mean per-token log-likelihood of each (context, continuation), requested through `loglikelihood` as lm-eval
        requests it (tokens: `encode_pair`'s); None where the continuation alone does not fit `max_length`."""
        lengths = [len(self.encode_pair(*pair)[1]) for pair in pairs]
        fits = [n for n, length in enumerate(lengths) if 0 < length <= self.max_length]
        requests = [Instance("loglikelihood", doc={}, arguments=tuple(pairs[n]), idx=0) for n in fits]
        out: list[float | None] = [None] * len(pairs)
        for n, (logprob, _) in zip(fits, self.loglikelihood(requests)):
            out[n] = logprob / lengths[n]
        return out

    def _score(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[tuple[float, bool]]:
        """Score (context, continuation) token pairs, left-truncated to `max_length` + 1 tokens as HFLM does; the
        requests of one context form a group, so its choices run in one batch on top of its cached prefix."""
        requests = []
        for context, continuation in pairs:
            if not continuation or len(continuation) > self.max_length:
                raise ValueError(
                    f"A continuation of {len(continuation)} tokens cannot be scored with a context of {self.max_length}"
                )
            tokens = tuple([*context, *continuation][-(self.max_length + 1) :])
            requests.append(Request(tokens, len(tokens) - len(continuation), group=tuple(context)))
        return self.scorer.scores(PROGRESS_NAME, requests)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts, in lm-eval's disjoint rolling windows of `max_length` tokens."""
        windows, owners = [], []
        for n, request in enumerate(requests):
            (text,) = request.args
            rolling = utils.get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1,
            )
            for window in map(utils.make_disjoint_window, rolling):
                windows.append(window)
                owners.append(n)
        totals = [0.0] * len(requests)
        for n, (logprob, _) in zip(owners, self._score(windows)):
            totals[n] += logprob
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # ---------------------------------------------------------------- generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, cut at the first `until` string (and EOS), at most `max_gen_toks` tokens each.
        Requests with the same generation settings run together; how many tokens each generated is kept in
        `generated_tokens`."""
        by_settings: dict[Settings, list[int]] = {}
        contexts = []
        for n, request in enumerate(requests):
            context, gen_kwargs = request.args
            contexts.append(context)
            by_settings.setdefault(self.generation_settings(gen_kwargs), []).append(n)
        out = [""] * len(requests)
        self.generated_tokens = {}
        for (until, max_gen_toks), members in by_settings.items():
            max_context = self.max_length - max_gen_toks
            if max_context <= 0:
                raise ValueError(f"max_gen_toks={max_gen_toks} leaves no room in a context of {self.max_length}")
            batch = []
            for n in members:
                tokens = tuple(self.tok_encode(contexts[n])[-max_context:])
                batch.append(Request(tokens, len(tokens)))
            for n, generated in zip(members, self.scorer.generate(PROGRESS_NAME, batch, max_gen_toks, until)):
                out[n] = generated.text
                self.generated_tokens[(contexts[n], (until, max_gen_toks))] = generated.tokens
                self.cache_hook.add_partial("generate_until", requests[n].args, generated.text)
        return out

    def generation_settings(self, gen_kwargs: dict) -> Settings:
        """(stop strings with EOS's text, max_gen_toks) of a request's `gen_kwargs`; sampling is refused."""
        kwargs = normalize_gen_kwargs(dict(gen_kwargs), MAX_GEN_TOKS)
        if kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0:
            raise ValueError(f"The lightning-adapt model generates greedily only; the task asks for sampling ({gen_kwargs}).")
        eos = self.tokenizer.processor.decode([self.tokenizer.eos_id], skip_special_tokens=False)
        return tuple(handle_stop_sequences(kwargs.pop("until", None), eos=eos)), int(kwargs.pop("max_gen_toks"))


@register_model("lightning-adapt")
class LightningAdaptLM(ScorerLM):
    """A LitGPT checkpoint folder (base or fine-tuned `final/`) as an lm-eval model.

    `lm_eval --model lightning-adapt --model_args checkpoint_dir=out/finetune/final,batch_size=16 --tasks ...`
    (run through `lightning-adapt-lm-eval`, which registers the model) or, in Python,
    `lm_eval.simple_evaluate(model=LightningAdaptLM(checkpoint_dir=...), tasks=[...])`.
    """

    def __init__(
        self,
        checkpoint_dir: str,
        batch_size: int | str = BATCH_SIZE,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        add_bos: bool | str | None = None,
        max_length: int | None = None,
    ) -> None:
        """
        Args:
            checkpoint_dir: A LitGPT checkpoint folder (the built-in SmolLM2 folder is made when missing).
            batch_size: Sequences per forward pass (lm-eval's "auto" is read as the default, `BATCH_SIZE`).
            device: Where the model runs; default (or CUDA asked for where there is none) CUDA when available, else CPU.
            dtype: Weights' dtype (e.g. float32, bfloat16); default float32.
            add_bos: Start every prompt with BOS; default the model's Hugging Face rule, lm-eval's default.
            max_length: Context in tokens (longer inputs are cut from the left); default the model's block size.
        """
        checkpoint_dir = resolve_checkpoint_dir(checkpoint_dir)
        config = load_config(checkpoint_dir)
        if device is None or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's command line always says cuda:0
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.removeprefix("torch."))
        if isinstance(add_bos, str):
            add_bos = {"true": True, "false": False, "none": None}[add_bos.lower()]
        tokenizer = load_tokenizer(checkpoint_dir)
        super().__init__(tokenizer, add_bos, max_length or config.block_size)
        self._device = torch.device(device)
        self.model = load_model(checkpoint_dir, config, device=self._device, dtype=dtype or torch.float32).eval()
        self.batch_size = BATCH_SIZE if str(batch_size).startswith("auto") else int(batch_size)
        self.scorer = Scorer(self.model, tokenizer, self.batch_size)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "LightningAdaptLM":
        """`--model_args` of the command line; see `create_from_arg_obj`."""
        return cls.create_from_arg_obj(utils.simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> "LightningAdaptLM":
        """lm-eval also passes its own `--batch_size` and `--device` (always set on the command line): they fill
        what `model_args` leaves out instead of clashing with it (`batch_size=16` in `model_args` wins);
        `max_batch_size` (for `--batch_size auto`) does not apply."""
        extra = {
            key: value for key, value in (additional_config or {}).items()
            if value is not None and key not in arg_dict and key != "max_batch_size"
        }
        return cls(**arg_dict, **extra)
