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

Other techniques.  A technique states what it adds (`Technique.added_compute`): adapter FLOPs on each weight matrix,
compute of its own (Adapter V2: its learned prompt's q/k/v projection per sequence and every token's attention to the
prompt) with that compute's backward, and whether a weight before the first block's first matrix trains (Adapter V2's
norms), in which case every frozen matrix passes an activation gradient back (1×) from the first block on.

Training FLOPs count the padded batches the model actually computes: rows × training_flops(config, T), T the positions
of a row it reads, padding included (the training tokens, `lightning_adapt.record.runs.input_tokens`, leave padding out),
except the LM head, which the training modules compute only at the positions with a label (a fine-tuning example's
response; every position of CPT text): `micro_batch_flops`.
"""

from __future__ import annotations

from dataclasses import dataclass

from litgpt import Config

from lightning_adapt.techniques import technique_of
from lightning_adapt.techniques.base import AddedCompute

_MLP_MATRICES = {"LLaMAMLP": 3, "GemmaMLP": 3, "GptNeoxMLP": 2}


@dataclass(frozen=True)
class _Matmul:
    """Forward FLOPs per token of one weight matrix and of a technique's adapter on it (0 when it has none)."""

    weight: float
    adapter: float = 0.0

    def backward(self, input_requires_grad: bool, weight_trains: bool) -> float:
        """Activation gradient if the input needs one, weight gradient if the weight trains; an adapter costs 2×."""
        return self.weight * (int(input_requires_grad) + int(weight_trains)) + 2 * self.adapter


def _added(config: Config) -> AddedCompute | None:
    """What the technique of `config` adds to its base model; None for a plain model (every weight trains)."""
    technique = technique_of(config)
    return None if technique is None else technique.added_compute(config)


def check_architecture(config: Config) -> None:
    """Refuse, before training, a model whose FLOPs this module cannot count."""
    _block(config)


def _block(config: Config) -> tuple[_Matmul, _Matmul, list[_Matmul], _Matmul]:
    """(qkv, attention output projection, MLP input matrices, MLP output matrix) of one transformer block."""
    if config.mlp_class_name not in _MLP_MATRICES:
        raise ValueError(
            f"FLOP accounting knows the dense MLPs {sorted(_MLP_MATRICES)}; {config.name} uses {config.mlp_class_name}."
        )
    d, attn, inner = config.n_embd, config.n_head * config.head_size, config.intermediate_size
    added = _added(config) or AddedCompute()
    qkv = _Matmul(2.0 * d * (attn + 2 * config.n_query_groups * config.head_size), added.qkv)
    proj = _Matmul(2.0 * attn * d, added.proj)
    mlp_in = [_Matmul(2.0 * d * inner, added.mlp_in)] * (_MLP_MATRICES[config.mlp_class_name] - 1)
    mlp_out = _Matmul(2.0 * inner * d, added.mlp_out)
    return qkv, proj, mlp_in, mlp_out


def _head(config: Config) -> _Matmul:
    return _Matmul(2.0 * config.n_embd * config.padded_vocab_size, (_added(config) or AddedCompute()).head)


def _attention(config: Config, seq_len: float, causal: bool) -> float:
    """Forward FLOPs of Q·Kᵀ and A·V in one layer for one sequence."""
    pairs = seq_len * (seq_len + 1) / 2 if causal else seq_len**2
    return 4.0 * config.n_head * config.head_size * pairs


def forward_flops(config: Config, seq_len: float, causal: bool = True, head_positions: float | None = None) -> float:
    """FLOPs of one forward pass over a sequence of `seq_len` tokens (a technique's additions included when `config`
    is a technique's), the LM head computed at `head_positions` of them (default: all)."""
    qkv, proj, mlp_in, mlp_out = _block(config)
    per_token = config.n_layer * sum(m.weight + m.adapter for m in (qkv, proj, *mlp_in, mlp_out))
    head = _head(config)
    added = _added(config) or AddedCompute()
    head_positions = seq_len if head_positions is None else head_positions
    return (seq_len * (per_token + added.token_forward) + head_positions * (head.weight + head.adapter)
            + added.sequence_forward + config.n_layer * _attention(config, seq_len, causal))


def backward_flops(config: Config, seq_len: float, causal: bool = True, head_positions: float | None = None) -> float:
    """FLOPs of the backward pass over one sequence: a technique's weights train when `config` is a technique's, else
    every weight; the LM head's at `head_positions` of its positions (default: all)."""
    added = _added(config)
    full = added is None
    qkv, proj, mlp_in, mlp_out = _block(config)
    attention = _attention(config, seq_len, causal)
    # the first block's input needs a gradient only if the embedding (every weight) or a norm before it trains
    requires_grad = full or added.block_inputs_need_grad
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
    head = _head(config).backward(requires_grad, full)
    if added is not None:
        per_token, per_sequence = per_token + added.token_backward, per_sequence + added.sequence_backward
    return seq_len * per_token + (seq_len if head_positions is None else head_positions) * head + per_sequence


def training_flops(config: Config, seq_len: float, causal: bool = True, head_positions: float | None = None) -> float:
    """Forward + backward FLOPs of one training sequence of `seq_len` tokens (see the module docstring), the LM head
    computed at `head_positions` of them (default: all; the training modules compute it where a label is)."""
    return (forward_flops(config, seq_len, causal, head_positions)
            + backward_flops(config, seq_len, causal, head_positions))


def micro_batch_flops(config: Config, rows: int, positions: int, labelled: int) -> float:
    """Training FLOPs of a micro-batch of `rows` x `positions` (padding included) with `labelled` positions in all,
    the ones the LM head and the loss are computed at."""
    return rows * training_flops(config, positions, head_positions=labelled / rows)


def inference_flops(config: Config, prompt_tokens: float, answer_tokens: float = 1) -> float:
    """FLOPs to answer one query: a forward pass over the prompt and the answer tokens (with a KV cache, generating
    the answer token by token costs the same products). `prompt_tokens` may be a mean (e.g. an ICL evaluation's)."""
    return forward_flops(config, prompt_tokens + answer_tokens)
