#!/usr/bin/env bash
# Shows that the host emulation of the CUDA kernels (scripts/cuda_host_check.sh)
# can fail: builds it on copies of csrc/ with one bug planted in each, and
# lists the tests that catch it. Each mutant must fail; the script exits
# non-zero if one passes. Not run by CI (a full build per mutant).
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/cuda_host_mutants
mkdir -p "$root"
file=cuda/elementwise.cuh  # every mutant alters the CUDA loop
names=(samples-per-chunk-off-by-one no-barrier-before-writing-coefs
       no-barrier-after-writing-coefs wrong-noise-lane)
exprs=(
  's#\(chunk_end - 1\) / sample_numel - b_first \+ 1;#(chunk_end - 1) / sample_numel - b_first;#'
  's#^  __syncthreads\(\);  // the previous chunk.*#  // (removed)#'
  's#^  __syncthreads\(\);$#  // (removed)#'
  's#i, z\.lane\[lane\]\);#i, z.lane[(lane + 1) % kNoiseLanes]);#'
)
status=0
for k in "${!names[@]}"; do
  name=${names[$k]}
  rm -rf "$root/$name"
  mkdir -p "$root/$name"
  cp -r csrc "$root/$name/csrc"
  sed -i -E "${exprs[$k]}" "$root/$name/csrc/$file"
  if cmp -s "csrc/$file" "$root/$name/csrc/$file"; then
    echo "$name: the mutation did not apply"; status=1; continue
  fi
  cmake -S tests/cuda_host -B "$root/$name/build" -G Ninja -DDDPM_CSRC="$PWD/$root/$name/csrc" \
    >"$root/$name/build.log" 2>&1
  cmake --build "$root/$name/build" -j "${MAX_JOBS:-$(nproc)}" >>"$root/$name/build.log" 2>&1 \
    || { echo "$name: does not build"; status=1; continue; }
  if "$root/$name/build/cuda_host_tests" --gtest_brief=1 >"$root/$name/run.log" 2>&1; then
    echo "$name: NOT CAUGHT (every test passed)"; status=1
  else
    # "N tests fail: <count> <test name> ..." (a typed test counted over its 8 types)
    failed=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$root/$name/run.log" || true)
    which=$(sed -n 's/^\[  FAILED  \] \([A-Za-z][^ ,]*\).*/\1/p' "$root/$name/run.log" \
            | awk -F. '{print $NF}' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
    echo "$name: caught, $failed tests fail: ${which%, }"
  fi
done
exit $status
