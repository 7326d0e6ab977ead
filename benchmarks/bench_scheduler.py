"""diffusers' schedulers' step (DDPM, DDIM, Euler, Euler ancestral,
DPM-Solver++) against torch_ddpm's, side by side in one run.

    python3 benchmarks/bench_scheduler.py [--device cpu|cuda] [--reps 30] [--output F.json]

For each shape and dtype: the median time of one step (model output given,
noise drawn from a seeded generator as diffusers draws it), the two
alternating repetition by repetition so that drift hits both alike, the ratio
of the medians and the median of the per-repetition ratios; and how many
operators each step dispatches (top-level aten:: / ddpm:: calls counted by
torch.profiler; on CUDA also the kernel launches).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import alternate, count_ops, write_json  # noqa: E402

import torch_ddpm  # noqa: E402,F401  (loads the operators)
from torch_ddpm.fused_schedulers import DDIMScheduler, DDPMScheduler  # noqa: E402

STEP_INDEX = 10  # the step timed: a middle one (with noise; DPM-Solver at its full order)

SHAPES = {"1x4x64x64": (1, 4, 64, 64), "16x4x64x64": (16, 4, 64, 64),
          "4x4x128x128": (4, 4, 128, 128)}


def _one_step(scheduler, model_output, timestep, sample, seed, device):
    generator = torch.Generator(device=device).manual_seed(seed)
    if hasattr(scheduler, "sigmas"):
        # the sigma schedulers keep their place in the chain (and DPM-Solver
        # its history): the same step every repetition
        scheduler._step_index = STEP_INDEX
        scheduler.is_scale_input_called = True
        if hasattr(scheduler, "model_outputs"):
            scheduler.model_outputs = list(scheduler.bench_history)
            scheduler.lower_order_nums = scheduler.config.solver_order
    return scheduler.step(model_output, timestep, sample, generator=generator).prev_sample


# name -> (scheduler class name, its config)
CONFIGS = {
    # epsilon / fixed_small, noise drawn as diffusers draws it
    "ddpm": ("DDPMScheduler", dict(variance_type="fixed_small", prediction_type="epsilon")),
    # DeepFloyd IF's dynamic thresholding (the quantile is most of the time)
    "ddpm-threshold": ("DDPMScheduler", dict(variance_type="fixed_small", thresholding=True,
                                             dynamic_thresholding_ratio=0.95,
                                             sample_max_value=1.5)),
    # Stable Diffusion's DDIM: no clipping, eta = 0 (no noise: the step math alone)
    "ddim": ("DDIMScheduler", dict(prediction_type="epsilon", clip_sample=False)),
    # DDIMScheduler's defaults: clip_sample=True, the model's own noise kept
    "ddim-clip": ("DDIMScheduler", dict(prediction_type="epsilon")),
    # Stable Diffusion's schedule under the schedulers its pipelines offer
    "euler": ("EulerDiscreteScheduler", dict(beta_schedule="scaled_linear",
                                             beta_start=0.00085, beta_end=0.012)),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler",
                        dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)),
    "dpm++2m": ("DPMSolverMultistepScheduler", dict(beta_schedule="scaled_linear",
                                                    beta_start=0.00085, beta_end=0.012)),
    "dpm++3m-sde": ("DPMSolverMultistepScheduler",
                    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         solver_order=3, algorithm_type="sde-dpmsolver++")),
}


def schedulers(name):
    """(diffusers', ours) for CONFIGS[name]."""
    import diffusers

    cls, kw = CONFIGS[name]
    if cls in ("DDPMScheduler", "DDIMScheduler"):
        ours = {"DDPMScheduler": DDPMScheduler, "DDIMScheduler": DDIMScheduler}[cls]
    else:
        import torch_ddpm.diffusers

        ours = getattr(torch_ddpm.diffusers, cls)
    return getattr(diffusers, cls)(**kw), ours(**kw)


def bench(shape, dtype, device, reps, warmup, scheduler="ddpm"):
    theirs, ours = schedulers(scheduler)
    for s in (theirs, ours):
        s.set_timesteps(50)
    timestep = theirs.timesteps[STEP_INDEX]
    if hasattr(ours, "model_outputs"):  # DPM-Solver's earlier x_0 predictions, the same
        gen = torch.Generator().manual_seed(7)
        theirs.bench_history = ours.bench_history = [
            torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
            for _ in range(ours.config.solver_order)]
    gen = torch.Generator().manual_seed(0)
    sample = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    model_output = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    steps = {name: (lambda s=s: _one_step(s, model_output, timestep, sample, 1, device))
             for name, s in (("diffusers", theirs), ("torch_ddpm", ours))}
    times = alternate(steps, reps, warmup, device)
    row = {"scheduler": scheduler, "shape": "x".join(map(str, shape)),
           "dtype": str(dtype).replace("torch.", ""), "device": device}
    for name, ts in times.items():
        row[f"{name}_s"] = statistics.median(ts)
        row[f"{name}_ops"], row[f"{name}_launches"] = count_ops(steps[name], device)
    row["diffusers_over_torch_ddpm"] = row["diffusers_s"] / row["torch_ddpm_s"]
    row["paired_median"] = statistics.median(
        a / b for a, b in zip(times["diffusers"], times["torch_ddpm"]))
    # the same step, so the comparison is of like with like
    a, b = steps["diffusers"](), steps["torch_ddpm"]()
    row["max_abs_difference"] = (a.float() - b.float()).abs().max().item()
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--schedulers", nargs="+", default=["ddpm", "ddim"], choices=list(CONFIGS))
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--output")
    args = p.parse_args(argv)
    rows = []
    print(f"# torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for scheduler in args.schedulers:
        for shape in args.shapes:
            for dtype in args.dtypes:
                r = bench(SHAPES[shape], getattr(torch, dtype), args.device, args.reps,
                          args.warmup, scheduler)
                rows.append(r)
                print_row(r)
    if args.output:
        write_json(args.output, rows)
    return rows


def print_row(r):
    print(f"{r['scheduler']:>14} {r['shape']:>12} {r['dtype']:>8}  "
          f"diffusers {r['diffusers_s'] * 1e3:8.3f} ms ({r['diffusers_ops']} ops, "
          f"{r['diffusers_launches']} launches)  torch_ddpm {r['torch_ddpm_s'] * 1e3:8.3f} ms "
          f"({r['torch_ddpm_ops']} ops, {r['torch_ddpm_launches']} launches)  "
          f"ratio {r['diffusers_over_torch_ddpm']:.2f}x (paired {r['paired_median']:.2f}x)  "
          f"max |diff| {r['max_abs_difference']:.2e}", flush=True)


if __name__ == "__main__":
    main()
