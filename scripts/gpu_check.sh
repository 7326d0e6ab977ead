#!/usr/bin/env bash
# The GPU battery, run on the GPU machine from the repository root with the
# folder scripts/gpu_prepare.sh made here carried along (scripts/GPU.md):
#   OUT=<folder> bash scripts/gpu_check.sh
# In this order, everything written under $OUT (default build/gpu-out), named
# by the run's date (D), the whole call within GPU_CHECK_DEADLINE seconds
# (default 420: a 15-minute loan, the machine's start included, then still
# has room for a second call that reruns what failed):
#   1. load the prepared library (no compile; built there only if loading
#      fails, and the log says so);
#   2. what has never run on a GPU first: the CUDA cases of the tests added
#      since the last GPU run (FIRST_TESTS below; TORCH_DDPM_REQUIRE_CUDA=1: a
#      CUDA case never skips) -> D-junit.xml; the ids of every test ->
#      D-collected.txt (so that the table names what a limit cut off);
#   3. compute-sanitizer memcheck, racecheck and synccheck over every kernel
#      (scripts/gpu_sanitize.py: every overload of the registry), where the
#      tool runs;
#   4. a short benchmark (64M and 16x3x64x64, float32 and bfloat16, forward
#      and forward+backward, no torch.compile) -> D-bench.json; in-kernel noise
#      -> D-bench-noise.json; the training step, diffusers' scheduler steps, the
#      loops' host time, end-to-end sampling and an AOTInductor package of a
#      sampling step compiled for CUDA, in the log;
#   5. the table (scripts/gpu_report.py) -> D.txt, written now so that a cut
#      later loses nothing measured;
#   6. the other CUDA cases of the tests, until the deadline (the CPU cases
#      are CI's);
#   7. a short `demo --device cuda` in what is left -> D-samples.png,
#      D-demo-metrics.json; the table again, with all of it. Everything
#      printed -> D.log.
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
deadline=${GPU_CHECK_DEADLINE:-420}

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
# limit SECONDS [RESERVE]: a step's limit, SECONDS or what is left before the
# deadline less RESERVE seconds (kept for the steps after it), at least 5
limit() {
  local left=$(( deadline - ($(date +%s) - start) - ${2:-0} ))
  local want=$1
  [ -n "$rehearsal" ] && want=15
  [ "$left" -lt "$want" ] && want=$left
  [ "$want" -lt 5 ] && want=5
  echo "$want"
}
echo "== the CUDA kernels run? (tests/python/integration/test_cuda.py::test_the_cuda_kernels_run)"
if ! python3 -m pytest -q -p no:cacheprovider tests/python/integration/test_cuda.py::test_the_cuda_kernels_run; then
  if [ -z "$rehearsal" ]; then
    echo "STOPPED: the CUDA kernels do not run here (the reason is above); nothing else was run"
    exit 1
  fi
  echo "REHEARSAL: going on without a GPU, each step cut short"
fi
# the ids of the CUDA cases (both test phases), so that the table can name
# the tests a limit cut off
python3 -m pytest tests/python -q -p no:cacheprovider --collect-only -k cuda >"$out/$stamp-collected.txt" 2>&1
workers=$(( $(nproc) > 12 ? 12 : $(nproc) ))
# pytest_phase SECONDS ARGS...: one phase of the suite, its exit status
# returned. -v: one line per finished test; faulthandler: the stacks of a test
# that runs past 60 s, printed while it runs; the slowest tests' durations.
pytest_phase() {
  local seconds=$1
  shift
  # SIGINT at the limit (pytest then still writes its summary and junit file),
  # unbuffered (the -v lines up to the cut reach the log)
  PYTHONUNBUFFERED=1 timeout -s INT -k 20 "$seconds" python3 -m pytest \
    -v -rs -p no:cacheprovider -n "$workers" -o faulthandler_timeout=60 \
    --durations=25 --durations-min=1 "$@" 2>&1 \
    | grep -v -e PytestBenchmarkWarning -e "warner(PytestBenchmarkWarning"
  return "${PIPESTATUS[0]}"
}
# What no GPU has run yet: the files (or the cases, -k cuda) added or changed
# since the last GPU run. Update the list after each GPU run.
FIRST_TESTS=(
  tests/python/integration/test_cuda.py
  tests/python/integration/test_cuda_graphs.py
  tests/python/adapters/test_diffusers_ddim.py
  tests/python/ops/test_clip_bound.py
  tests/python/ops/test_diffusion_mse.py
  tests/python/ops/test_noise_offset.py
  tests/python/ops/test_every_overload.py
  tests/python/noise
)
echo "== tests, first: what has never run on a GPU (${#FIRST_TESTS[@]} paths, -k cuda)"
pytest_phase "$(limit 90 340)" "${FIRST_TESTS[@]}" -k cuda --junitxml="$out/$stamp-junit.xml"
tests_status=$?
echo "tests: exit $tests_status ($(elapsed))"

# 3. compute-sanitizer over every kernel
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool"
    # memcheck over every dtype; racecheck and synccheck (shared memory and
    # barriers, which only the loss's tile sums use) over float32 and bfloat16
    dtypes=(float32 float64 float16 bfloat16)
    [ "$tool" = memcheck ] || dtypes=(float32 bfloat16)
    timeout "$(limit 45 280)" compute-sanitizer --tool "$tool" --error-exitcode 9 --print-limit 20 \
      python3 scripts/gpu_sanitize.py --dtypes "${dtypes[@]}" 2>&1 | tail -15
    echo "$tool: exit ${PIPESTATUS[0]} ($(elapsed))"
  done
else
  echo "compute-sanitizer: not installed here"
fi

# 4. the benchmark: short, no torch.compile (each case compiles anew; past
# runs have its ratios)
echo "== benchmark"
timeout "$(limit 70 210)" python3 benchmarks/bench.py --device cuda --shapes 16x3x64x64 64M \
  --dtypes float32 bfloat16 --backward --reps 20 --warmup 5 --no-compile \
  --output "$out/$stamp-bench.json"
echo "bench: exit $? ($(elapsed))"
timeout "$(limit 20 190)" python3 benchmarks/bench_noise.py --device cuda --shapes 16x3x64x64 \
  --dtypes float32 bfloat16 --reps 20 --warmup 5 --output "$out/$stamp-bench-noise.json"
echo "bench-noise: exit $? ($(elapsed))"
# (its JSON stays outside $OUT: the tool returns 8 files; the table and the
# log carry its numbers)
timeout "$(limit 20 170)" python3 benchmarks/bench_training.py --device cuda --shapes 64M \
  --reps 10 --no-compile --output /tmp/ddpm-bench-training.json
echo "bench-training: exit $? ($(elapsed))"
# diffusers' scheduler steps against ours: its rows in the log
timeout "$(limit 20 150)" python3 benchmarks/bench_scheduler.py --device cuda \
  --shapes 16x4x64x64 --dtypes float32 bfloat16 --schedulers ddpm ddim euler dpm++2m \
  --reps 20 --warmup 3
echo "bench-scheduler: exit $? ($(elapsed))"
# the sampling loops' host time per step against the bare raw-operator loop
timeout "$(limit 15 135)" python3 -m torch_ddpm bench-loops --device cuda --reps 3
echo "bench-loops: exit $? ($(elapsed))"
# end to end with improved-diffusion's CIFAR-10 UNet shape: unpatched,
# patched, patched as one CUDA graph
timeout "$(limit 30 105)" python3 benchmarks/bench_sampling.py --device cuda --batches 16 --reps 3
echo "bench-sampling: exit $? ($(elapsed))"
# a sampling step exported and compiled by AOTInductor for CUDA (here: it
# compiles for the GPU it sees), its samples against the eager loop's, and
# its per-step time against eager and TorchScript: in the log
timeout "$(limit 60 45)" python3 benchmarks/bench_export.py --device cuda --steps 20 --reps 3
echo "bench-export: exit $? ($(elapsed))"

# 5. the table, now: what comes after may be cut off
report() {
  python3 scripts/gpu_report.py --junit "$out/$stamp-junit.xml" --collected "$out/$stamp-collected.txt" \
    --bench "$out/$stamp-bench.json" --bench-noise "$out/$stamp-bench-noise.json" \
    --bench-training /tmp/ddpm-bench-training.json --demo "$out/$stamp-demo-metrics.json" \
    --log "$log" >"$out/$stamp.txt"
}
report
echo "table written ($(elapsed))"

# 6. the other CUDA cases, until the deadline less the demo's share
echo "== tests, then: the other CUDA cases (-k cuda)"
ignores=()
for path in "${FIRST_TESTS[@]}"; do ignores+=(--ignore="$path"); done
pytest_phase "$(limit 200 45)" tests/python "${ignores[@]}" -k cuda \
  --junitxml=/tmp/ddpm-junit-rest.xml
rest_status=$?
echo "tests: exit $rest_status ($(elapsed))"
[ "$tests_status" -eq 0 ] && tests_status=$rest_status

# 7. a short demo in what is left, end to end on the GPU
echo "== demo --device cuda"
timeout "$(limit 60)" python3 -m torch_ddpm demo --device cuda --steps 4000 --samples 128 \
  --out /tmp/ddpm-demo
echo "demo: exit $? ($(elapsed))"
cp /tmp/ddpm-demo/samples.png "$out/$stamp-samples.png" 2>/dev/null
cp /tmp/ddpm-demo/metrics.json "$out/$stamp-demo-metrics.json" 2>/dev/null

report
cat "$out/$stamp.txt"
echo "battery done in $(elapsed)"
exit "$tests_status"
