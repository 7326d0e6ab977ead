#!/usr/bin/env bash
# The GPU runs for benchmarks/RESULTS.md, in one command on an H100/H200:
# builds the CUDA extension, then times every shape in float32 and bfloat16,
# forward and forward+backward, against improved-diffusion's chain, the lean
# chain, torch.compile of it and a device-to-device copy (CUDA events).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
WITH_CUDA=1 MAX_JOBS=$(nproc) python3 setup.py -q build_ext --build-lib build/gpu/lib --build-temp build/gpu/temp >"$out/gpu-build.log" 2>&1
export TORCH_DDPM_LIBRARY=$(ls "$PWD"/build/gpu/lib/torch_ddpm/_C*.so)
export PYTHONPATH="$PWD/python_bindings"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu-device.txt"
python3 benchmarks/bench.py --device cuda --backward --all-modes --reps 50 --warmup 10 \
  --output "$out/gpu.json" | tee "$out/gpu.txt"
# In-kernel noise: the whole step with its noise (CPU/CUDA bit identity is a
# test: scripts/gpu_check.sh).
python3 benchmarks/bench_noise.py --device cuda --reps 50 --warmup 10 \
  --output "$out/gpu-noise.json" | tee "$out/gpu-noise.txt"
