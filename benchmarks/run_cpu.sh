#!/usr/bin/env bash
# The CPU runs behind benchmarks/RESULTS.md: every shape, float32 and
# bfloat16, 2 threads (THREADS to change), forward and forward+backward,
# without torch.compile; then torch.compile of the lean chain (forward).
# Needs a build (scripts/build.sh python3 torch2 python) or an installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
lib=$(ls build/torch2/lib/torch_ddpm/_C*.so 2>/dev/null | head -1 || true)
[ -n "$lib" ] && export TORCH_DDPM_LIBRARY="$PWD/$lib"
export PYTHONPATH="$PWD/python_bindings${PYTHONPATH:+:$PYTHONPATH}"
out=${OUT:-benchmarks}
python3 benchmarks/bench.py --threads ${THREADS:-2} --backward --reps 7 --no-compile \
  --output "$out/cpu-eager.json" | tee "$out/cpu-eager.txt"
python3 benchmarks/bench.py --threads ${THREADS:-2} --reps 7 --shapes 16x3x64x64 64M \
  --output "$out/cpu-compile.json" | tee "$out/cpu-compile.txt"
# In-kernel noise: the whole step with its noise, 1 and 2 threads.
python3 benchmarks/bench_noise.py --threads 2 1 --output "$out/cpu-noise.json" | tee "$out/cpu-noise.txt"
