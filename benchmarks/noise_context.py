"""How much what runs before p_sample_philox.sample_out adds to its time.

python3 benchmarks/noise_context.py [--reps 60] [--threads 2]

Times the in-kernel-noise step (16x3x64x64 float32, epsilon / fixed_small, inputs
rotated through twice the last-level cache) right after each of: nothing but the
previous step, a 1 ms sleep, a 1 ms spin in Python, randn_like, randn_like plus
p_sample.sample_out, improved-diffusion's chain, and a torch.add of the same size.
Interleaved in one run, so that the slow and fast minutes of a shared machine fall on
every case alike. Explains why bench-noise's in-kernel figures sit above back-to-back
ones (benchmarks/results/2026-11-22-cpu-in-kernel-noise/).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

from torch_ddpm.tools.bench import Case, input_sets, quartiles  # noqa: E402
from torch_ddpm.tools.bench_noise import _step  # noqa: E402


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    case = Case("p_sample", (16, 3, 64, 64), torch.float32, "cpu")
    gen = torch.Generator().manual_seed(0)
    sets = input_sets(case.min_bytes(), "cpu")
    inputs = [case.make_inputs(gen) for _ in range(sets)]
    before = {
        "the previous step": lambda i, k: None,
        "a 1 ms sleep": lambda i, k: time.sleep(1e-3),
        "a 1 ms spin": lambda i, k: spin(1e-3),
        "randn_like": lambda i, k: torch.randn_like(i["x"]),
        "randn_like + sample_out": lambda i, k: _step(case, "randn+fused_sample", i, 4 * k),
        "improved-diffusion chain": lambda i, k: _step(case, "randn+improved", i, 4 * k),
        "torch.add": lambda i, k: torch.add(i["x"], i["other"], out=i["out1"]),
    }
    names = list(before)
    times = {n: [] for n in names}
    for k in range(sets):
        _step(case, "philox_sample", inputs[k], 4 * k)
    for rep in range(args.reps):
        for j, name in enumerate(names):
            slot = rep * len(names) + j
            before[name](inputs[(slot + 1) % sets], rep)
            start = time.perf_counter()
            _step(case, "philox_sample", inputs[slot % sets], 4 * rep)
            times[name].append(time.perf_counter() - start)
    print(f"# p_sample_philox.sample_out 16x3x64x64 float32, {args.threads} threads, "
          f"{args.reps} reps: min / q1 / median / q3 in us")
    for name in names:
        q1, med, q3 = quartiles(times[name])
        print(f"after {name:26s} {min(times[name]) * 1e6:7.1f} {q1 * 1e6:7.1f} "
              f"{med * 1e6:7.1f} {q3 * 1e6:7.1f}")


if __name__ == "__main__":
    main()
