"""Builds the Python package torch_ddpm and its operator library torch_ddpm._C.

    python3 setup.py build_ext --inplace      # CPU only
    WITH_CUDA=1 python3 setup.py build_ext --inplace   # plus the CUDA kernels

The CUDA part is built only when WITH_CUDA=1 is set, never because a GPU
happens to be visible; the architectures come from TORCH_CUDA_ARCH_LIST, or
when it is unset from the visible GPUs, or without one the default of
cmake/compile_flags.txt (9.0, the H100/H200). The kernels compile for sm_75
to sm_100. The same sources build with CMakeLists.txt, with the same
result-affecting flags (cmake/compile_flags.txt). No debug info unless
TORCH_DDPM_DEBUG=1.
"""
import glob
import os

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
except ImportError as error:
    raise SystemExit(
        "torch_ddpm compiles against the torch it will run with, and none was found "
        f"({error}). Install torch first (pip install torch), then "
        "`pip install .`, or `pip install --no-build-isolation .`") from error

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources(*patterns):
    return sorted(
        os.path.relpath(path, ROOT)
        for pattern in patterns
        for path in glob.glob(os.path.join(ROOT, pattern))
    )


def compile_flags():
    """cmake/compile_flags.txt: {"cxx": [...], "cuda": [...], "cuda_arch": [...]}."""
    flags = {"cxx": [], "cuda": [], "cuda_arch": []}
    with open(os.path.join(ROOT, "cmake", "compile_flags.txt")) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if words:
                flags[words[0]].append(words[1])
    return flags


def extension():
    with_cuda = os.environ.get("WITH_CUDA", "0") == "1"
    cpu_sources = sources(
        "csrc/cpu/*.cpp", "ops/*.cpp", "ops/cpu/*.cpp", "ops/autograd/*.cpp"
    )
    flags = compile_flags()
    # No debug info unless asked (TORCH_DDPM_DEBUG=1): Python's own CFLAGS
    # carry -g, which made the library 51 MB; -g0 after them turns it off.
    debug = ["-g"] if os.environ.get("TORCH_DDPM_DEBUG") == "1" else ["-g0"]
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp", *flags["cxx"], *debug]
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
        # No GPU to build for (CI, a login node): the default of
        # compile_flags.txt. With a GPU visible, PyTorch builds for it; a
        # forced default gave an A100 or RTX user "no kernel image is
        # available" at the first launch.
        os.environ["TORCH_CUDA_ARCH_LIST"] = " ".join(flags["cuda_arch"])
    print(f"torch_ddpm: CUDA kernels for TORCH_CUDA_ARCH_LIST="
          f"{os.environ.get('TORCH_CUDA_ARCH_LIST') or 'the visible GPUs'}")
    return CUDAExtension(
        sources=cpu_sources + sources("csrc/cuda/*.cu", "ops/cuda/*.cpp"),
        define_macros=[("DDPM_WITH_CUDA", "1")],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-std=c++17", *flags["cuda"], "-lineinfo"],
        },
        **kwargs,
    )


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """TORCH_DDPM_BUILD_TEMP=dir: the object files there (another build's, with
    the same flags, so that ninja reuses them: scripts/wheel_check.sh)."""

    def finalize_options(self):
        super().finalize_options()
        if os.environ.get("TORCH_DDPM_BUILD_TEMP"):
            self.build_temp = os.environ["TORCH_DDPM_BUILD_TEMP"]


setup(
    name="torch_ddpm",
    version="0.1.0",
    description="Fused PyTorch operators for denoising diffusion (DDPM) math",
    package_dir={"": "python_bindings"},
    packages=["torch_ddpm", "torch_ddpm.tools"],
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExt},
    python_requires=">=3.8",
    install_requires=["torch>=1.13"],
    entry_points={"console_scripts": ["torch-ddpm=torch_ddpm.__main__:main"]},
)
