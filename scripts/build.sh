#!/usr/bin/env bash
# Builds the operator library against one PyTorch, apart from the sources:
#   build/<tag>/lib/torch_ddpm/_C*.so   (setup.py, for Python)
#   build/<tag>/cmake/                  (CMakeLists.txt: libddpm_ops + GoogleTest)
# Usage: scripts/build.sh PYTHON TAG [python|cmake|all]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$1
TAG=$2
WHAT=${3:-all}
JOBS=${MAX_JOBS:-$(nproc)}
export MAX_JOBS=$JOBS

# A compiler warning in our own sources fails the build (those of PyTorch's
# headers are not ours); gcc's "file:line:col: warning" and nvcc's
# "file(line): warning". An incremental build shows only what it recompiled.
no_warnings_of_ours() {
  if grep -E "^$PWD/[^ ]*(:[0-9]+:[0-9]+|\([0-9]+\)): warning" "$1" >/dev/null; then
    echo "build.sh: compiler warnings in our sources ($1):"
    grep -E -A3 "^$PWD/[^ ]*(:[0-9]+:[0-9]+|\([0-9]+\)): warning" "$1" | head -40
    exit 1
  fi
}

if [ "$WHAT" = python ] || [ "$WHAT" = all ]; then
  echo "== [$TAG] setup.py build_ext ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
  "$PY" setup.py -q build_ext --build-lib "build/$TAG/lib" --build-temp "build/$TAG/temp" >"build/$TAG.python.log" 2>&1 \
    || { tail -50 "build/$TAG.python.log"; exit 1; }
  no_warnings_of_ours "build/$TAG.python.log"
fi

if [ "$WHAT" = cmake ] || [ "$WHAT" = all ]; then
  torch_dir=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  prefix="$torch_dir/share/cmake;$torch_dir"
  if [ ! -d "$torch_dir/share/cmake" ]; then prefix=/usr/lib/x86_64-linux-gnu/cmake; fi  # Debian's libtorch-dev
  echo "== [$TAG] cmake build (Torch from $prefix)"
  cmake -S . -B "build/$TAG/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_INSTALL_PREFIX="$PWD/build/$TAG/install" >"build/$TAG.cmake.log" 2>&1 \
    || { tail -50 "build/$TAG.cmake.log"; exit 1; }
  echo "$prefix" >"build/$TAG/cmake/torch_prefix"
  cmake --build "build/$TAG/cmake" -j "$JOBS" >>"build/$TAG.cmake.log" 2>&1 \
    || { grep -E "error|FAILED" -A5 "build/$TAG.cmake.log" | head -80; exit 1; }
  no_warnings_of_ours "build/$TAG.cmake.log"
fi
