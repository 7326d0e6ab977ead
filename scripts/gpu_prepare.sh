#!/usr/bin/env bash
# Prepares, on the CPU machine, everything the GPU battery needs, so that the
# GPU's scarce minutes go to running only (scripts/GPU.md):
#   build/gpu-carry/lib/libtorch_ddpm_cuda.so   the operator library with the
#       CUDA kernels for sm_90 (H100/H200), built against PyPI's torch
#       2.11.0+cu130 (the GPU machine's), stripped;
#   build/gpu-carry/wheels/   what the GPU machine lacks (diffusers and
#       importlib_metadata, for the diffusers tests; it has torch, pytest,
#       pytest-xdist, hypothesis, scikit-learn);
#   build/gpu-carry/PREPARED  what was built, from which commit.
# Checks that the library does not depend on the Python version (it is
# loaded with torch.ops.load_library under Python 3.12 there) and that the
# folder stays under the 64 MiB the device tool carries.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=build/gpu-carry
# the same build as scripts/test.sh's WITH_CUDA=1 one (same flags, 9.0): after
# a test run only the link is left to do
work=build/torch2-cuda
python3 - <<'PY'
import sys, torch
ok = torch.__version__.startswith("2.11.0") and (torch.version.cuda or "").startswith("13.0")
sys.exit(0 if ok else f"gpu_prepare: need PyPI's torch 2.11.0+cu130 (the GPU machine's), "
                      f"this python3 has {torch.__version__} (CUDA {torch.version.cuda})")
PY
command -v nvcc >/dev/null || { echo "gpu_prepare: nvcc is needed to build the CUDA kernels"; exit 1; }
rm -rf "$carry"
mkdir -p "$carry/lib" "$carry/wheels" "$work"
echo "== building the CUDA library for sm_90 (WITH_CUDA=1; about 10 minutes on 2 cores from scratch)"
WITH_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
  python3 setup.py -q build_ext --build-lib "$work/lib" --build-temp "$work/temp" \
  >"build/gpu-prepare.log" 2>&1 || { tail -40 "build/gpu-prepare.log"; exit 1; }
lib="$carry/lib/libtorch_ddpm_cuda.so"
cp "$(ls "$work"/lib/torch_ddpm/_C*.so)" "$lib"
strip --strip-debug "$lib"

echo "== checking the library"
# no Python symbol: the same file loads under any Python that has torch 2.11
if nm -D --undefined-only "$lib" | grep -E " _?Py[A-Z_]" >/dev/null; then
  echo "gpu_prepare: $lib uses Python symbols:"; nm -D --undefined-only "$lib" | grep -E " _?Py" | head
  exit 1
fi
if command -v cuobjdump >/dev/null; then
  cuobjdump --list-elf "$lib" | grep -q "sm_90" \
    || { echo "gpu_prepare: no sm_90 code in $lib"; exit 1; }
else  # (no cuobjdump here: what nvcc was asked for)
  grep -q "code=sm_90" "$work/temp/build.ninja" \
    || { echo "gpu_prepare: the build did not ask nvcc for sm_90"; exit 1; }
fi
python3 - "$lib" <<'PY'
import sys, torch
torch.ops.load_library(sys.argv[1])   # loads here without a GPU
dump = torch._C._dispatch_dump("ddpm::p_sample")
assert "\nCUDA:" in dump, "no CUDA kernel registered"
PY

echo "== wheels the GPU machine lacks"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d "$carry/wheels" \
  "diffusers==0.42.1" "importlib_metadata" >"build/gpu-prepare-pip.log" 2>&1 \
  || { tail -20 "build/gpu-prepare-pip.log"; echo "gpu_prepare: could not fetch the wheels"; exit 1; }

{
  echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- csrc ops setup.py cmake || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%MZ) with $(python3 -c 'import torch; print("torch", torch.__version__)') and $(nvcc --version | tail -1)"
  echo "library: $(basename "$lib") $(du -h "$lib" | cut -f1), sm_90"
  echo "wheels: $(ls "$carry/wheels" | tr '\n' ' ')"
} >"$carry/PREPARED"
size=$(du -sb "$carry" | cut -f1)
cat "$carry/PREPARED"
echo "carry folder: $((size / 1024 / 1024)) MiB"
if [ "$size" -ge $((60 * 1024 * 1024)) ]; then
  echo "gpu_prepare: $carry is $((size / 1024 / 1024)) MiB, too close to the 64 MiB the tool carries"
  exit 1
fi
echo "ready: run scripts/gpu_check.sh on the GPU machine with carry=[\"$carry\"] (scripts/GPU.md)"
