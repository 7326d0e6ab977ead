#!/usr/bin/env bash
# Shows that the host emulation of the CUDA kernels (scripts/cuda_host_check.sh)
# can fail: builds it on copies of csrc/ with one bug planted in each, and
# lists the tests that catch it. Each mutant must fail; the script exits
# non-zero if one passes. Not run by CI (a full build per mutant).
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/cuda_host_mutants
mkdir -p "$root"
# each mutant: a name, the file of csrc/ it alters, a sed expression
names=(same-sample-past-its-end locate-32-bit-off-by-one chunk-start-32-bit-offset-lost
       prologue-skips-last-sample every-sample-reads-the-first-coefs wrong-noise-lane)
files=(cuda/elementwise.cuh cuda/elementwise.cuh cuda/elementwise.cuh cuda/elementwise.cuh
       cuda/step.cu cuda/elementwise.cuh)
exprs=(
  's#if \(offset < sample_numel\) return#if (offset <= sample_numel) return#'
  's#return \{b_first \+ q, offset - static_cast#return {b_first + q + 1, offset - static_cast#'
  's#return \{b_first, chunk - static_cast<int64_t>\(b_first\) \* sample_numel\};#return {b_first, 0};#'
  's#if \(b < batch\) coefs\[b\]#if (b + 1 < batch) coefs[b]#'
  's#return coefs\[b\];#return coefs[0];#'
  's#i, z\.lane\[lane\]\);#i, z.lane[(lane + 1) % kNoiseLanes]);#'
)
status=0
for k in "${!names[@]}"; do
  name=${names[$k]}
  rm -rf "$root/$name"
  mkdir -p "$root/$name"
  cp -r csrc "$root/$name/csrc"
  file=${files[$k]}
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
    if [ "$failed" -eq 0 ]; then
      echo "$name: caught, the run stops: $(grep -v '^\[' "$root/$name/run.log" | tail -1)"
    else
      echo "$name: caught, $failed tests fail: ${which%, }"
    fi
  fi
done
exit $status
