#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds torch_ddpm in place for python3
# (torch 2.11 from PyPI) and runs the main job (python3 -m torch_ddpm demo:
# train on scikit-learn's digits, sample, check). Extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
echo "== building torch_ddpm in place (python3 setup.py build_ext --inplace)"
MAX_JOBS=${MAX_JOBS:-$(nproc)} python3 setup.py -q build_ext --inplace >/tmp/torch_ddpm_build.log 2>&1 \
  || { tail -40 /tmp/torch_ddpm_build.log; exit 1; }
export PYTHONPATH="$PWD/python_bindings${PYTHONPATH:+:$PYTHONPATH}"
python3 -m torch_ddpm demo "$@"
