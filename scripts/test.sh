#!/usr/bin/env bash
# Runs every test (GoogleTest through ctest, then pytest) against both
# PyTorches: torch 2.11 from PyPI (python3) and Debian's torch 1.13
# (/usr/bin/python3). Installs what is missing first. Exits non-zero on any
# failure. Set TORCHES="torch2" or "torch1" to run one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
bash scripts/install_deps.sh

TORCHES=${TORCHES:-"torch2 torch1"}
for tag in $TORCHES; do
  case $tag in
    torch2) py=python3 ;;
    torch1) py=/usr/bin/python3 ;;
    *) echo "unknown torch tag $tag"; exit 2 ;;
  esac
  bash scripts/build.sh "$py" "$tag" all
  echo "== [$tag] GoogleTest (ctest)"
  (cd "build/$tag/cmake" && ctest --output-on-failure)
  echo "== [$tag] pytest"
  lib=$(ls "build/$tag"/lib/torch_ddpm/_C*.so)
  TORCH_DDPM_LIBRARY="$PWD/$lib" PYTHONPATH="$PWD/python_bindings" \
    "$py" -m pytest tests/python -q -rs -p no:cacheprovider
done
