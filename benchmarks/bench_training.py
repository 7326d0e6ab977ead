"""The diffusion part of a training step, side by side in one run: q_sample,
then (the model excluded: its output is a given tensor that requires grad)
the loss against the target, forward and backward.

    python3 benchmarks/bench_training.py [--device cpu|cuda] [--reps 20] [--output F.json]

Three ways, each timed forward + backward (noise drawn beforehand, alike):
  eager     improved-diffusion's and lucidrains' chain: coefficients gathered
            and broadcast, x_t, the target, (out - target)**2, the mean over
            all but the batch, times weight[t], the batch mean
  compiled  torch.compile of that chain (its backward compiled too)
  fused     torch.ops.ddpm.q_sample, then diffusion_mse (one pass each way)
Two configurations: epsilon without weights (the common one), and v with
min-SNR weights (the most work for the chain). Per shape and dtype: the
median time of each, alternating repetition by repetition, the ratios of the
medians, the operators dispatched per step (torch.profiler, top level), and
the largest relative difference of the losses and gradients from eager.
"""
import argparse
import os
import statistics
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import alternate, count_ops, write_json  # noqa: E402

import torch_ddpm  # noqa: E402
from torch_ddpm.schedules import get_named_beta_schedule, schedule_tables  # noqa: E402

SHAPES = {"16x3x64x64": (16, 3, 64, 64), "64x4x32x32": (64, 4, 32, 32),
          "64M": (16, 4, 1024, 1024)}
CONFIGS = {"epsilon": ("epsilon", None), "v-min_snr": ("v", "min_snr")}
T = 1000


def eager_step(x_start, noise, t, model_output, sqrt_ac, sqrt_1m_ac, weight, target):
    """The chain as improved-diffusion writes it (float32 coefficients
    broadcast to the data's shape)."""
    shape = (-1,) + (1,) * (x_start.dim() - 1)
    a = sqrt_ac[t].float().view(shape)
    b = sqrt_1m_ac[t].float().view(shape)
    x_t = a * x_start + b * noise
    if target == "epsilon":
        want = noise
    else:
        want = a * noise - b * x_start
    loss = ((model_output - want) ** 2).mean(dim=list(range(1, x_start.dim())))
    if weight is not None:
        loss = loss * weight[t].float()
    return x_t, loss.mean()


def fused_step(x_start, noise, t, model_output, sqrt_ac, sqrt_1m_ac, weight, target):
    x_t = torch.ops.ddpm.q_sample(x_start, t, noise, sqrt_ac, sqrt_1m_ac)
    loss = torch.ops.ddpm.diffusion_mse(model_output, x_start, noise, t, sqrt_ac, sqrt_1m_ac,
                                        weight, target)
    return x_t, loss.mean()


def bench(shape, dtype, config, device, reps, warmup, compile_too):
    target, weighting = CONFIGS[config]
    tabs = {k: v.to(device) for k, v in schedule_tables(get_named_beta_schedule("cosine", T)).items()}
    sqrt_ac, sqrt_1m_ac = tabs["sqrt_alphas_cumprod"], tabs["sqrt_one_minus_alphas_cumprod"]
    weight = None
    if weighting is not None:
        schedule = types.SimpleNamespace(alphas_cumprod=tabs["alphas_cumprod"].cpu())
        weight = torch_ddpm.loss_weights(schedule, weighting, gamma=5.0,
                                         prediction=target).to(device)
    gen = torch.Generator().manual_seed(0)
    x_start = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    noise = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    out = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_()
    t = torch.randint(0, T, (shape[0],), generator=gen).to(device)
    args = (x_start, noise, t, out, sqrt_ac, sqrt_1m_ac, weight, target)

    fns = {"eager": eager_step, "fused": fused_step}
    if compile_too:
        torch._dynamo.reset()  # each case compiles afresh (no recompile limit across cases)
        fns["compiled"] = torch.compile(eager_step, dynamic=False)

    def run(fn):
        out.grad = None
        x_t, loss = fn(*args)
        loss.backward()
        return x_t, loss.detach(), out.grad

    results = {name: run(fn) for name, fn in fns.items()}  # compiles here
    times = alternate({name: (lambda fn=fn: run(fn)) for name, fn in fns.items()}, reps, warmup,
                      device)
    row = {"shape": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
           "config": config, "device": device}
    for name, ts in times.items():
        row[f"{name}_s"] = statistics.median(ts)
        row[f"{name}_ops"] = count_ops(lambda fn=fns[name]: run(fn), device)[0]
    for name in fns:
        if name != "fused":
            row[f"{name}_over_fused"] = row[f"{name}_s"] / row["fused_s"]
    # like with like: the same x_t, loss and gradient as eager, to rounding
    want = results["eager"]
    for name in fns:
        if name == "eager":
            continue
        rel = []
        for got, w in zip(results[name], want):
            w = w.double()
            rel.append(((got.double() - w).abs().max() / w.abs().max().clamp(min=1e-30)).item())
        row[f"{name}_max_rel_diff"] = max(rel)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--output")
    args = p.parse_args(argv)
    compile_too = not args.no_compile and hasattr(torch, "compile")
    rows = []
    print(f"# torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; q_sample + loss, "
          f"forward + backward, median of {args.reps}")
    for shape in args.shapes:
        for dtype in args.dtypes:
            for config in args.configs:
                reps = max(3, args.reps // 4) if shape == "64M" else args.reps
                r = bench(SHAPES[shape], getattr(torch, dtype), config, args.device, reps,
                          args.warmup, compile_too)
                rows.append(r)
                line = (f"{r['shape']:>14} {r['dtype']:>8} {config:>9}  fused "
                        f"{r['fused_s'] * 1e3:8.2f} ms ({r['fused_ops']} ops)  eager "
                        f"{r['eager_s'] * 1e3:8.2f} ms ({r['eager_ops']} ops) "
                        f"{r['eager_over_fused']:5.2f}x")
                if compile_too:
                    line += (f"  compiled {r['compiled_s'] * 1e3:8.2f} ms "
                             f"{r['compiled_over_fused']:5.2f}x")
                line += f"  max rel diff {r['fused_max_rel_diff']:.1e}"
                print(line, flush=True)
    if args.output:
        write_json(args.output, rows)
    return rows


if __name__ == "__main__":
    main()
