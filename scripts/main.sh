#!/usr/bin/env bash
# Install lightning-adapt (CPU torch first, never a CUDA build) with the GGUF plugin and the report extra, then run
# the main job in the current folder: the built-in comparison of ICL, LoRA fine-tuning and continual pretraining on
# SmolLM2-135M-Instruct (outputs under ./out/compare/, the default model under ./checkpoints/).
# Extra arguments go to `lightning-adapt compare` (e.g. --quick for the short profile).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install -q torch==2.13.0
python -m pip install -q -c "$root/constraints.txt" -e "$root[report]" -e "$root/plugins/gguf"
lightning-adapt compare "$@"
