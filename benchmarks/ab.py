"""A/B: the fused operators of two builds, timed alternately in one run.

    python3 benchmarks/ab.py --a /old/_C.so --b /new/_C.so [--rounds 5]

Each round runs one process per build (a process can load one library: both
register the ddpm namespace), in alternating order, so drift in the machine's
state falls on both sides alike. Every process times the same operator calls
on the same shapes (the operators' schemas are the same in both builds) and
reports per-call medians; the table gives each side's median over the rounds
and the ratio B/A (below 1: B is faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

# 4x3x8x8: a call where the host's work is all there is
SHAPES = {"4x3x8x8": (4, 3, 8, 8), "16x3x64x64": (16, 3, 64, 64), "64M": (16, 4, 1024, 1024)}


def worker(shapes, threads, reps):
    import time

    import torch

    torch.ops.load_library(os.environ["AB_LIBRARY"])
    torch.set_num_threads(threads)
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    tab = {
        "sa": abar.sqrt(), "s1ma": (1 - abar).sqrt(), "r": abar.rsqrt(), "rm1": (1 / abar - 1).sqrt(),
        "c1": betas * abar_prev.sqrt() / (1 - abar), "c2": (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar),
        "var": betas * (1 - abar_prev) / (1 - abar),
    }
    tab["lv"] = torch.log(torch.cat([tab["var"][1:2], tab["var"][1:]]))
    ops = torch.ops.ddpm
    results = {}
    for name in shapes:
        shape = SHAPES[name]
        g = torch.Generator().manual_seed(0)
        x, e, m = (torch.randn(shape, generator=g) for _ in range(3))
        t = torch.randint(0, T, (shape[0],), generator=g)
        out = torch.empty_like(x)
        step = (tab["r"], tab["rm1"], tab["c1"], tab["c2"], tab["lv"], betas)
        calls = {
            "q_sample": lambda: ops.q_sample(x, t, e, tab["sa"], tab["s1ma"]),
            "q_sample.out": lambda: ops.q_sample(x, t, e, tab["sa"], tab["s1ma"], out=out),
            "posterior_mean_variance": lambda: ops.posterior_mean_variance(
                x, e, t, tab["c1"], tab["c2"], tab["var"], tab["lv"]),
            "p_sample": lambda: ops.p_sample(m, x, t, e, *step),
            "p_sample.sample_out": lambda: ops.p_sample(m, x, t, e, *step, sample=out),
            "q_sample_philox": lambda: ops.q_sample_philox(x, t, 1, 0, tab["sa"], tab["s1ma"]),
        }
        n = reps if x.numel() < 10**7 else max(5, reps // 20)
        for op, fn in calls.items():
            for _ in range(3):
                fn()
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            results[f"{op} {name}"] = statistics.median(times)
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="library A (_C*.so)")
    p.add_argument("--b", required=True, help="library B (_C*.so)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.shapes, args.threads, args.reps)))
        return
    runs = {"A": [], "B": []}
    for r in range(args.rounds):
        for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
            env = dict(os.environ, AB_LIBRARY=getattr(args, side.lower()))
            cmd = [sys.executable, __file__, "--worker", "--a", "-", "--b", "-", "--threads",
                   str(args.threads), "--reps", str(args.reps), "--shapes", *args.shapes]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            runs[side].append(json.loads(out.strip().splitlines()[-1]))
    print(f"# A: {args.a}\n# B: {args.b}\n# {args.rounds} rounds alternating, {args.threads} threads; "
          "median per call over the rounds' medians")
    print(f"{'case':45s} {'A ms':>9s} {'B ms':>9s} {'B/A':>6s}")
    for case in runs["A"][0]:
        a = statistics.median(r[case] for r in runs["A"]) * 1e3
        b = statistics.median(r[case] for r in runs["B"]) * 1e3
        print(f"{case:45s} {a:9.3f} {b:9.3f} {b / a:6.3f}")


if __name__ == "__main__":
    main()
