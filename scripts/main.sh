#!/usr/bin/env bash
# Install lightning-adapt (CPU torch first, never a CUDA build) with the GGUF plugin and the report extra, then run
# the main job: the built-in comparison of ICL, LoRA fine-tuning and continual pretraining on SmolLM2-135M-Instruct.
# Extra arguments go to `lightning-adapt compare` (e.g. --quick for the 3-minute profile).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[report]" -e plugins/gguf
lightning-adapt compare "$@"
