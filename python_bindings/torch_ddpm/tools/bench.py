"""python3 -m torch_ddpm bench: the fused operators against what people run today.

For every case it times, side by side in one run and on the same inputs:
  fused     the ddpm operator (forward, or forward+backward through autograd)
  fused_out the out= variant writing into preallocated outputs (q_sample,
            posterior_mean_variance, p_sample): what the kernel does without the allocator's page
            faults, which a fresh large CPU tensor costs on every call
  fused_sample  p_sample's sample_out overload: out= writing the sample alone,
            as a sampling loop uses the step (pred_xstart dropped, a quarter
            less traffic); ratios against the same chains, which cannot skip
            pred_xstart (their mean is computed from it)
  improved  the same math as improved-diffusion writes it (numpy tables
            gathered and broadcast per call, a chain of tensor ops)
  lean      the leanest eager version a careful user writes (per-sample
            coefficients [B, 1, ...], in-place fused multiply-adds)
  compiled  torch.compile of `lean` (torch 2.x)
  copy      a plain copy of the same number of bytes: the memory ceiling
It reports the median time and its spread (interquartile range), the fewest
bytes the op must move, the achieved GB/s and the ratios. Inputs larger than
the last-level cache are used once per repetition (no warm-cache flattery):
small cases rotate through enough input sets to span twice the last-level
cache (read from sysfs, or the GPU's L2; at least 64 MiB).
"""
import argparse
import functools
import glob
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from ..eager import EagerGaussianDiffusion
from ..gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType, LossType
from ..gaussian_diffusion import get_named_beta_schedule
from ..tables import step_tables

SHAPES = {
    "64x3x32x32": (64, 3, 32, 32),
    "16x3x64x64": (16, 3, 64, 64),
    "16x4x64x64": (16, 4, 64, 64),
    "8x3x256x256": (8, 3, 256, 256),
    "latent4x4x64x64": (4, 4, 64, 64),
    "64M": (16, 4, 1024, 1024),
}
P_MODES = [("epsilon", "fixed_small"), ("start_x", "fixed_large"), ("previous_x", "fixed_small"),
           ("v", "fixed_small"), ("epsilon", "learned"), ("epsilon", "learned_range")]
MIN_ROTATION_BYTES = 64 << 20
MAX_INPUT_SETS = 256


@functools.lru_cache(maxsize=None)  # read once per device, not once per case
def last_level_cache_bytes(device="cpu"):
    """The largest cache in front of memory: the CPU's largest sysfs cache
    level (L3 here: 105 MiB on the 2-vCPU VM, more than the 64 MiB this
    benchmark first rotated through), a CUDA device's L2; 0 when unknown."""
    if device.startswith("cuda"):
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0))
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        text = open(path).read().strip().upper()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KM")) * scale)
    return max(sizes, default=0)


def rotation_bytes(device="cpu"):
    """Bytes one round of rotated inputs spans: twice the last-level cache,
    so that no input is still cached when it comes round again."""
    return max(MIN_ROTATION_BYTES, 2 * last_level_cache_bytes(device))


def input_sets(bytes_per_set, device="cpu"):
    """How many input sets to rotate through (see rotation_bytes)."""
    need = -(-rotation_bytes(device) // max(bytes_per_set, 1))
    return max(1, min(MAX_INPUT_SETS, need))


def _enum(mean_type, var_type):
    mean = {"epsilon": ModelMeanType.EPSILON, "start_x": ModelMeanType.START_X,
            "previous_x": ModelMeanType.PREVIOUS_X, "v": ModelMeanType.V}[mean_type]
    var = {"fixed_small": ModelVarType.FIXED_SMALL, "fixed_large": ModelVarType.FIXED_LARGE,
           "learned": ModelVarType.LEARNED, "learned_range": ModelVarType.LEARNED_RANGE}[var_type]
    return mean, var


class Case:
    """One operator in one mode: builds inputs and the callables to compare."""

    def __init__(self, op, shape, dtype, device, mean_type="epsilon", var_type="fixed_small",
                 backward=False):
        self.op, self.shape, self.dtype, self.device = op, shape, dtype, device
        self.mean_type, self.var_type, self.backward = mean_type, var_type, backward
        mean, var = _enum(mean_type, var_type)
        betas = get_named_beta_schedule("linear", 1000)
        kw = dict(betas=betas, model_mean_type=mean, model_var_type=var, loss_type=LossType.MSE)
        self.ours = GaussianDiffusion(**kw)
        self.eager = EagerGaussianDiffusion(**kw)
        self.tab = self.ours._ddpm_tables(device)
        self.learned = var_type in ("learned", "learned_range")

    @property
    def name(self):
        base = self.op if self.op != "p_sample" else f"p_sample[{self.mean_type},{self.var_type}]"
        return base + (" fwd+bwd" if self.backward else "")

    def make_inputs(self, gen):
        B = self.shape[0]
        x = torch.randn(self.shape, generator=gen).to(self.dtype).to(self.device)
        other = torch.randn(self.shape, generator=gen).to(self.dtype).to(self.device)
        noise = torch.randn(self.shape, generator=gen).to(self.dtype).to(self.device)
        t = torch.randint(1, 1000, (B,), generator=gen).to(self.device)
        if self.op == "p_sample":
            c = self.shape[1] * (2 if self.learned else 1)
            out = torch.randn((B, c) + tuple(self.shape[2:]), generator=gen)
            if self.learned:
                out[:, self.shape[1]:].uniform_(-1, 1, generator=gen)
            other = out.to(self.dtype).to(self.device)
        if self.backward:
            other.requires_grad_(True)
            x.requires_grad_(True)
        return {"x": x, "other": other, "noise": noise, "t": t,
                "out1": torch.zeros(self.shape, dtype=self.dtype, device=self.device),
                "out2": torch.zeros(self.shape, dtype=self.dtype, device=self.device),
                "g1": torch.randn(self.shape, generator=gen).to(self.dtype).to(self.device),
                "g2": torch.randn(self.shape, generator=gen).to(self.dtype).to(self.device)}

    def min_bytes(self, sample_only=False):
        """Each input read once, each output written once (tables and t ignored);
        sample_only: p_sample without pred_xstart (the fused_sample variant)."""
        n = int(np.prod(self.shape)) * torch.tensor([], dtype=self.dtype).element_size()
        out_n = n * (2 if self.learned else 1)
        fwd = {"q_sample": 3 * n, "posterior_mean_variance": 3 * n,
               "p_sample": out_n + 2 * n + (1 if sample_only else 2) * n}[self.op]
        if not self.backward:
            return fwd
        # backward reads the output grads (and the saved inputs), writes the input grads
        # that are asked for: q_sample's x only (the noise is a constant, as in training)
        bwd = {"q_sample": 2 * n, "posterior_mean_variance": 3 * n,
               "p_sample": 2 * n + out_n + 2 * n + out_n + n}[self.op]
        return fwd + bwd

    # -- the variants -------------------------------------------------------------------
    def fused(self, i):
        d, tab = self.ours, self.tab
        if self.op == "q_sample":
            return torch.ops.ddpm.q_sample(i["x"], i["t"], i["noise"], tab["sqrt_alphas_cumprod"],
                                           tab["sqrt_one_minus_alphas_cumprod"]), (i["x"], i["noise"])
        if self.op == "posterior_mean_variance":
            return d.q_posterior_mean_variance(i["other"], i["x"], i["t"])[0], (i["other"], i["x"])
        sample, pred = d._fused_step(i["other"], i["x"], i["t"], i["noise"], True)
        return (sample, pred), (i["other"], i["x"])

    def fused_out(self, i):
        tab = self.tab
        if self.op == "q_sample":
            return torch.ops.ddpm.q_sample.out(
                i["x"], i["t"], i["noise"], tab["sqrt_alphas_cumprod"],
                tab["sqrt_one_minus_alphas_cumprod"], out=i["out1"]), ()
        if self.op == "posterior_mean_variance":
            return torch.ops.ddpm.posterior_mean_variance.out(
                i["other"], i["x"], i["t"], tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                tab["posterior_variance"], tab["posterior_log_variance_clipped"], mean=i["out1"])[0], ()
        mean_type, var_type = self.mean_type, self.var_type
        return torch.ops.ddpm.p_sample.out(
            i["other"], i["x"], i["t"], i["noise"], *step_tables("p_sample", tab), mean_type,
            var_type, True, sample=i["out1"], pred_xstart=i["out2"]), ()

    def fused_sample(self, i):
        tab = self.tab
        return torch.ops.ddpm.p_sample.sample_out(
            i["other"], i["x"], i["t"], i["noise"], *step_tables("p_sample", tab), self.mean_type,
            self.var_type, True, sample=i["out1"]), ()

    def variants(self, compiled):
        v = ["fused"]
        if not self.backward:
            v.append("fused_out")
            if self.op == "p_sample":
                v.append("fused_sample")
        v += ["improved", "lean"] + (["compiled"] if compiled else [])
        return v

    def improved(self, i):
        d = self.eager
        if self.op == "q_sample":
            return d.q_sample(i["x"], i["t"], i["noise"]), (i["x"], i["noise"])
        if self.op == "posterior_mean_variance":
            return d.q_posterior_mean_variance(i["other"], i["x"], i["t"])[0], (i["other"], i["x"])
        out = d.mean_variance_from_output(i["other"], i["x"], i["t"], True)
        r = d.sample_from(out, i["x"], i["t"], i["noise"])
        return (r["sample"], r["pred_xstart"]), (i["other"], i["x"])

    def lean_coefs(self, t):
        """Per-sample coefficients [B, 1, ...] in float32, gathered from device tables."""
        tab = self.tab
        shape = (-1,) + (1,) * (len(self.shape) - 1)
        g = lambda name: tab[name][t].float().view(shape)  # noqa: E731
        if self.op == "q_sample":
            return g("sqrt_alphas_cumprod"), g("sqrt_one_minus_alphas_cumprod")
        if self.op == "posterior_mean_variance":
            return g("posterior_mean_coef1"), g("posterior_mean_coef2")
        r, rm1 = g("sqrt_recip_alphas_cumprod"), g("sqrt_recipm1_alphas_cumprod")
        c1, c2 = g("posterior_mean_coef1"), g("posterior_mean_coef2")
        A, Bm = {"epsilon": (r, -rm1), "start_x": (torch.zeros_like(r), torch.ones_like(r)),
                 "previous_x": (-c2 / c1, 1 / c1), "v": (1 / r, -rm1 / r)}[self.mean_type]
        nz = (t != 0).float().view(shape)
        lv_min, lv_max = g("posterior_log_variance_clipped"), torch.log(g("betas"))
        return A, Bm, c1, c2, nz, lv_min, lv_max

    def lean(self, i):
        out = self.lean_math(i["x"], i["other"], i["noise"], *self.lean_coefs(i["t"]))
        return out, self.wrt(i)

    def wrt(self, i):
        """The inputs gradients flow to."""
        return (i["x"], i["noise"]) if self.op == "q_sample" else (i["other"], i["x"])

    def lean_math(self, x, other, noise, *coefs):
        if self.op == "q_sample":
            a, b = coefs
            return torch.mul(x, a).addcmul_(noise, b)
        if self.op == "posterior_mean_variance":
            c1, c2 = coefs
            return torch.mul(other, c1).addcmul_(x, c2)
        A, Bm, c1, c2, nz, lv_min, lv_max = coefs
        C = self.shape[1]
        out = other[:, :C] if self.learned else other
        pred = torch.mul(x, A).addcmul_(out, Bm).clamp_(-1, 1)
        if self.mean_type == "previous_x":
            mean = out.clone()
        else:
            mean = torch.mul(pred, c1).addcmul_(x, c2)
        if self.var_type == "learned":
            sigma = torch.exp(0.5 * other[:, C:]) * nz
        elif self.var_type == "learned_range":
            v = other[:, C:]
            sigma = torch.exp(0.5 * (lv_min + (v + 1) * 0.5 * (lv_max - lv_min))) * nz
        elif self.var_type == "fixed_large":
            sigma = torch.exp(0.5 * lv_max) * nz
        else:
            sigma = torch.exp(0.5 * lv_min) * nz
        return mean.addcmul_(noise, sigma), pred


def _run(case, variant, inputs, compiled_fn=None):
    """One call of a variant; with backward, forward then autograd.grad."""
    if variant == "compiled":
        coefs = case.lean_coefs(inputs["t"])
        outs = compiled_fn(inputs["x"], inputs["other"], inputs["noise"], *coefs)
        wrt = case.wrt(inputs)
    else:
        outs, wrt = getattr(case, variant)(inputs)
    if case.backward:
        outs = outs if isinstance(outs, tuple) else (outs,)
        grads = (inputs["g1"], inputs["g2"])[: len(outs)]
        wrt = tuple(w for w in wrt if w.requires_grad)
        torch.autograd.grad(outs, wrt, grads)


def _timer(device):
    if device.startswith("cuda"):
        def measure(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def measure(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return measure


def bench_case(case, variants, reps, warmup, compiled_fns):
    gen = torch.Generator().manual_seed(0)
    per_set = case.min_bytes()
    sets = input_sets(per_set, case.device)
    inputs = [case.make_inputs(gen) for _ in range(sets)]
    measure = _timer(case.device)
    times = {v: [] for v in variants}
    for v in variants:  # warm up (and compile), touching every input set
        for k in range(max(warmup, sets)):
            _run(case, v, inputs[k % sets], compiled_fns.get(v))
    for rep in range(reps):  # interleave variants so drift hits all alike
        for v in rotated(variants, rep):
            i = inputs[(rep * len(variants) + variants.index(v)) % sets]
            times[v].append(measure(lambda: _run(case, v, i, compiled_fns.get(v))))
    return times


def rotated(variants, rep):
    """The variants in the order of repetition rep: rotated by one each time, so
    every variant follows every other one equally often. A fixed order lets one
    variant always inherit the allocator state of the same predecessor (after an
    eager chain's temporaries are freed, glibc may trim the heap, and the next
    allocating variant pays the page faults)."""
    k = rep % len(variants)
    return variants[k:] + variants[:k]


def copy_ceiling(nbytes, device, reps, warmup):
    """GB/s of a plain copy moving nbytes (read nbytes/2, write nbytes/2)."""
    n = max(1, nbytes // 2 // 4)
    sets = input_sets(nbytes, device)
    src = [torch.randn(n, device=device) for _ in range(sets)]
    dst = [torch.empty(n, device=device) for _ in range(sets)]
    measure = _timer(device)
    for k in range(max(warmup, sets)):
        dst[k % sets].copy_(src[k % sets])
    times = [measure(lambda: dst[r % sets].copy_(src[r % sets])) for r in range(reps)]
    return times


def quartiles(values):
    """(first quartile, median, third quartile) of values."""
    values = sorted(values)
    return (values[len(values) // 4], statistics.median(values),
            values[(3 * len(values)) // 4])


def summarize(times):
    q1, med, q3 = quartiles(times)
    return med, q3 - q1


def cases_for(args):
    dtypes = [getattr(torch, d) for d in args.dtypes]
    for shape_name in args.shapes:
        shape = SHAPES[shape_name]
        for dtype in dtypes:
            for backward in ([False, True] if args.backward else [False]):
                yield Case("q_sample", shape, dtype, args.device, backward=backward)
                yield Case("posterior_mean_variance", shape, dtype, args.device, backward=backward)
                modes = P_MODES if (not backward and args.all_modes) else P_MODES[:1] + P_MODES[-1:]
                for mean_type, var_type in modes:
                    yield Case("p_sample", shape, dtype, args.device, mean_type, var_type, backward)


def portable_command(argv=None):
    """The command line as a reader can rerun it: the entry point as
    `python3 -m torch_ddpm` or its path in the repository, and any other
    absolute path (an --output file) as its file name, so that a results file
    names no folder of the machine it ran on."""
    argv = list(sys.argv if argv is None else argv)
    first = argv[0] if argv else ""
    if first.endswith(os.path.join("torch_ddpm", "__main__.py")) or first == "-m":
        head = "python3 -m torch_ddpm"
    else:
        parent = os.path.basename(os.path.dirname(os.path.abspath(first)))
        head = "python3 " + (f"{parent}/" if parent == "benchmarks" else "") + os.path.basename(first)
    rest = [os.path.basename(a) if os.path.isabs(a) else a for a in argv[1:]]
    return " ".join([head] + rest)


def cpu_model():
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_env(device, rotation):
    """What a results file records about its run: versions, machine, date, command,
    the input rotation, and the code that ran: the GPU, or on the CPU the clone of
    the element loops and the noise generator, which the loader picks per CPU."""
    env = {"torch": torch.__version__, "device": device, "python": platform.python_version(),
           "processor": cpu_model(), "cpus": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": portable_command(),
           "rotation_bytes": rotation}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    else:
        env["cpu_loops"] = torch.ops.ddpm._cpu_loop_clone()
        env["cpu_noise"] = torch.ops.ddpm._cpu_noise_generator()
    return env


def run(args):
    torch.manual_seed(0)
    threads_list = args.threads or [torch.get_num_threads()]
    compile_ok = hasattr(torch, "compile") and not args.no_compile
    all_variants = (["fused", "fused_out", "fused_sample", "improved", "lean"]
                    + (["compiled"] if compile_ok else []))
    rows = []
    env = run_env(args.device, rotation_bytes(args.device))
    print(f"# torch-ddpm bench: {env}", flush=True)
    for threads in threads_list:
        if not args.device.startswith("cuda"):
            torch.set_num_threads(threads)
        compiled_fns = {}
        for case in cases_for(args):
            compile_case = compile_ok and (
                args.compile_shapes is None
                or "x".join(map(str, case.shape)) in [
                    "x".join(map(str, SHAPES[name])) for name in args.compile_shapes])
            compiled_fns = {"compiled": _compiled(case)} if compile_case else {}
            variants = case.variants(compile_case)
            times = bench_case(case, variants, args.reps, args.warmup, compiled_fns)
            nbytes = case.min_bytes()
            copy = summarize(copy_ceiling(nbytes, args.device, args.reps, args.warmup))
            row = {"op": case.name, "shape": "x".join(map(str, case.shape)),
                   "dtype": str(case.dtype).replace("torch.", ""), "threads": threads,
                   "min_bytes": nbytes, "copy_s": copy[0], "copy_iqr_s": copy[1],
                   "copy_GBps": nbytes / copy[0] / 1e9}
            for v in variants:
                med, iqr = summarize(times[v])
                moved = case.min_bytes(sample_only=v == "fused_sample")
                row[f"{v}_s"], row[f"{v}_iqr_s"], row[f"{v}_GBps"] = med, iqr, moved / med / 1e9
            for v in ("improved", "lean", "compiled"):
                if v in variants:
                    row[f"speedup_vs_{v}"] = row[f"{v}_s"] / row["fused_s"]
                    if "fused_sample" in variants:
                        row[f"sample_speedup_vs_{v}"] = row[f"{v}_s"] / row["fused_sample_s"]
            best = "fused_out" if "fused_out" in variants else "fused"
            row["fused_over_copy_bw"] = row["fused_GBps"] / row["copy_GBps"]
            row["best_fused_over_copy_bw"] = row[f"{best}_GBps"] / row["copy_GBps"]
            rows.append(row)
            print(format_row(row, all_variants), flush=True)
            if args.output:  # after every row, so a cut-short run keeps what it measured
                with open(args.output, "w") as f:
                    json.dump({"env": env, "variants": all_variants, "rows": rows}, f, indent=1)
    variants = all_variants
    result = {"env": env, "variants": variants, "rows": rows}
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=1)
        print(f"# wrote {args.output}")
    print()
    print(table(rows, variants))
    return result


def _compiled(case):
    # A fresh dynamo cache per case: each case recompiles the same function,
    # and past torch._dynamo's recompile limit it would silently run eagerly.
    torch._dynamo.reset()

    def fn(x, other, noise, *coefs):
        return case.lean_math(x, other, noise, *coefs)
    return torch.compile(fn, dynamic=False)


def _ratio(r, v, prefix=""):
    key = f"{prefix}speedup_vs_{v}"
    return f"{r[key]:.1f}x" if key in r else "-"


def format_row(r, variants):
    parts = [f"{r['op']:40s} {r['shape']:>14s} {r['dtype']:>8s} thr={r['threads']}",
             f"fused {r['fused_s'] * 1e3:8.3f}ms ±{r['fused_iqr_s'] * 1e3:.3f} {r['fused_GBps']:6.1f}GB/s"]
    if "fused_out_s" in r:
        parts.append(f"out= {r['fused_out_s'] * 1e3:8.3f}ms {r['fused_out_GBps']:6.1f}GB/s")
    parts += [f"{_ratio(r, v)} vs {v}" for v in ("improved", "lean", "compiled") if v in variants]
    if "fused_sample_s" in r:
        parts.append(f"sample= {r['fused_sample_s'] * 1e3:8.3f}ms {r['fused_sample_GBps']:6.1f}GB/s "
                     + " ".join(f"{_ratio(r, v, 'sample_')} vs {v}"
                                for v in ("improved", "lean", "compiled") if v in variants))
    parts.append(f"copy {r['copy_GBps']:.1f}GB/s: fused {100 * r['fused_over_copy_bw']:.0f}%, "
                 f"best {100 * r['best_fused_over_copy_bw']:.0f}%")
    return " | ".join(parts)


def table(rows, variants):
    others = [v for v in ("improved", "lean", "compiled") if v in variants]
    head = ("| op | shape | dtype | thr | fused ms (IQR) | out= ms | fused GB/s | out= GB/s | copy GB/s "
            "| fused/copy | out=/copy | " + " | ".join(f"fused vs {v}" for v in others)
            + " | sample= ms | " + " | ".join(f"sample= vs {v}" for v in others) + " |")
    lines = [head, "|" + "---|" * (12 + 2 * len(others))]
    for r in rows:
        out_ms = f"{r['fused_out_s'] * 1e3:.3f}" if "fused_out_s" in r else "-"
        out_bw = f"{r['fused_out_GBps']:.1f}" if "fused_out_s" in r else "-"
        out_ratio = f"{100 * r['best_fused_over_copy_bw']:.0f}%" if "fused_out_s" in r else "-"
        sample_ms = f"{r['fused_sample_s'] * 1e3:.3f}" if "fused_sample_s" in r else "-"
        lines.append(
            f"| {r['op']} | {r['shape']} | {r['dtype']} | {r['threads']} | "
            f"{r['fused_s'] * 1e3:.3f} ({r['fused_iqr_s'] * 1e3:.3f}) | {out_ms} | {r['fused_GBps']:.1f} | "
            f"{out_bw} | {r['copy_GBps']:.1f} | {100 * r['fused_over_copy_bw']:.0f}% | {out_ratio} | "
            + " | ".join(_ratio(r, v) for v in others)
            + f" | {sample_ms} | " + " | ".join(_ratio(r, v, "sample_") for v in others) + " |")
    return "\n".join(lines)


def add_arguments(p):
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES),
                   help="shape names (default: all)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "bfloat16", "float16", "float64"])
    p.add_argument("--threads", nargs="+", type=int, default=None,
                   help="CPU thread counts to run with (default: the current count)")
    p.add_argument("--reps", type=int, default=15, help="timed repetitions per variant")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--backward", action="store_true", help="also time forward+backward")
    p.add_argument("--all-modes", action="store_true", help="every p_sample mode, not two")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-shapes", nargs="+", default=None, choices=list(SHAPES),
                   help="time torch.compile for these shapes only (default: every shape; "
                        "each case compiles anew, which takes seconds on a GPU machine)")
    p.add_argument("--output", default="bench.json", help="machine-readable results (JSON)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m torch_ddpm bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
