"""The CPU in-kernel-noise operators on shapes that exercise the noise pass's
edges (sample boundaries inside 1024-element blocks and inside the quarter
blocks the AVX-512 pass steps on, samples shorter than a quarter, a tail
block, several parallel chunks), for comparing the CPU generators.

python3 noise_paths.py OUT.pt  saves compute() and the generator that ran.
"""
import os
import sys

import torch

import reference as ref
from torch_ddpm.tables import step_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "python_bindings") not in sys.path:
    sys.path.append(os.path.join(ROOT, "python_bindings"))
import torch_ddpm  # noqa: E402,F401  (registers torch.ops.ddpm)

SHAPES = [(1,), (5, 3), (37, 5), (3, 1, 257), (9, 3, 61, 67), (2, 4096 + 13)]


def exact_random(shape, g):
    """Values in [-2, 2) on a 2^-19 grid, drawn as integers: the same on every
    CPU, unlike torch.randn, whose vectorized kernels differ by instruction set
    (test_isa.py compares CPUs)."""
    return torch.randint(-2**20, 2**20, shape, generator=g).double() / 2**19


def compute(tab=None):
    """tab: the schedule tables (default ref.make_tables(100))."""
    g = torch.Generator().manual_seed(5)
    tab = ref.make_tables(100) if tab is None else tab
    step = step_tables("p_sample", tab)
    q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    results = {}
    for shape in SHAPES:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            x = exact_random(shape, g).to(dtype)
            wide = (shape[0], 2 * shape[1]) + shape[2:] if len(shape) > 1 else shape
            out = exact_random(wide, g).to(dtype)
            t = torch.randint(0, 100, (shape[0],), generator=g)
            key = f"{shape}-{dtype}"
            results["normal-" + key] = torch.ops.ddpm.philox_normal(x, 11, 4)
            results["q-" + key] = torch.ops.ddpm.q_sample_philox(x, t, 11, 4, *q_tabs)
            if len(shape) > 1:
                results["p-" + key] = torch.ops.ddpm.p_sample_philox(
                    out[:, :shape[1]], x, t, 11, 4, *step, "epsilon", "fixed_small",
                    True)
                results["p-learned-" + key] = torch.ops.ddpm.p_sample_philox(
                    out, x, t, 11, 4, *step, "v", "learned_range", False)
    return results


if __name__ == "__main__":
    torch.save({"generator": torch.ops.ddpm._cpu_noise_generator(), "results": compute()},
               sys.argv[1])
