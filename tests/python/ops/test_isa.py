"""The CPU code this machine never picks: the AVX2 (x86-64-v3) and SSE2 clones
of the element loops and the AVX2 and portable noise generators, run on CPUs
emulated by qemu-user and held bit for bit against this machine's.

The loader picks a loop clone per CPU (csrc/cpu/loops.h). An "arch=haswell"
clone was picked by CPU model, so every AVX2 CPU but Haswell itself (Broadwell,
Skylake client, AMD Zen 1-3) ran the SSE2 loops; Broadwell below is such a CPU.
"""
import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch

import torch_ddpm  # noqa: F401  (registers torch.ops.ddpm)
from helpers import assert_results_match

# the scripts the emulated CPUs run (isa_paths.py) sit beside the helpers
HELPERS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU = shutil.which("qemu-x86_64")
X86_LINUX = platform.machine() == "x86_64" and sys.platform.startswith("linux")
# x86-64-v3: what the "arch=x86-64-v3" clone may use (the Haswell set)
V3_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}


def _cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not X86_LINUX, reason="the loop clones exist on x86-64 Linux only")
def test_loop_clone_matches_this_cpu():
    flags = _cpu_flags()
    if "avx512f" in flags:
        expected = "avx512f"
    elif V3_FLAGS <= flags:
        expected = "arch=x86-64-v3"
    else:
        expected = "default"
    assert torch.ops.ddpm._cpu_loop_clone() == expected


def _assert_same(name, got, want):
    if want.dtype == torch.float64 and not torch.equal(got, want):
        # glibc's double exp and log choose FMA or SSE2 code by CPU, and the
        # learned variances call them: an ulp of exp(log_var / 2), times the
        # noise (|noise| < 2 here) and the chain rule, on O(1) values
        err = (got - want).abs()
        bound = 2.0**-48 * torch.clamp(want.abs(), min=1.0)
        assert bool((err <= bound).all()), f"{name}: differs by {err.max().item():.3g}"
        return
    assert torch.equal(got, want), f"{name}: not bit-identical to this CPU's result"


# (qemu CPU model, the loop clone and the noise generator it must get)
EMULATED = [("Broadwell", "arch=x86-64-v3", "avx2"), ("Nehalem", "default", "default")]


@pytest.mark.skipif(not X86_LINUX, reason="the loop clones exist on x86-64 Linux only")
@pytest.mark.skipif(QEMU is None, reason="qemu-user is not installed (apt-get install qemu-user)")
@pytest.mark.parametrize("cpu,loop_clone,generator", EMULATED)
def test_emulated_cpu_gives_the_same_results(cpu, loop_clone, generator, tmp_path):
    import isa_paths
    import reference as ref

    tables = ref.make_tables(100)  # made here: ATen's float64 log differs by ISA
    torch.save(tables, tmp_path / "tables.pt")
    out = tmp_path / "results.pt"
    # the emulated CPU picks its own ATen kernels: a capability capped for this
    # process (ATEN_CPU_CAPABILITY=avx2) would be an illegal instruction there
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    run = subprocess.run(
        [QEMU, "-cpu", cpu, sys.executable, os.path.join(HELPERS, "isa_paths.py"), str(out),
         str(tmp_path / "tables.pt")],
        cwd=HELPERS, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    theirs = torch.load(out)
    assert (theirs["loop_clone"], theirs["generator"]) == (loop_clone, generator)
    assert_results_match(theirs["results"], isa_paths.compute(tables),
                         lambda label, a, b: _assert_same(f"{label} on {cpu}", a, b))
