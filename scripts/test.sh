#!/usr/bin/env bash
# Install lightning-adapt and its plugins with their test extras (CPU torch first, never a CUDA build) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
plugins=()
for plugin in plugins/*/; do
  # with its test extras when it declares some (plugins/lm_eval: transformers for the parity tests against HFLM)
  if grep -q '^test = ' "$plugin/pyproject.toml" 2>/dev/null; then plugins+=(-e "${plugin%/}[test]");
  elif [ -f "$plugin/pyproject.toml" ]; then plugins+=(-e "$plugin"); fi
done
# constraints.txt: the exact set of packages the test suite last passed with (see docs/development.md, "Tested versions").
python -m pip install -q -c constraints.txt -e ".[dev]" "${plugins[@]}"
# DeepSpeed (the DeepSpeed strategy's tests) compiles against the torch above, so it is built without isolation.
python -m pip install -q --no-build-isolation -c constraints.txt -e ".[deepspeed]"
python -m pytest -q -rs "$@"
