"""Builds the Python package torch_ddpm and its operator library torch_ddpm._C.

    python3 setup.py build_ext --inplace      # CPU only
    WITH_CUDA=1 python3 setup.py build_ext --inplace   # plus the CUDA kernels

The CUDA part is built only when WITH_CUDA=1 is set, never because a GPU
happens to be visible; the architectures come from TORCH_CUDA_ARCH_LIST, or
when it is unset from the visible GPUs, or without one "9.0" (the H100/H200).
The kernels compile for sm_75 to sm_100. The same sources build with
CMakeLists.txt.
"""
import glob
import os

from setuptools import setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources(*patterns):
    return sorted(
        os.path.relpath(path, ROOT)
        for pattern in patterns
        for path in glob.glob(os.path.join(ROOT, pattern))
    )


def extension():
    with_cuda = os.environ.get("WITH_CUDA", "0") == "1"
    cpu_sources = sources(
        "csrc/cpu/*.cpp", "ops/*.cpp", "ops/cpu/*.cpp", "ops/autograd/*.cpp"
    )
    # -fno-trapping-math lets GCC vectorize the loops' comparisons (clamp,
    # clip mask); results are unchanged, only FP exception flags may differ.
    # -ffp-contract=off: the in-kernel noise (csrc/ddpm/philox.h) rounds every
    # operation like CUDA's _rn intrinsics and writes its fused multiply-adds
    # out; one the compiler added in a clone would change its bits.
    # -fno-math-errno lets sqrt vectorize.
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp", "-fno-trapping-math",
                 "-ffp-contract=off", "-fno-math-errno"]
    kwargs = dict(
        name="torch_ddpm._C",
        include_dirs=[os.path.join(ROOT, "csrc"), os.path.join(ROOT, "ops")],
        extra_link_args=["-fopenmp"],
    )
    if not with_cuda:
        return CppExtension(
            sources=cpu_sources, extra_compile_args={"cxx": cxx_flags}, **kwargs
        )
    # empty counts as unset, as for PyTorch (and scripts/test.sh)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # No GPU to build for (CI, a login node): the H100/H200. With a GPU
        # visible, PyTorch builds for it; a forced 9.0 gave an A100 or RTX
        # user "no kernel image is available" at the first launch.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
    print(f"torch_ddpm: CUDA kernels for TORCH_CUDA_ARCH_LIST="
          f"{os.environ.get('TORCH_CUDA_ARCH_LIST') or 'the visible GPUs'}")
    return CUDAExtension(
        sources=cpu_sources + sources("csrc/cuda/*.cu", "ops/cuda/*.cpp"),
        define_macros=[("DDPM_WITH_CUDA", "1")],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-std=c++17", "--expt-relaxed-constexpr", "-lineinfo"],
        },
        **kwargs,
    )


setup(
    name="torch_ddpm",
    version="0.1.0",
    description="Fused PyTorch operators for denoising diffusion (DDPM) math",
    package_dir={"": "python_bindings"},
    packages=["torch_ddpm"],
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    python_requires=">=3.8",
    install_requires=["torch>=1.13"],
    entry_points={"console_scripts": ["torch-ddpm=torch_ddpm.__main__:main"]},
)
