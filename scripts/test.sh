#!/usr/bin/env bash
# Runs every test (GoogleTest through ctest, then pytest) against both
# PyTorches: torch 2.11 from PyPI (python3) and Debian's torch 1.13
# (/usr/bin/python3). Installs what is missing first. Exits non-zero on any
# failure. Set TORCHES="torch2" or "torch1" to run one of them.
# Where nvcc is present (it is in CI), the CUDA extension is also built
# against torch 2.11 (WITH_CUDA=1, compiled and linked: a check that can fail),
# loaded without a GPU, and the suite run on it; CUDA=0 skips that.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
bash scripts/install_deps.sh

TORCHES=${TORCHES:-"torch2 torch1"}
for tag in $TORCHES; do
  case $tag in
    torch2) py=python3 ;;
    torch1) py=/usr/bin/python3 ;;
    *) echo "unknown torch tag $tag"; exit 2 ;;
  esac
  bash scripts/build.sh "$py" "$tag" all
  echo "== [$tag] GoogleTest (ctest)"
  (cd "build/$tag/cmake" && ctest --output-on-failure)
  # The loops and noise generator this CPU does not pick (AVX2 / x86-64-v3,
  # SSE2) run on CPUs emulated by qemu-user (tests/python/ops/test_isa.py does
  # the same for the operators)
  if command -v qemu-x86_64 >/dev/null && [ "$(uname -m)" = x86_64 ] && [ -x "build/$tag/cmake/ddpm_tests" ]; then
    for cpu in Broadwell Nehalem; do
      echo "== [$tag] GoogleTest on an emulated $cpu (qemu-user)"
      qemu-x86_64 -cpu "$cpu" "build/$tag/cmake/ddpm_tests" --gtest_brief=1 2> >(grep -v "TCG doesn't support" >&2)
    done
  fi
  echo "== [$tag] install, then find_package(torch_ddpm) from a consumer project"
  cmake --install "build/$tag/cmake" >/dev/null
  cmake -S tests/cmake_consumer -B "build/$tag/consumer" -G Ninja \
    -DCMAKE_PREFIX_PATH="$PWD/build/$tag/install;$(cat "build/$tag/cmake/torch_prefix")" >/dev/null
  cmake --build "build/$tag/consumer" >/dev/null
  "build/$tag/consumer/consumer"
  aoti_runner=""
  if [ "$tag" = torch2 ]; then
    # the AOTInductor example, a user's project against the installed package,
    # with Torch found from torch.utils.cmake_prefix_path alone: where
    # find_package(Torch) by itself links Debian's libc10 (cmake/DdpmFindTorch.cmake)
    echo "== [$tag] examples/aoti (AOTInductor package runner) against the installed package"
    cmake -S examples/aoti -B "build/$tag/aoti" -G Ninja \
      -DCMAKE_PREFIX_PATH="$PWD/build/$tag/install;$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')" >/dev/null
    cmake --build "build/$tag/aoti" >/dev/null
    torch_lib=$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    ldd "build/$tag/aoti/ddpm_run_package" | grep -q "libc10.so => $torch_lib/" \
      || { echo "examples/aoti links another PyTorch's libc10:"; ldd "build/$tag/aoti/ddpm_run_package" | grep c10; exit 1; }
    aoti_runner="$PWD/build/$tag/aoti/ddpm_run_package"
  fi
  echo "== [$tag] pytest"
  DDPM_CPP_BUILD_DIR="$PWD/build/$tag/cmake" DDPM_AOTI_RUNNER="$aoti_runner" \
    bash scripts/with_build.sh "$tag" "$py" -m pytest tests/python -q -rs -p no:cacheprovider
  # The comparisons with other libraries (diffusers, lucidrains, the eager
  # formulas the drop-ins replace) again on ATen's kernels for CPUs without
  # AVX-512 (avx2) and without AVX (default): their rounding is ATen's, and
  # what we assert must hold on any x86-64 machine. Same build.
  for capability in avx2 default; do
    echo "== [$tag] pytest tests/python/adapters under ATEN_CPU_CAPABILITY=$capability"
    ATEN_CPU_CAPABILITY=$capability \
      bash scripts/with_build.sh "$tag" "$py" -m pytest tests/python/adapters -q -p no:cacheprovider
  done
  if [ "$tag" = torch2 ]; then
    # the wheel reuses this build's object files (same flags): no extra compile
    echo "== [$tag] pip wheel, install into a fresh venv, import from outside the tree"
    TORCH_DDPM_BUILD_TEMP="$PWD/build/$tag/temp" PYTHON="$py" bash scripts/wheel_check.sh
  fi
done

echo "== csrc/ is torch-free: the CPU kernels compile with only csrc/ on the include path"
for cpp in csrc/cpu/*.cpp; do
  g++ -std=c++17 -fsyntax-only -Icsrc "$cpp"
done

echo "== CUDA kernels run on the CPU (host emulation, tests/cuda_host)"
bash scripts/cuda_host_check.sh

if [ "${CUDA:-1}" = 1 ] && command -v nvcc >/dev/null; then
  # device code only, for sm_90, with only csrc/ on the include path: the
  # kernels compile without PyTorch, and none spills past its register budget
  echo "== CUDA kernels: register budgets on sm_90, no PyTorch headers (scripts/check_registers.py)"
  python3 scripts/check_registers.py --jobs "${MAX_JOBS:-$(nproc)}"
  echo "== [torch2-cuda] WITH_CUDA=1 setup.py build_ext (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset})"
  WITH_CUDA=1 bash scripts/build.sh python3 torch2-cuda python
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    # unset: setup.py builds for the visible GPU, or 9.0 without one (here,
    # and the H100/H200 is 9.0 too)
    grep -q "code=sm_90" build/torch2-cuda/temp/build.ninja \
      || { echo "setup.py's default architecture (sm_90) did not reach nvcc"; exit 1; }
  fi
  bash scripts/with_build.sh torch2-cuda python3 - <<'PY'
import torch, torch_ddpm
# every ddpm operator (each overload) with a CPU kernel has a CUDA one
ops = [name for name in torch._C._dispatch_get_all_op_names() if name.startswith("ddpm::")]
with_cpu = [op for op in ops if "\nCPU:" in torch._C._dispatch_dump(op)]
missing = [op for op in with_cpu if "\nCUDA:" not in torch._C._dispatch_dump(op)]
assert len(with_cpu) >= 23 and not missing, f"no CUDA kernel for {missing} (of {len(with_cpu)})"
print(f"CUDA build loads without a GPU; all {len(with_cpu)} ddpm operators with a CPU kernel "
      "have a CUDA one")
PY
  echo "== [torch2-cuda] pytest (CPU cases; CUDA cases need a GPU)"
  bash scripts/with_build.sh torch2-cuda python3 -m pytest tests/python -q -rs -p no:cacheprovider
fi
