"""The ways to run a sampling loop without (or with) Python, side by side in
one run: per-step time of

  eager        the Python loop around torch_ddpm.export.SamplingStep;
  torchscript  torch_ddpm.Sampler scripted, its whole loop in TorchScript
               (forward(x_T, seed), in-kernel noise);
  aoti         the Python loop around the AOTInductor package of the step;
  aoti-cpp     examples/aoti/run_package.cpp running that package (--aoti-runner):
               its steps after the first (the first pays for allocations);
  torchscript-cpp  examples/run_sampler.cpp running the scripted Sampler
               (--torchscript-runner): its one forward call, the whole loop, cold
               (TorchScript's profiling executor optimizes during its first runs);

on the same small convolutional denoiser, its samples checked alike first.
The in-process variants alternate repetition by repetition; the C++ programs
time their own loop (after loading), one process per repetition.

    python3 benchmarks/bench_export.py [--device cpu|cuda] [--shape 4 3 32 32] [--steps 50]
        [--reps 5] [--aoti-runner PATH] [--torchscript-runner PATH] [--output F.json]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import alternate, write_json  # noqa: E402

import torch_ddpm  # noqa: E402
from torch_ddpm import export  # noqa: E402
from torch_ddpm.sampler import Sampler  # noqa: E402


class Denoiser(torch.nn.Module):
    """Three convolutions and a timestep embedding: small enough that the
    loop's overhead shows, large enough that the model is most of a step."""

    def __init__(self, timesteps, width=64, out_channels=6):
        super().__init__()
        self.inp = torch.nn.Conv2d(3, width, 3, padding=1)
        self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, out_channels, 3, padding=1)
        self.emb = torch.nn.Embedding(timesteps, width)

    def forward(self, x, t):
        h = torch.nn.functional.silu(self.inp(x) + self.emb(t)[:, :, None, None])
        h = torch.nn.functional.silu(self.mid(h))
        return self.out(h)


def cpp_per_step_ms(cmd, pattern, steps):
    # the same thread count as this process's
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr[-2000:]}")
    value = float(re.search(pattern, done.stdout).group(1))
    return value if "per step" in pattern else value / steps


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--shape", type=int, nargs=4, default=[4, 3, 32, 32])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--aoti-runner", help="examples/aoti's ddpm_run_package")
    p.add_argument("--torchscript-runner", help="the CMake build's ddpm_run_sampler")
    p.add_argument("--output")
    a = p.parse_args()
    shape, steps, device, seed = tuple(a.shape), a.steps, a.device, 7

    torch.manual_seed(0)
    denoiser = Denoiser(steps).to(device).eval()
    betas = torch_ddpm.get_named_beta_schedule("cosine", steps)
    step = export.SamplingStep(denoiser, betas, "epsilon", "learned_range").to(device).eval()
    scripted = torch.jit.script(Sampler(denoiser, betas, "epsilon", "learned_range")
                                .to(device).eval())

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        exported = export.export_step(step, torch.randn(shape, device=device))
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        package_path = export.compile_package(exported, os.path.join(tmp, "step.pt2"))
        compile_s = time.perf_counter() - start
        package = export.load_package(package_path)
        x_T = torch.ops.ddpm.philox_normal(torch.empty(shape, device=device), seed, 0)

        def run_eager():
            return export.sample(step, shape, seed, steps, device=device)

        def run_torchscript():
            with torch.no_grad():
                return scripted(x_T, seed)

        def run_aoti():
            return export.sample(package, shape, seed, steps, device=device)

        fns = {"eager": run_eager, "torchscript": run_torchscript, "aoti": run_aoti}
        reference = run_eager()
        agreement = {name: float((fn() - reference).abs().max()) for name, fn in fns.items()}
        times = alternate(fns, a.reps, a.warmup, device)
        per_step = {name: statistics.median(v) / steps * 1e3 for name, v in times.items()}

        if a.aoti_runner and device == "cpu":
            cmd = [a.aoti_runner, package_path, str(seed), str(steps), os.path.join(tmp, "x.bin"),
                   *map(str, shape)]
            per_step["aoti-cpp"] = statistics.median(
                cpp_per_step_ms(cmd, r"after the first step: ([0-9.eE+-]+) ms per step", steps)
                for _ in range(a.reps))
        if a.torchscript_runner and device == "cpu":
            scripted_path = os.path.join(tmp, "sampler.pt")
            torch.jit.save(scripted, scripted_path)
            cmd = [a.torchscript_runner, scripted_path, str(seed), os.path.join(tmp, "x.bin"),
                   *map(str, shape), "philox"]
            per_step["torchscript-cpp"] = statistics.median(
                cpp_per_step_ms(cmd, r"forward: ([0-9.eE+-]+) ms", steps)
                for _ in range(a.reps))

    print(f"torch {torch.__version__}, {device}, threads {torch.get_num_threads()}, "
          f"shape {'x'.join(map(str, shape))}, {steps} steps, {a.reps} reps; export "
          f"{export_s:.1f} s, AOTInductor compile {compile_s:.1f} s")
    print("largest difference from the eager loop's samples: " +
          ", ".join(f"{k} {v:.2e}" for k, v in agreement.items()))
    base = per_step["eager"]
    for name, ms in per_step.items():
        print(f"{name:16} {ms:8.3f} ms per step   eager / this {base / ms:5.2f}x")
    if a.output:
        write_json(a.output, [{"variant": k, "ms_per_step": v, "shape": list(shape),
                               "steps": steps, "device": device,
                               "max_abs_diff_vs_eager": agreement.get(k),
                               "export_s": export_s, "compile_s": compile_s}
                              for k, v in per_step.items()])


if __name__ == "__main__":
    main()
