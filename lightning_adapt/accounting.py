"""What a run costs, measured: parameters changed, tokens, time, memory and FLOPs (from the model's configuration).

FLOPs are counted nanoGPT-style from the LitGPT config, 2 FLOPs per multiply-accumulate; element-wise work (norms,
activations, softmax, the loss) and the embedding lookup are not counted. For a sequence of T tokens:

Forward.  Every weight matrix W (in x out) on the token path costs 2·in·out per token: q/k/v, the attention output
projection, the MLP matrices (3 for LLaMA/Gemma MLPs, 2 for GPT-NeoX) in each of the n_layer blocks, and the LM head.
A LoRA adapter on W adds 2·r·(in + out) per token (its A and B matrices), i.e. 2 FLOPs per adapter parameter.
Attention adds, per layer and per query-key pair, 2·n_head·head_size for Q·Kᵀ and as much for A·V. A causal mask
keeps T(T+1)/2 of the T² pairs (a query attends to (T+1)/2 keys on average), so

    forward(T) = 2·N_matmul·T + n_layer · 4·n_head·head_size · T(T+1)/2        (causal=True, what flash kernels run)

with N_matmul the weight-matrix parameters (adapters included). `causal=False` counts all T² pairs, as the dense
"math" kernel and `torch.utils.flop_counter.FlopCounterMode` do.

Backward.  For y = x·Wᵀ the backward pass has two products of the forward's size: the activation gradient
dx = dy·W, needed whenever anything before W is trainable (W's input requires a gradient), and the weight gradient
dW = dyᵀ·x, needed only when W itself trains. So a weight matmul costs 0×, 1× or 2× its forward FLOPs in backward:

- full fine-tuning (every weight and the embedding train): 1× + 1× everywhere, backward = 2 × forward (the 6·N rule);
- LoRA: frozen W get 1× (activation gradient) from the first adapter on, and 0× before it (e.g. the first block's qkv
  when the embedding is frozen); adapters cost 2× their (small) forward; the frozen LM head still costs 1×. So
  backward ≈ 1 × forward and a LoRA step ≈ 2 × forward, not 3 ×;
- attention (two products of activations, Q·Kᵀ and A·V) costs 2× its forward once q, k or v require gradients.
  Flash kernels recompute Q·Kᵀ in backward (2.5×); that recomputation is not counted.

Training FLOPs count the padded batches the model actually computes: rows × training_flops(config, T).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, fields, is_dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from litgpt import Config

from lightning_adapt.atomic import atomic_write_text
from lightning_adapt.icl.task import ICLTask
from lightning_adapt.lora import LORA_TARGETS

RUN_INFO_FILE = "accounting.json"
"""Written by `Accounting` (and the ICL-only run) into the run's log directory, next to the metrics."""

_MLP_MATRICES = {"LLaMAMLP": 3, "GemmaMLP": 3, "GptNeoxMLP": 2}


@dataclass(frozen=True)
class _Matmul:
    """Forward FLOPs per token of one weight matrix and of the LoRA adapter on it (0 when it has none)."""

    weight: float
    adapter: float = 0.0

    def backward(self, input_requires_grad: bool, weight_trains: bool) -> float:
        """Activation gradient if the input needs one, weight gradient if the weight trains; an adapter costs 2×."""
        return self.weight * (int(input_requires_grad) + int(weight_trains)) + 2 * self.adapter


def _lora(config: Config, target: str) -> bool:
    """Whether `config` (a `litgpt.lora.Config`, or a plain one) puts an adapter on `target`."""
    return getattr(config, "lora_r", 0) > 0 and bool(getattr(config, f"lora_{target}", False))


def _is_lora(config: Config) -> bool:
    return any(_lora(config, target) for target in LORA_TARGETS)


def _matmul(config: Config, n_in: int, n_out: int, adapted: bool) -> _Matmul:
    return _Matmul(2.0 * n_in * n_out, 2.0 * config.lora_r * (n_in + n_out) if adapted else 0.0)


def _block(config: Config) -> tuple[_Matmul, _Matmul, list[_Matmul], _Matmul]:
    """(qkv, attention output projection, MLP input matrices, MLP output matrix) of one transformer block."""
    if config.mlp_class_name not in _MLP_MATRICES:
        raise ValueError(
            f"FLOP accounting knows the dense MLPs {sorted(_MLP_MATRICES)}; {config.name} uses {config.mlp_class_name}."
        )
    d, attn = config.n_embd, config.n_head * config.head_size
    parts = {"query": attn, "key": config.n_query_groups * config.head_size, "value": config.n_query_groups * config.head_size}
    adapted = {name: size for name, size in parts.items() if _lora(config, name)}
    qkv_adapter = 2.0 * config.lora_r * (len(adapted) * d + sum(adapted.values())) if adapted else 0.0
    qkv = _Matmul(2.0 * d * sum(parts.values()), qkv_adapter)
    proj = _matmul(config, attn, d, _lora(config, "projection"))
    mlp_in = [_matmul(config, d, config.intermediate_size, _lora(config, "mlp"))] * (_MLP_MATRICES[config.mlp_class_name] - 1)
    mlp_out = _matmul(config, config.intermediate_size, d, _lora(config, "mlp"))
    return qkv, proj, mlp_in, mlp_out


def _head(config: Config) -> _Matmul:
    return _matmul(config, config.n_embd, config.padded_vocab_size, _lora(config, "head"))


def _attention(config: Config, seq_len: float, causal: bool) -> float:
    """Forward FLOPs of Q·Kᵀ and A·V in one layer for one sequence."""
    pairs = seq_len * (seq_len + 1) / 2 if causal else seq_len**2
    return 4.0 * config.n_head * config.head_size * pairs


def forward_flops(config: Config, seq_len: float, causal: bool = True) -> float:
    """FLOPs of one forward pass over a sequence of `seq_len` tokens (LoRA adapters included when `config` has them)."""
    qkv, proj, mlp_in, mlp_out = _block(config)
    per_token = config.n_layer * sum(m.weight + m.adapter for m in (qkv, proj, *mlp_in, mlp_out))
    head = _head(config)
    return seq_len * (per_token + head.weight + head.adapter) + config.n_layer * _attention(config, seq_len, causal)


def backward_flops(config: Config, seq_len: float, causal: bool = True) -> float:
    """FLOPs of the backward pass over one sequence: LoRA adapters train when `config` has them, else every weight."""
    full = not _is_lora(config)
    qkv, proj, mlp_in, mlp_out = _block(config)
    attention = _attention(config, seq_len, causal)
    requires_grad = full  # the embedding's output needs a gradient only if the embedding trains
    per_token, per_sequence = 0.0, 0.0
    for _ in range(config.n_layer):
        block_in = requires_grad
        per_token += qkv.backward(block_in, full)
        qkv_out = block_in or full or qkv.adapter > 0
        per_sequence += 2 * attention if qkv_out else 0.0
        per_token += proj.backward(qkv_out, full)
        attention_out = qkv_out or full or proj.adapter > 0
        mlp_input = block_in if config.parallel_residual else block_in or attention_out
        per_token += sum(m.backward(mlp_input, full) for m in mlp_in)
        hidden = mlp_input or full or any(m.adapter > 0 for m in mlp_in)
        per_token += mlp_out.backward(hidden, full)
        requires_grad = block_in or attention_out or hidden or mlp_out.adapter > 0
    per_token += _head(config).backward(requires_grad, full)
    return seq_len * per_token + per_sequence


def training_flops(config: Config, seq_len: float, causal: bool = True) -> float:
    """Forward + backward FLOPs of one training sequence of `seq_len` tokens (see the module docstring)."""
    return forward_flops(config, seq_len, causal) + backward_flops(config, seq_len, causal)


def inference_flops(config: Config, prompt_tokens: float, answer_tokens: float = 1) -> float:
    """FLOPs to answer one query: a forward pass over the prompt and the answer tokens (with a KV cache, generating
    the answer token by token costs the same products). `prompt_tokens` may be a mean (e.g. an ICL evaluation's)."""
    return forward_flops(config, prompt_tokens + answer_tokens)


def base_config_dict(config: Config) -> dict[str, Any]:
    """The model's own config fields (without LoRA's), as `litgpt.Config(**d)` accepts them."""
    return {key: value for key, value in asdict(config).items() if not key.startswith("lora_")}


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's numbers depend on."""
    versions = {"python": platform.python_version()}
    for package in ("lightning-adapt", "torch", "lightning", "litgpt"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def memory_bytes(device: torch.device) -> int:
    """Peak CUDA memory allocated on `device` (since the last reset), or the process's current resident memory (RSS)
    on CPU, which callers sample and take the maximum of."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import psutil

    return int(psutil.Process().memory_info().rss)


def task_spec(task: ICLTask) -> dict[str, Any]:
    """An ICL task as plain data, its local data files as absolute paths (so runs launched elsewhere compare equal)."""
    spec = asdict(task)
    for key in ("queries", "demos"):
        if spec[key] is not None and Path(spec[key]["path"]).is_file():
            spec[key]["path"] = str(Path(spec[key]["path"]).resolve())
    return spec


def run_info(
    method: str,
    module: str | None,
    config: Config,
    checkpoint_dir: str | Path | None,
    tasks: list[ICLTask],
    **details: Any,
) -> dict[str, Any]:
    """What a report needs to know about a run besides its metrics: method, base model, ICL tasks, versions."""
    return {
        "method": method,
        "module": module,
        "checkpoint_dir": None if checkpoint_dir is None else str(Path(checkpoint_dir).resolve()),
        "model": config.name,
        "model_config": base_config_dict(config),
        "tasks": [task_spec(task) for task in tasks],
        **details,
        "versions": library_versions(),
    }


def write_run_info(log_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write `info` as `log_dir/accounting.json` (atomically)."""
    path = Path(log_dir) / RUN_INFO_FILE
    atomic_write_text(path, json.dumps(info, indent=2, default=str) + "\n")
    return path


def metrics_logger(trainer: L.Trainer) -> CSVLogger:
    """The CSV logger whose `metrics.csv` sits next to `accounting.json` for reports. When the user's loggers include
    none (TensorBoard or W&B only, or no logger at all), one is added, writing to `record/` in the run's log folder,
    so a report works whatever else logs the run."""
    found = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
    if found is None:
        found = CSVLogger(trainer.log_dir or trainer.default_root_dir, name="record", version="")
        trainer.loggers = [*trainer.loggers, found]
    return found


class Accounting(L.Callback):
    """Logs what training costs, through the Trainer's loggers, so every method sits on the same axes.

    At the start of training (step 0): ``params/trainable``, ``params/total``, ``params/changed_bytes`` (bytes of the
    weights training changes: the LoRA adapter, or every weight for full fine-tuning). After every optimizer step
    (whatever ``log_every_n_steps`` says, so every evaluation has its coordinates): ``train/tokens`` and
    ``train/examples`` (the module's cumulative counters), ``flops/train`` (cumulative training FLOPs of all processes, see the module docstring), ``time/wall_s`` (seconds
    since the Trainer set the run up, model loading and evaluations included), ``time/train_s`` (seconds spent in
    training steps), ``throughput/tokens_per_s`` (non-padding tokens of all processes per second of the step),
    ``memory/peak_bytes`` (CUDA max allocated, or the largest process RSS seen on CPU; the maximum over processes).
    Once, at the first training step after a validation (or at the end of training): ``time/first_result_s``, the
    seconds from setup to the first evaluation of trained weights. Rank zero also writes ``accounting.json`` (method,
    base checkpoint, model config, ICL tasks, Trainer settings, library versions) next to the metrics.csv of the
    Trainer's CSVLogger (added when it has none, see `metrics_logger`), for reports.

    Protocol: the LightningModule exposes ``model`` (a LitGPT ``GPT``) and ``train_tokens`` (cumulative non-padding
    training tokens of all processes) and optionally ``train_examples``, as ``AdaptationModule`` does; batches hold ``input_ids`` (or are token tensors)
    of which the model reads all but the last position.
    """

    def __init__(self, method: str | None = None) -> None:
        """
        Args:
            method: The name this run has in reports (default: the module's class, with "-lora" for LoRA).
        """
        self.method = method
        self._start = 0.0
        self._step_start = 0.0
        self._train_seconds = 0.0
        self._flops = 0.0
        self._peak = 0
        self._tokens_logged = 0
        self._seconds_logged = 0.0
        self._logged_step = -1
        self._validated = False
        self._first_result: float | None = None
        self._resumed = {"flops": 0.0, "wall_s": 0.0, "train_s": 0.0}
        self._reduced_flops = 0.0
        self._record_dir: Path | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(method=self.method)

    def state_dict(self) -> dict[str, float]:
        """Totals so far (all processes), so that a resumed run continues its FLOP and time axes."""
        return {"flops": self._reduced_flops, "wall_s": self._wall(), "train_s": self._train_total()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self._resumed = dict(state_dict)
        self._reduced_flops = self._resumed["flops"]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._start = time.perf_counter()
        self._train_seconds, self._flops, self._peak, self._logged_step = 0.0, 0.0, 0, -1
        self._tokens_logged, self._seconds_logged = 0, 0.0
        self._validated, self._first_result = False, None
        self._reduced_flops = self._resumed["flops"]
        self._record_dir = Path(metrics_logger(trainer).log_dir)
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from litgpt import GPT

        if not isinstance(getattr(pl_module, "model", None), GPT) or not hasattr(pl_module, "train_tokens"):
            raise TypeError(
                f"Accounting needs {type(pl_module).__name__} to expose `model` (a litgpt GPT) and `train_tokens` "
                "(cumulative training tokens), as lightning_adapt's AdaptationModule does."
            )
        _block(pl_module.model.config)  # an architecture the FLOP count does not know fails before training

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = list(pl_module.model.parameters())
        trainable = [p for p in params if p.requires_grad]
        metrics = {
            "params/trainable": float(sum(p.numel() for p in trainable)),
            "params/total": float(sum(p.numel() for p in params)),
            "params/changed_bytes": float(sum(p.numel() * p.element_size() for p in trainable)),
        }
        self._tokens_logged = pl_module.train_tokens
        metrics.update(self._progress(trainer, pl_module))
        self._log(trainer, metrics)
        if trainer.is_global_zero:
            write_run_info(self._record_dir, self._info(trainer, pl_module, metrics))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._record_first_result(trainer)
        self._synchronize(pl_module)
        self._step_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._synchronize(pl_module)
        self._train_seconds += time.perf_counter() - self._step_start
        input_ids = batch["input_ids"] if isinstance(batch, dict) else batch
        rows, length = input_ids.shape[0], input_ids.shape[1] - 1
        self._flops += rows * training_flops(pl_module.model.config, length)
        if trainer.global_step == self._logged_step:  # accumulating gradients: log once per optimizer step
            return
        tokens, seconds = pl_module.train_tokens - self._tokens_logged, self._train_seconds - self._seconds_logged
        self._tokens_logged, self._seconds_logged = pl_module.train_tokens, self._train_seconds
        metrics = self._progress(trainer, pl_module)
        metrics["throughput/tokens_per_s"] = tokens / max(seconds, 1e-9)
        self._log(trainer, metrics)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.global_step > 0:
            self._validated = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record_first_result(trainer)
        self._log(trainer, {"time/wall_s": self._wall()})

    def _record_first_result(self, trainer: L.Trainer) -> None:
        """Evaluations run at the end of validation, so the first batch after it (or the end) marks their end."""
        if self._validated and self._first_result is None:
            self._first_result = self._wall()
            self._log(trainer, {"time/first_result_s": self._first_result})

    def _progress(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Cumulative FLOPs (summed over processes), times, and peak memory (max over processes)."""
        self._peak = max(self._peak, memory_bytes(pl_module.device))
        device = pl_module.device
        flops = trainer.strategy.reduce(torch.tensor(self._flops, dtype=torch.float64, device=device), reduce_op="sum")
        peak = trainer.strategy.reduce(torch.tensor(float(self._peak), dtype=torch.float64, device=device), reduce_op="max")
        self._reduced_flops = float(flops) + self._resumed["flops"]
        return {
            "train/tokens": float(pl_module.train_tokens),
            **({"train/examples": float(pl_module.train_examples)} if hasattr(pl_module, "train_examples") else {}),
            "flops/train": self._reduced_flops,
            "memory/peak_bytes": float(peak),
            "time/wall_s": self._wall(),
            "time/train_s": self._train_total(),
        }

    def _wall(self) -> float:
        """Seconds since the Trainer set the run up, plus those of the run it resumes."""
        return time.perf_counter() - self._start + self._resumed["wall_s"]

    def _train_total(self) -> float:
        """Seconds spent in training steps, plus those of the run it resumes."""
        return self._train_seconds + self._resumed["train_s"]

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        self._logged_step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    @staticmethod
    def _synchronize(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def _info(self, trainer: L.Trainer, pl_module: L.LightningModule, params: dict[str, float]) -> dict[str, Any]:
        from lightning_adapt.icl.callback import ICLEvaluation

        config = pl_module.model.config
        export_dir = pl_module.export_dir() if getattr(pl_module.hparams, "export", False) else None
        tasks = [data.task for cb in trainer.callbacks if isinstance(cb, ICLEvaluation) for data in cb.runner.data]
        datamodule = trainer.datamodule
        return run_info(
            self.method or type(pl_module).__name__ + ("-lora" if _is_lora(config) else ""),
            f"{type(pl_module).__module__}.{type(pl_module).__qualname__}",
            config,
            getattr(pl_module, "checkpoint_dir", None),
            tasks,
            export_dir=None if export_dir is None else str(Path(export_dir).resolve()),
            lora={k: v for k, v in asdict(config).items() if k.startswith("lora_")} if _is_lora(config) else None,
            hparams=dict(pl_module.hparams),
            data=None if datamodule is None else {
                "class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
                **({f.name: getattr(datamodule, f.name) for f in fields(datamodule) if f.init} if is_dataclass(datamodule) else {}),
            },
            params={name.split("/")[1]: int(value) for name, value in params.items() if name.startswith("params/")},
            trainer={
                "accelerator": type(trainer.accelerator).__name__,
                "strategy": type(trainer.strategy).__name__,
                "precision": trainer.precision,
                "world_size": trainer.world_size,
                "max_steps": trainer.max_steps,
                "accumulate_grad_batches": trainer.accumulate_grad_batches,
                "val_check_interval": trainer.val_check_interval,
            },
        )
