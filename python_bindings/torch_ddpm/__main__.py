"""Command-line entry points: python3 -m torch_ddpm <command> [options].

  demo    the main job: train a diffusion model on scikit-learn's digits and
          sample from it (full chain and DDIM), with a check that the samples
          look like the data; writes PNGs and metrics
  bench   the benchmark: fused operators vs improved-diffusion's chain, a
          lean eager chain, torch.compile of it, and a plain copy
  bench-noise  a whole step with its noise: in-kernel Philox noise vs
          randn_like plus the fused operator vs improved-diffusion's chain
  bench-loops  the host's time per step of every sampling loop we provide
          or patch (a null model), against the minimal raw-operator loop
  steps   the operators end to end: q_sample for training batches and a full
          fused p_sample chain driven by the exact denoiser of Gaussian data,
          whose samples must come out with the data's standard deviation.
  schemas every ddpm operator's schema as registered, one per line, sorted
          (tests/python/published_schemas.txt is this output)
"""
import argparse
import sys
import time

import torch

from . import DiffusionSchedule, get_named_beta_schedule


def gaussian_oracle_eps(x_t, t, sched, data_std):
    """E[eps | x_t] when x_0 ~ N(0, data_std^2 I): the ideal epsilon model."""
    abar = sched.alphas_cumprod[t].view(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)
    return (1 - abar).sqrt() * x_t / (abar * data_std**2 + 1 - abar)


def run_steps(args):
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(args.seed)
    sched = DiffusionSchedule(get_named_beta_schedule(args.schedule, args.timesteps)).to(device)
    shape = (args.batch, 3, args.size, args.size)
    print(f"torch {torch.__version__}, device {device}, dtype {dtype}, threads {torch.get_num_threads()}")
    print(f"schedule {args.schedule}, T = {sched.num_timesteps}, batch shape {shape}")

    # Training-style use: noise random batches at random t.
    x0 = torch.randn(shape, device=device, dtype=dtype) * args.data_std
    start = time.perf_counter()
    worst = 0.0
    for _ in range(args.train_steps):
        t = torch.randint(0, sched.num_timesteps, (args.batch,), device=device)
        noise = torch.randn_like(x0)
        x_t = sched.q_sample(x0, t, noise)
        a = sched.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1)
        b = sched.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1)
        worst = max(worst, (x_t.double() - (a * x0.double() + b * noise.double())).abs().max().item())
    elapsed = time.perf_counter() - start
    print(f"q_sample: {args.train_steps} batches in {elapsed:.2f} s; "
          f"max |error| vs the float64 formula {worst:.2e}")

    # Sampling: the full reverse chain with the fused p_sample.
    x = torch.randn(shape, device=device, dtype=dtype)
    start = time.perf_counter()
    for i in reversed(range(sched.num_timesteps)):
        t = torch.full((args.batch,), i, device=device, dtype=torch.long)
        eps = gaussian_oracle_eps(x, t, sched, args.data_std)
        x, _ = sched.p_sample(eps, x, t, model_mean_type="epsilon",
                              model_var_type="fixed_small", clip_denoised=False)
        if args.progress and (i % max(1, sched.num_timesteps // 5) == 0):
            print(f"  p_sample t = {i:4d}: sample std {x.float().std().item():.4f}")
    elapsed = time.perf_counter() - start
    std = x.double().std().item()
    print(f"p_sample: {sched.num_timesteps} fused steps in {elapsed:.2f} s "
          f"({1e3 * elapsed / sched.num_timesteps:.2f} ms/step)")
    ok = abs(std - args.data_std) < 0.05 * args.data_std
    print(f"sample std {std:.4f} vs data std {args.data_std:.4f}: {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


def registered_schemas():
    """Every ddpm operator's schema as registered, sorted by name."""
    if hasattr(torch._C, "_dispatch_get_all_op_names"):
        names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ddpm::")]
    else:  # torch 1.13
        names = [s.name + ("." + s.overload_name if s.overload_name else "")
                 for s in torch._C._jit_get_all_schemas() if s.name.startswith("ddpm::")]
    schemas = []
    for name in sorted(set(names)):
        op, _, overload = name[len("ddpm::"):].partition(".")
        schemas.append(str(getattr(getattr(torch.ops.ddpm, op), overload or "default")._schema))
    return schemas


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m torch_ddpm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    steps = sub.add_parser("steps", help="q_sample and a full p_sample chain, checked")
    steps.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    steps.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    steps.add_argument("--schedule", default="linear", choices=["linear", "cosine"])
    steps.add_argument("--timesteps", type=int, default=1000, help="T (default: 1000)")
    steps.add_argument("--batch", type=int, default=16)
    steps.add_argument("--size", type=int, default=64, help="image side (default: 64)")
    steps.add_argument("--train-steps", type=int, default=200, help="q_sample batches (default: 200)")
    steps.add_argument("--data-std", type=float, default=0.5, help="std of the Gaussian data (default: 0.5)")
    steps.add_argument("--seed", type=int, default=0)
    steps.add_argument("--no-progress", dest="progress", action="store_false")
    sub.add_parser("schemas", help="print every operator's schema as registered")
    from .tools import bench, bench_loops, bench_noise, demo

    demo_parser = sub.add_parser("demo", help="train and sample a small diffusion model (see --help)",
                                 description=demo.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_arguments(demo_parser)

    bench_parser = sub.add_parser("bench", help="benchmark the operators (see --help)",
                                  description=bench.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(bench_parser)
    noise_parser = sub.add_parser("bench-noise", help="benchmark in-kernel noise (see --help)",
                                  description=bench_noise.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_noise.add_arguments(noise_parser)
    loops_parser = sub.add_parser("bench-loops", help="benchmark the sampling loops' host time",
                                  description=bench_loops.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_loops.add_arguments(loops_parser)
    args = parser.parse_args(argv)
    if args.command == "steps":
        return run_steps(args)
    if args.command == "schemas":
        print("\n".join(registered_schemas()))
        return 0
    if args.command == "demo":
        return demo.run(args)
    if args.command == "bench":
        bench.run(args)
        return 0
    if args.command == "bench-noise":
        bench_noise.run(args)
        return 0
    if args.command == "bench-loops":
        bench_loops.run(args)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
