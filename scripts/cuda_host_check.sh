#!/usr/bin/env bash
# The CUDA kernels of csrc/cuda, run on the CPU through their own launch code:
# builds tests/cuda_host (the .cu files compiled as C++ against a stand-in
# CUDA runtime whose blocks are fibers with real barriers, the CPU kernels
# beside them, GoogleTest; no torch, no GPU) into build/cuda_host and runs it.
# The last line says "N passed, M failed"; the exit status is non-zero on any
# failure. CUDA_HOST_SEED=n varies the order the fibers resume in.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${CUDA_HOST_BUILD:-build/cuda_host}
mkdir -p "$build"
log="$build/build.log"
cmake -S tests/cuda_host -B "$build" -G Ninja >"$log" 2>&1 \
  || { tail -30 "$log"; echo "0 passed, 1 failed (configure)"; exit 1; }
cmake --build "$build" -j "${MAX_JOBS:-$(nproc)}" >>"$log" 2>&1 \
  || { grep -E "error|FAILED" -A5 "$log" | head -60; echo "0 passed, 1 failed (build)"; exit 1; }
set +e
"$build/cuda_host_tests" --gtest_brief=1 >"$build/run.log" 2>&1
status=$?
set -e
grep -v "^\[       OK \]" "$build/run.log" | tail -40
passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$build/run.log")
# (--gtest_brief prints no "N tests failed" summary: count the failed tests' lines)
failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$build/run.log" || true)
echo "${passed:-0} passed, ${failed:-0} failed"
if [ "$status" -eq 0 ] && [ -z "$passed" ]; then status=1; fi
exit "$status"
