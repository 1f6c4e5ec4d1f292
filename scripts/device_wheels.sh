#!/usr/bin/env bash
# Put into .whl/ (git-ignored) the wheels that a GPU machine with PyTorch and Lightning but no package index needs to
# run scripts/gpu_checks.sh: our other dependencies at the versions of constraints.txt, for CPython 3.12 on x86-64
# Linux, and DeepSpeed built here as a wheel (pure Python: its CUDA ops compile on first use there). Run it in the
# virtualenv of scripts/test.sh (DeepSpeed builds against its torch).
set -euo pipefail
cd "$(dirname "$0")/.."
names=(litgpt jsonargparse docstring_parser typeshed_client bitsandbytes datasets dill multiprocess huggingface_hub
       hjson pydantic pydantic_core annotated-types typing-inspection typing_extensions)
mkdir -p .whl
for name in "${names[@]}"; do
  pinned=$(grep -i "^${name//[-_]/[-_]}==" constraints.txt) || { echo "no $name in constraints.txt" >&2; exit 1; }
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$pinned"
done
deepspeed=$(grep -i "^deepspeed==" constraints.txt)
python -m pip wheel -q --no-deps --no-build-isolation -w .whl "$deepspeed"
du -ch .whl/*.whl | tail -1
