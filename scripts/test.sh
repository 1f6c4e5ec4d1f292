#!/usr/bin/env bash
# Install lightning-adapt with its test extras (CPU torch first, never a CUDA build) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
for plugin in plugins/*/; do
  if [ -f "$plugin/pyproject.toml" ]; then python -m pip install -q -e "$plugin"; fi
done
python -m pytest -q -rs "$@"
