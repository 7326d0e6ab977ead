#!/usr/bin/env bash
# The GPU battery, run on the GPU machine from the repository root with the
# folder scripts/gpu_prepare.sh made here carried along (scripts/GPU.md):
#   OUT=<folder> bash scripts/gpu_check.sh
# In this order, everything written under $OUT (default build/gpu-out), named
# by the run's date (D):
#   1. load the prepared library (no compile; built there only if loading
#      fails, and the log says so);
#   2. the CUDA cases of the tests (pytest -k cuda; TORCH_DDPM_REQUIRE_CUDA=1: a
#      CUDA case never skips): every op, mode and dtype against the float64 reference
#      and against the CPU, gradcheck, opcheck, torch.compile, CUDA graphs,
#      Philox CPU/CUDA bit identity, more than 2^31 elements -> D-junit.xml,
#      D-collected.txt (so that the table names what a timeout cut off);
#   3. compute-sanitizer memcheck, racecheck and synccheck over every kernel
#      (scripts/gpu_sanitize.py), where the tool runs;
#   4. a short `demo --device cuda` (train, sample, verdict) -> D-samples.png;
#   5. a short benchmark -> D-bench.json, D-bench-noise.json, and the training
#      step (q_sample + diffusion_mse, forward and backward) into the table;
#      diffusers' scheduler steps and the sampling loops' host time, in the log;
#   6. the CPU cases of the tests, in what time is left (CI runs them too);
#   7. the table (scripts/gpu_report.py) -> D.txt; everything printed -> D.log.
# On a machine without a GPU it stops at the first CUDA test, saying why.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu-out}
mkdir -p "$out"
stamp=$(date -u +%Y-%m-%d-%H%M)
log="$out/$stamp.log"
exec > >(tee -a "$log") 2>&1
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start )) s"; }

# the commit gpu_prepare.sh built from: the device tool's copy of .git can be
# older than the files it sends
echo "== GPU battery $stamp, commit $(sed -n 's/^commit: //p' build/gpu-carry/PREPARED 2>/dev/null)"
echo "tree: git here says $(git rev-parse --short HEAD 2>/dev/null) (the device tool's .git can lag its files)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, 'cuda', torch.version.cuda, '| GPU visible:', torch.cuda.is_available())"
[ -f build/gpu-carry/PREPARED ] && sed 's/^/prepared: /' build/gpu-carry/PREPARED

# 1. the library
export PYTHONPATH="$PWD/python_bindings"
if ls build/gpu-carry/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/ddpm-site build/gpu-carry/wheels/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/ddpm-site"
fi
lib="$PWD/build/gpu-carry/lib/libtorch_ddpm_cuda.so"
if ! TORCH_DDPM_LIBRARY="$lib" python3 -c "import torch_ddpm" 2>"$out/load-error.txt"; then
  echo "!! the prepared library does not load here ($(tail -1 "$out/load-error.txt")); BUILDING HERE INSTEAD"
  WITH_CUDA=1 MAX_JOBS=$(nproc) python3 setup.py -q build_ext --build-lib build/gpu/lib \
    --build-temp build/gpu/temp >"$out/build.txt" 2>&1 || { tail -30 "$out/build.txt"; exit 1; }
  lib=$(ls "$PWD"/build/gpu/lib/torch_ddpm/_C*.so)
  echo "built here in $(elapsed)"
fi
rm -f "$out/load-error.txt"
export TORCH_DDPM_LIBRARY="$lib"
echo "library: ${lib#"$PWD"/} ($(elapsed))"

# 2. the tests; the probe first, so that a machine without a usable GPU stops here
# GPU_CHECK_REHEARSAL=1, on the CPU machine: past the probe, every step with a
# limit of a few seconds, so that the plumbing (files, table) is tried before a
# GPU's minutes are spent on it
rehearsal=${GPU_CHECK_REHEARSAL:-}
limit() { if [ -n "$rehearsal" ]; then echo 15; else echo "$1"; fi; }
[ -n "$rehearsal" ] || export TORCH_DDPM_REQUIRE_CUDA=1
echo "== the CUDA kernels run? (tests/python/integration/test_cuda.py::test_the_cuda_kernels_run)"
if ! python3 -m pytest -q -p no:cacheprovider tests/python/integration/test_cuda.py::test_the_cuda_kernels_run; then
  if [ -z "$rehearsal" ]; then
    echo "STOPPED: the CUDA kernels do not run here (the reason is above); nothing else was run"
    exit 1
  fi
  echo "REHEARSAL: going on without a GPU, each step cut short"
fi
echo "== tests: the CUDA cases (pytest -k cuda, TORCH_DDPM_REQUIRE_CUDA=1)"
# the collected ids, so that the table can name the tests a timeout cut off
python3 -m pytest tests/python -q -p no:cacheprovider --collect-only >"$out/$stamp-collected.txt" 2>&1
workers=$(( $(nproc) > 12 ? 12 : $(nproc) ))
# what only a GPU can show first: every case with cuda in its id (the CUDA
# device of each parametrized test, test_cuda.py, the CPU/CUDA comparisons);
# the CPU cases, which CI runs too, come last. -v: one line per finished test;
# faulthandler: the stacks of a test that runs past 60 s, printed while it runs
# pytest_phase SECONDS ARGS...: one phase of the suite, its exit status returned
pytest_phase() {
  local seconds=$1
  shift
  # SIGINT at the limit (pytest then still writes its summary and junit file),
  # unbuffered (the -v lines up to the cut reach the log)
  PYTHONUNBUFFERED=1 timeout -s INT -k 20 "$(limit "$seconds")" python3 -m pytest tests/python \
    -v -rs -p no:cacheprovider -n "$workers" -o faulthandler_timeout=60 "$@" 2>&1 \
    | grep -v -e PytestBenchmarkWarning -e "warner(PytestBenchmarkWarning"
  return "${PIPESTATUS[0]}"
}
pytest_phase 200 -k cuda --durations=15 --junitxml="$out/$stamp-junit.xml"
tests_status=$?
echo "tests: exit $tests_status ($(elapsed))"

# 3. compute-sanitizer over every kernel
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool"
    timeout "$(limit 60)" compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
      python3 scripts/gpu_sanitize.py 2>&1 | tail -15
    echo "$tool: exit ${PIPESTATUS[0]} ($(elapsed))"
  done
else
  echo "compute-sanitizer: not installed here"
fi

# 4. the demo, end to end on the GPU
echo "== demo --device cuda"
timeout "$(limit 120)" python3 -m torch_ddpm demo --device cuda --out /tmp/ddpm-demo
echo "demo: exit $? ($(elapsed))"
cp /tmp/ddpm-demo/samples.png "$out/$stamp-samples.png" 2>/dev/null
cp /tmp/ddpm-demo/metrics.json "$out/$stamp-demo-metrics.json" 2>/dev/null

# 5. the benchmark
echo "== benchmark"
timeout "$(limit 150)" python3 benchmarks/bench.py --device cuda --shapes 16x3x64x64 16x4x64x64 64M \
  --dtypes float32 bfloat16 --backward --reps 30 --warmup 5 --compile-shapes 16x3x64x64 \
  --output "$out/$stamp-bench.json"
echo "bench: exit $? ($(elapsed))"
timeout "$(limit 60)" python3 benchmarks/bench_noise.py --device cuda --shapes 16x3x64x64 8x3x256x256 \
  --dtypes float32 bfloat16 --reps 30 --warmup 5 --output "$out/$stamp-bench-noise.json"
echo "bench-noise: exit $? ($(elapsed))"
# (its JSON stays outside $OUT: the tool returns 8 files; the table and the
# log carry its numbers)
timeout "$(limit 60)" python3 benchmarks/bench_training.py --device cuda --shapes 16x3x64x64 64M \
  --reps 20 --output /tmp/ddpm-bench-training.json
echo "bench-training: exit $? ($(elapsed))"
# diffusers' scheduler steps against ours: its rows in the log
timeout "$(limit 45)" python3 benchmarks/bench_scheduler.py --device cuda \
  --shapes 16x4x64x64 4x4x128x128 --dtypes float32 bfloat16 \
  --schedulers ddpm ddim ddim-clip --reps 20 --warmup 3
echo "bench-scheduler: exit $? ($(elapsed))"
# the sampling loops' host time per step against the bare raw-operator loop:
# its rows in the log
timeout "$(limit 20)" python3 -m torch_ddpm bench-loops --device cuda --reps 3
echo "bench-loops: exit $? ($(elapsed))"
# end to end with improved-diffusion's CIFAR-10 UNet shape: unpatched,
# patched, patched as one CUDA graph (batch 16 and 64): its rows in the log
timeout "$(limit 45)" python3 benchmarks/bench_sampling.py --device cuda --batches 16 64 --reps 3
echo "bench-sampling: exit $? ($(elapsed))"

# 6. the CPU cases, in what time is left (CI runs them on every change; here
# they meet the GPU machine's Python 3.12 and 16 cores)
echo "== tests: the CPU cases (pytest -k 'not cuda')"
pytest_phase 60 -k "not cuda"
echo "cpu tests: exit $? ($(elapsed))"

# 7. the table
python3 scripts/gpu_report.py --junit "$out/$stamp-junit.xml" --collected "$out/$stamp-collected.txt" --bench "$out/$stamp-bench.json" \
  --bench-noise "$out/$stamp-bench-noise.json" --bench-training /tmp/ddpm-bench-training.json \
  --demo "$out/$stamp-demo-metrics.json" \
  --log "$log" >"$out/$stamp.txt"
cat "$out/$stamp.txt"
echo "battery done in $(elapsed)"
exit "$tests_status"
