"""End-to-end sampling with a real UNet, side by side in one run: improved-
diffusion's loop, our drop-in's, and our drop-in's as one CUDA graph.

    python3 benchmarks/bench_sampling.py [--device cuda] [--batches 16 64] [--steps 100]

The model: diffusers' UNet2DModel in improved-diffusion's CIFAR-10 shape
(32x32, 128 base channels, 3 residual blocks per level, attention at 16x16,
a learned variance: 6 output channels); --tiny: a small one for a quick check.
The loops, each sampling a batch with 100 respaced steps of a 4000-step cosine
schedule and learned_range variances (improved-diffusion's CIFAR-10 run):
  unpatched  improved-diffusion's formulas (torch_ddpm.eager): numpy tables
             gathered per call, the step as a chain of small operations
  patched    the drop-in's p_sample_loop (the fused step)
  graph      the same with cuda_graph=True (CUDA only)
Per batch size: the median time of a whole loop over --reps alternating
repetitions, the ratios, and whether patched and graph give the same samples
(the model is deterministic in eval mode).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

import torch  # noqa: E402

from torch_ddpm import SpacedDiffusion, space_timesteps  # noqa: E402
from torch_ddpm.eager import EagerGaussianDiffusion  # noqa: E402
from torch_ddpm.gaussian_diffusion import (LossType, ModelMeanType, ModelVarType,  # noqa: E402
                                           get_named_beta_schedule)
from torch_ddpm.tools.bench import cpu_model, portable_command  # noqa: E402


class EagerSpaced(SpacedDiffusion, EagerGaussianDiffusion):
    """improved-diffusion's SpacedDiffusion: its formulas, respaced."""


def make_unet(tiny):
    from diffusers import UNet2DModel

    if tiny:
        return UNet2DModel(sample_size=8, in_channels=3, out_channels=6, layers_per_block=1,
                           block_out_channels=(32, 32), norm_num_groups=8,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=6, layers_per_block=3,
                       block_out_channels=(128, 256, 256, 256),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                         "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


class Model(torch.nn.Module):
    """x, t -> the UNet's output tensor (improved-diffusion's model interface)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, **kwargs):
        return self.unet(x, t).sample


def run(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="a small UNet (a quick check)")
    p.add_argument("--output", help="write the rows as JSON")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = Model(make_unet(args.tiny)).to(device).eval()
    size = 8 if args.tiny else 32
    T = 4000
    kwargs = dict(betas=get_named_beta_schedule("cosine", T),
                  model_mean_type=ModelMeanType.EPSILON,
                  model_var_type=ModelVarType.LEARNED_RANGE, loss_type=LossType.MSE)
    use = space_timesteps(T, [args.steps])
    loops = {"unpatched": EagerSpaced(use, **kwargs), "patched": SpacedDiffusion(use, **kwargs)}
    graph = device.type == "cuda"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"# torch-ddpm bench_sampling: torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if graph else cpu_model()}, {args.steps} steps, "
          f"{'tiny UNet' if args.tiny else 'CIFAR-10 UNet'}")
    print(f"# {portable_command()}")
    rows = []
    for batch in args.batches:
        shape = (batch, 3, size, size)
        variants = {
            "unpatched": lambda: loops["unpatched"].p_sample_loop(model, shape, device=device),
            "patched": lambda: loops["patched"].p_sample_loop(model, shape, device=device),
        }
        if graph:
            variants["graph"] = lambda: loops["patched"].p_sample_loop(model, shape, device=device,
                                                                       cuda_graph=True)
        same = None
        with torch.no_grad():
            if graph:  # the same samples from the same state (and the capture, untimed)
                outs = []
                for name in ("patched", "graph"):
                    torch.manual_seed(1)
                    outs.append(variants[name]())
                same = bool(torch.equal(outs[0], outs[1]))
            times = {name: [] for name in variants}
            for _ in range(args.reps):
                for name, fn in variants.items():
                    sync()
                    start = time.perf_counter()
                    fn()
                    sync()
                    times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        row = {"batch": batch, **{f"{n}_s": m for n, m in med.items()},
               "patched_speedup": med["unpatched"] / med["patched"]}
        if graph:
            row["graph_speedup"] = med["unpatched"] / med["graph"]
            row["graph_same_samples"] = same
        rows.append(row)
        print(f"batch {batch:3d}: " + "  ".join(f"{n} {m * 1e3:8.1f} ms" for n, m in med.items())
              + f"  | patched {row['patched_speedup']:.2f}x"
              + (f", graph {row['graph_speedup']:.2f}x unpatched, same samples: {same}"
                 if graph else ""))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": portable_command(), "torch": torch.__version__,
                       "device": str(device), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    run()
