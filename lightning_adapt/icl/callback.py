"""``ICLEvaluation``: k-shot evaluation of the live weights before training and after every validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from litgpt.prompts import PromptStyle

from lightning_adapt.distributed.deepspeed_zero import DeepSpeedStrategy
from lightning_adapt.icl.results import ICLResults
from lightning_adapt.icl.runner import ICLRunner, evaluation_mode, with_overrides
from lightning_adapt.icl.scoring import BATCH_SIZE
from lightning_adapt.icl.specs import TaskSpec
from lightning_adapt.icl.task import TaskData
from lightning_adapt.record.predictions import write_predictions
from lightning_adapt.distributed.sharding import gathered_root, is_fsdp1, is_sharded


class ICLEvaluation(L.Callback):
    """Scores ICL tasks (``ICLTask``, or lm-eval's through ``LMEvalTask``) on the model being trained: once before
    the first training step (the pure-ICL baseline at step 0) and after every ``every_n_validations``-th validation.

    Protocol: the LightningModule exposes

    - ``model``: a ``litgpt.GPT`` (a technique's too: ``litgpt.lora.GPT``, ``litgpt.adapter_v2.GPT``), available
      once ``configure_model`` ran;
    - ``tokenizer``: the ``litgpt.Tokenizer`` of that model.

    Logs through every Trainer logger at the global step, and into ``trainer.callback_metrics``
    (so ``ModelCheckpoint``/``EarlyStopping`` can monitor them):
    ``icl/<task>/<metric>@k<K>`` (mean over seeds), ``icl/<task>/<metric>_std@k<K>``,
    ``icl/<task>/prompt_tokens@k<K>``, ``icl/<task>/seconds`` and, for an ``ICLTask``, ``icl/<task>/queries`` (the
    queries scored) (`Accounting` logs the training tokens and FLOPs spent so far at the same step); a task with a
    ``context`` logs each number of documents D as ``@k<K>d<D>``. With
    ``log_predictions`` rank zero writes ``<log_dir>/icl_predictions/step-<global step>.jsonl`` (one record per task,
    k, documents, seed, query; ``general_predictions/`` for ``general`` tasks).

    Task data is loaded and validated when the callback is constructed; prompts are tokenized and
    checked against the model's context at fit start, so bad input fails before any training.
    Under DDP the (query, choice) requests are sharded across ranks and gathered; every rank takes
    part. Under FSDP2 and FSDP1 (``--trainer.strategy fsdp2`` / ``fsdp``) every rank runs the same forward passes
    in lockstep, with the same results as one process; under DeepSpeed stage 3 (``deepspeed_stage_3``) the
    parameters are gathered whole on every rank for the evaluation. Train/eval modes, ``requires_grad``, the torch
    CPU/CUDA RNG state, the RoPE cache and
    ``max_seq_length`` are restored and the KV cache cleared, so training is unchanged by the callback.

    An evaluation budget: with ``subsample=N`` the evaluations between the first and the last score each ``ICLTask``
    on a seeded subset of N of its queries (``TaskData.subsample``: the same queries at every evaluation and in every
    run of the task, so points pair across runs); the step-0 evaluation and the run's last point score every query —
    the validation at ``max_steps``, or, when the run ends after its last evaluation (``max_epochs``, early stopping,
    ``every_n_validations`` skipping the last validation), an evaluation at the end of training at the final step.
    Reports mark the subsampled points and make no choice on them.
    """

    def __init__(
        self,
        tasks: TaskSpec | list[TaskSpec],
        shots: list[int] | None = None,
        seeds: list[int] | None = None,
        every_n_validations: int = 1,
        batch_size: int = BATCH_SIZE,
        log_predictions: bool = True,
        general: bool = False,
        top_k: list[int] | None = None,
        subsample: int | None = None,
    ) -> None:
        """
        Args:
            tasks: The task(s) to evaluate: ``ICLTask``s and lm-eval tasks (``LMEvalTask``).
            shots: Overrides every task's ``shots`` (numbers of demonstrations k).
            seeds: Overrides every task's ``seeds`` (one demonstration set per seed).
            every_n_validations: Evaluate after every n-th validation (the step-0 baseline always runs).
            batch_size: Sequences per forward pass.
            log_predictions: Write per-query predictions as JSONL under the log directory.
            general: The tasks measure general ability (e.g. lm-eval benchmarks), not the task being adapted to:
                reports show their change as forgetting instead of comparing methods on them.
            top_k: Overrides the ``context.top_k`` (numbers of retrieved documents in the prompt) of every task that
                has a ``context``.
            subsample: Queries per ``ICLTask`` scored at the evaluations between step 0 and the last point (a
                seeded subset, the same every time); None: every query at every evaluation. lm-eval tasks score every
                document (their ``limit`` fixes a subset).
        """
        if every_n_validations < 1 or batch_size < 1:
            raise ValueError("ICLEvaluation: every_n_validations and batch_size must be >= 1")
        if subsample is not None and (isinstance(subsample, bool) or not isinstance(subsample, int) or subsample < 1):
            raise ValueError(
                f"ICLEvaluation(subsample={subsample!r}): give the number of queries per task (an integer >= 1) to "
                "score at the evaluations between step 0 and the last, or None to score every query every time"
            )
        self.runner = ICLRunner(with_overrides(tasks, shots, seeds, top_k=top_k))
        self.every_n_validations = every_n_validations
        self.batch_size = batch_size
        self.log_predictions = log_predictions
        self.general = general
        self.subsample = subsample
        self.results: ICLResults | None = None
        """The latest evaluation's results."""
        self._validations = 0
        self._full_step: int | None = None
        """The step of the latest evaluation that scored every query (None: none yet in this fit)."""
        whole = [data.task.name for data in self.runner.data if not isinstance(data, TaskData)]
        if subsample is not None and whole:
            rank_zero_warn(f"ICLEvaluation(subsample={subsample}): lm-eval task(s) {', '.join(whole)} score every "
                           "document at every evaluation (subsampling applies to ICLTasks; set their `limit`)")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from litgpt import GPT, Tokenizer

        model, tokenizer = getattr(pl_module, "model", None), getattr(pl_module, "tokenizer", None)
        if not isinstance(model, GPT) or not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"ICLEvaluation needs {type(pl_module).__name__} to expose `model` (a litgpt GPT, built by "
                f"configure_model) and `tokenizer` (a litgpt Tokenizer); got {type(model).__name__} and "
                f"{type(tokenizer).__name__}"
            )
        check_strategy(trainer.strategy, model)
        self.runner.prepare(tokenizer, model.config.block_size)
        if not self.general:
            warn_prompt_style(trainer.datamodule, self.evaluated_tasks)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._full_step = None
        self._evaluate(trainer, pl_module, full=trainer.global_step == 0 or _at_max_steps(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        self._validations += 1
        if self._validations % self.every_n_validations == 0:
            self._evaluate(trainer, pl_module, full=_at_max_steps(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """With a ``subsample``, the run's last point scores every query: evaluated here unless the last evaluation
        was a full one at the final step."""
        if self.subsample is not None and self._full_step != trainer.global_step:
            self._evaluate(trainer, pl_module, full=True)

    @property
    def evaluated_tasks(self) -> list[TaskSpec]:
        """The tasks this callback scores; `Accounting` lists them in the run record (as general tasks when
        `general`)."""
        return [data.task for data in self.runner.data]

    @property
    def state_key(self) -> str:
        """Unique per task set, shots, seeds and numbers of documents, so that several ICLEvaluation callbacks can
        share a Trainer."""
        evaluated = [
            (data.task.name, data.task.shots, data.task.seeds, *_top_k(data.task)) for data in self.runner.data
        ]
        budget = {} if self.subsample is None else {"subsample": self.subsample}  # old keys unchanged without one
        return self._generate_state_key(tasks=evaluated, every_n_validations=self.every_n_validations, **budget)

    def state_dict(self) -> dict[str, Any]:
        return {"validations": self._validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._validations = state_dict["validations"]

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule, full: bool) -> None:
        """Score the tasks on the live weights at the global step: every query when `full`, else the subsample."""
        # eval mode, no gradients and the RNG restored also around gathering the root (FSDP2's root pass)
        with trainer.precision_plugin.forward_context(), evaluation_mode(pl_module.model), \
                gathered_root(trainer.strategy.model):
            results = self.runner.run(
                pl_module.model,
                pl_module.tokenizer,
                self.batch_size,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                gather=_all_gather if trainer.world_size > 1 else None,
                subsample=None if full else self.subsample,
            )
        if full:
            self._full_step = trainer.global_step
        metrics = results.metrics()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        trainer.callback_metrics.update({name: torch.tensor(value) for name, value in metrics.items()})
        if self.log_predictions:
            log_dir = trainer.log_dir  # a broadcast: every rank must ask
            if trainer.is_global_zero:
                write_predictions(Path(log_dir or trainer.default_root_dir), trainer.global_step, results.predictions,
                                  self.general)
        self.results = results


class PromptStyleWarning(UserWarning):
    """The run trains on prompts in another format than the one its ICL tasks are scored on."""


def training_prompt_style(datamodule: Any) -> PromptStyle | None:
    """The prompt style the training data renders its examples with (`Instructions.style`, a LitGPT data module's
    `prompt_style`); None for data without one (raw text)."""
    style = getattr(datamodule, "style", None) or getattr(datamodule, "prompt_style", None)
    return style if isinstance(style, PromptStyle) else None


def warn_prompt_style(datamodule: Any, tasks: list[TaskSpec]) -> None:
    """Warn when the training data wraps its prompts in a prompt style (a chat template, Alpaca's header) while the
    tasks are scored on their raw templates: a score after training would be measured on another format than the one
    trained."""
    style = training_prompt_style(datamodule)
    marker = "\x00prompt\x00"
    if style is None or style.apply(marker) == marker or not tasks:
        return
    example = style.apply("Review: ...\nSentiment:")
    rank_zero_warn(
        f"The training data renders every prompt in prompt style {type(style).__name__} (e.g. {example!r}), but ICL "
        f"tasks {', '.join(task.name for task in tasks)} are scored on their raw templates: scores after training "
        "are measured on another format than the one trained. To train on the prompts the tasks score, set the "
        "data's prompt_style to `default` (Instructions(prompt_style=\"default\"), the default for instruction "
        "rows).", category=PromptStyleWarning,
    )


def check_strategy(strategy: Strategy, model: torch.nn.Module) -> None:
    """Refuse what scoring cannot run on: DeepSpeed stage 3 other than `lightning_adapt.DeepSpeedStrategy` and FSDP1
    other than `FSDP1Strategy` (their sharded
    parameters are only gathered inside the wrapper's own forward, or wrapped in units we do not know), and parameters
    sharded other than by FSDP per block and at the root (e.g. tensor parallelism). FSDP models are scored in
    lockstep (see ``icl/lockstep.py``)."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    name = type(strategy).__name__
    stage_3 = getattr(strategy, "zero_stage_3", False) and not isinstance(strategy, DeepSpeedStrategy)
    if (isinstance(strategy, FSDPStrategy) and not is_fsdp1(strategy)) or stage_3:
        raise NotImplementedError(
            f"ICLEvaluation does not support {name} yet: train with --trainer.strategy fsdp2 or fsdp (lightning-adapt's "
            "FSDP strategies, scored in lockstep on every process) or ddp, or evaluate the saved checkpoint afterwards "
            "with `lightning-adapt icl`."
        )
    if is_fsdp1(strategy) and not all(isinstance(block, FullyShardedDataParallel) for block in model.transformer.h):
        raise NotImplementedError(
            f"ICLEvaluation scores FSDP1 models only when every transformer block is its own unit ({name}'s default "
            "auto_wrap_policy); this model's blocks are wrapped otherwise. Evaluate the saved checkpoint with "
            "`lightning-adapt icl`."
        )
    distributed = any(isinstance(p, DTensor) for p in model.parameters())
    if distributed and not (is_sharded(model) and all(is_sharded(block) for block in model.transformer.h)):
        raise NotImplementedError(
            f"ICLEvaluation scores sharded models only when every transformer block and the root are FSDP2 units "
            f"(`fully_shard`), as lightning-adapt's modules do under --trainer.strategy fsdp2; this {name} model is "
            "sharded otherwise (tensor parallelism?). Evaluate the saved checkpoint with `lightning-adapt icl`."
        )


def _at_max_steps(trainer: L.Trainer) -> bool:
    """Whether training has reached the Trainer's ``max_steps`` (an evaluation there is the run's last point)."""
    return 0 <= trainer.max_steps <= trainer.global_step


def _top_k(task: TaskSpec) -> list[list[int]]:
    """The task's numbers of documents, as a state key part (none without a context, so old keys are unchanged)."""
    context = getattr(task, "context", None)
    return [context.top_k] if context is not None else []


def _all_gather(local: list[Any]) -> list[list[Any]]:
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, local)
    return parts
