"""python3 -m torch_ddpm bench-noise: a whole reverse step, noise included.

Times side by side in one run, on the same inputs, one p_sample step
(epsilon, fixed_small) and one q_sample (training) per shape:
  philox        the *_philox operator: noise drawn in the kernel
  philox_out    p_sample_philox.out into preallocated outputs
  philox_sample p_sample_philox.sample_out: the sample alone, no pred_xstart
                (what a sampling loop needs)
  randn+fused   torch.randn_like(x) then the fused operator (explicit noise)
  randn+fused_out  torch.randn_like(x) then the out= variant
  randn+fused_sample  torch.randn_like(x) then p_sample.sample_out
  randn+improved   torch.randn_like(x) then improved-diffusion's chain
and reports medians, spreads and the ratios (randn+fused)/philox and
(randn+improved)/philox. Inputs rotate through enough sets to span twice the
last-level cache; with --warm one set is reused, as in a sampling loop.

Each ratio is given twice: as the ratio of the two medians, and "paired", the
median (with quartiles) of the per-repetition ratios. A repetition times every
variant within a few milliseconds, so the paired ratio cancels the slow and
fast minutes of a shared machine that the ratio of medians mixes in.
"""
import argparse
import json

import torch

from ..tables import step_tables
from .bench import (SHAPES, Case, _timer, input_sets, quartiles, rotated, rotation_bytes, run_env,
                    summarize)

VARIANTS = ["philox", "philox_out", "philox_sample", "randn+fused", "randn+fused_out",
            "randn+fused_sample", "randn+improved"]
# the variants with preallocated outputs, which q_sample's step does not have
P_SAMPLE_ONLY = ("philox_out", "philox_sample", "randn+fused_sample")


def _step(case, variant, i, offset):
    tab = case.tab
    tables = step_tables("p_sample", tab)
    if case.op == "q_sample":
        q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
        if variant.startswith("philox"):
            return torch.ops.ddpm.q_sample_philox(i["x"], i["t"], 1, offset, *q_tabs)
        noise = torch.randn_like(i["x"])
        if variant == "randn+fused":
            return torch.ops.ddpm.q_sample(i["x"], i["t"], noise, *q_tabs)
        if variant == "randn+fused_out":
            return torch.ops.ddpm.q_sample.out(i["x"], i["t"], noise, *q_tabs, out=i["out1"])
        return case.eager.q_sample(i["x"], i["t"], noise)
    modes = ("epsilon", "fixed_small", True)
    if variant == "philox":
        return torch.ops.ddpm.p_sample_philox(i["other"], i["x"], i["t"], 1, offset, *tables, *modes)
    if variant == "philox_out":
        return torch.ops.ddpm.p_sample_philox.out(i["other"], i["x"], i["t"], 1, offset, *tables,
                                                  *modes, sample=i["out1"], pred_xstart=i["out2"])
    if variant == "philox_sample":
        return torch.ops.ddpm.p_sample_philox.sample_out(i["other"], i["x"], i["t"], 1, offset,
                                                         *tables, *modes, sample=i["out1"])
    noise = torch.randn_like(i["x"])
    if variant == "randn+fused":
        return torch.ops.ddpm.p_sample(i["other"], i["x"], i["t"], noise, *tables, *modes)
    if variant == "randn+fused_out":
        return torch.ops.ddpm.p_sample.out(i["other"], i["x"], i["t"], noise, *tables, *modes,
                                           sample=i["out1"], pred_xstart=i["out2"])
    if variant == "randn+fused_sample":
        return torch.ops.ddpm.p_sample.sample_out(i["other"], i["x"], i["t"], noise, *tables,
                                                  *modes, sample=i["out1"])
    out = case.eager.mean_variance_from_output(i["other"], i["x"], i["t"], True)
    return case.eager.sample_from(out, i["x"], i["t"], noise)


# (name, numerator variant, denominator variant) of the per-repetition ratios
PAIRED_RATIOS = [("randn_fused_over_philox", "randn+fused", "philox"),
                 ("randn_fused_out_over_philox_out", "randn+fused_out", "philox_out"),
                 ("randn_fused_sample_over_philox_sample", "randn+fused_sample", "philox_sample")]


def paired_ratio(numerators, denominators):
    """[first quartile, median, third quartile] of numerators[r] / denominators[r]."""
    return list(quartiles(n / d for n, d in zip(numerators, denominators)))


def variants_for(op):
    return [v for v in VARIANTS if not (op == "q_sample" and v in P_SAMPLE_ONLY)]


def bench(case, reps, warmup, warm=False):
    gen = torch.Generator().manual_seed(0)
    sets = 1 if warm else input_sets(case.min_bytes(), case.device)
    inputs = [case.make_inputs(gen) for _ in range(sets)]
    measure = _timer(case.device)
    variants = variants_for(case.op)
    times = {v: [] for v in variants}
    for v in variants:
        for k in range(max(warmup, sets)):
            _step(case, v, inputs[k % sets], 4 * k)
    for rep in range(reps):
        for v in rotated(variants, rep):
            i = inputs[(rep * len(variants) + variants.index(v)) % sets]
            times[v].append(measure(lambda: _step(case, v, i, 4 * rep)))
    return times


def run(args):
    env = run_env(args.device, 0 if args.warm else rotation_bytes(args.device))
    print(f"# torch-ddpm bench-noise: {env}", flush=True)
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        if not args.device.startswith("cuda"):
            torch.set_num_threads(threads)
        for shape_name in args.shapes:
            for dtype_name in args.dtypes:
                for op in ("p_sample", "q_sample"):
                    case = Case(op, SHAPES[shape_name], getattr(torch, dtype_name), args.device)
                    times = bench(case, args.reps, args.warmup, args.warm)
                    row = {"op": op, "shape": shape_name, "dtype": dtype_name, "threads": threads}
                    for v, ts in times.items():
                        row[v + "_s"], row[v + "_iqr_s"] = summarize(ts)
                    base = row["philox_s"]
                    row["randn_fused_over_philox"] = row["randn+fused_s"] / base
                    row["randn_improved_over_philox"] = row["randn+improved_s"] / base
                    if "philox_out_s" in row:
                        row["randn_fused_out_over_philox_out"] = (row["randn+fused_out_s"]
                                                                  / row["philox_out_s"])
                    for name, num, den in PAIRED_RATIOS:
                        if den in times:
                            row[name + "_paired"] = paired_ratio(times[num], times[den])
                    rows.append(row)
                    parts = [f"{v} {row[v + '_s'] * 1e6:9.1f}us (+-{row[v + '_iqr_s'] * 5e5:.1f})"
                             for v in times]
                    print(f"{op:8s} {shape_name:16s} {dtype_name:8s} thr={threads}  "
                          + "  ".join(parts)
                          + f"  | randn+fused/philox {row['randn_fused_over_philox']:.2f}x"
                          + f"  randn+improved/philox {row['randn_improved_over_philox']:.2f}x"
                          + (f"  out=: {row['randn_fused_out_over_philox_out']:.2f}x"
                             if "randn_fused_out_over_philox_out" in row else "")
                          + "  | paired: " + "  ".join(
                              f"{name} {row[name + '_paired'][1]:.2f}x"
                              f" ({row[name + '_paired'][0]:.2f}-{row[name + '_paired'][2]:.2f})"
                              for name, _, _ in PAIRED_RATIOS if name + "_paired" in row),
                          flush=True)
                    with open(args.output, "w") as f:
                        json.dump({"env": env, "rows": rows}, f, indent=1)
    return rows


def add_arguments(p):
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=["64x3x32x32", "16x3x64x64", "8x3x256x256",
                                                   "latent4x4x64x64", "64M"],
                   choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "bfloat16", "float16", "float64"])
    p.add_argument("--threads", nargs="+", type=int, default=None)
    p.add_argument("--reps", type=int, default=25)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--warm", action="store_true",
                   help="one input set, reused: the cache state of a sampling loop, whose "
                        "x_t the previous step has just written (default: rotate through "
                        "twice the last-level cache)")
    p.add_argument("--output", default="bench_noise.json")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m torch_ddpm bench-noise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
