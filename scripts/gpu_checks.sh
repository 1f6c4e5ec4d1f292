#!/usr/bin/env bash
# Every GPU check of issue #17 in one command, for a machine with a CUDA GPU, PyTorch and Lightning: the wheels in
# .whl/ (from scripts/device_wheels.sh; none where lightning-adapt is installed already) go into /tmp/site, then
# scripts/gpu_checks.py (FSDP2/FSDP1 at world size 1, DeepSpeed stages 2 and 3, bf16 for every method) and
# benchmarks/train_throughput.py on a Llama-3.2-1B-shaped model (ours vs litgpt finetune_lora and finetune_full;
# our variants: random vs length-grouped vs packed batches, compile, QLoRA nf4, activation checkpointing; the
# response-only LM head is in every run of ours). Logs go to $OUT (the device tool's) or out/gpu; exits 1 if a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/gpu}"
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch, lightning, litgpt, bitsandbytes, deepspeed; print('torch', torch.__version__, 'lightning', lightning.__version__, 'litgpt', litgpt.__version__, 'bitsandbytes', bitsandbytes.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | tail -1 | tee -a "$out/device.txt"
python3 scripts/gpu_checks.py --out /tmp/gpu-checks 2>&1 | tee "$out/checks.log"
checks=${PIPESTATUS[0]}
cp /tmp/gpu-checks/checks.txt "$out/" 2>/dev/null
python3 benchmarks/train_throughput.py --model_name Llama-3.2-1B --accelerator cuda --variants \
  --micro_batch_size 4 --max_seq_length 1024 --steps 20 --skip 5 --rounds 1 2>&1 | tee "$out/benchmark.log"
benchmark=${PIPESTATUS[0]}
echo "gpu_checks.py exit code $checks, train_throughput.py exit code $benchmark"
[ "$checks" -eq 0 ] && [ "$benchmark" -eq 0 ]
