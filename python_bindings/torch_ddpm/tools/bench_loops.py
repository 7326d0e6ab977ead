"""What a sampling loop costs beyond its model and its kernels: the host's time per step.

    python3 -m torch_ddpm bench-loops [--shape 2 3 8 8] [--threads 1] [--reps 7]

The model returns zeros (a null model), and the shape is tiny, so what is timed
is the loop's own work per step: Python, the dispatcher, the operator calls,
the noise draw. In one run, alternating, medians over the repetitions:
- `raw`: the least a careful user could write with the raw operators:
  `t = torch.full(...)`, the model, `randn_like`, then
  `torch.ops.ddpm.p_sample.sample_out(..., sample=x)` in place (for the loops
  that return the last sample), or the functional `p_sample` (for the
  progressive loops, which hand out each step's pred_xstart too);
- `ours`: the drop-in's loops (`SpacedDiffusion`, as improved- and guided-
  diffusion sample, respaced), `torch_ddpm.sampler.Sampler` scripted, the
  patched lucidrains loops, our diffusers schedulers' steps in a pipeline's
  loop; and one call of the front ends (`torch_ddpm.p_sample`,
  `DiffusionSchedule.p_sample`) against one call of the raw overload;
- `theirs`: the same loops unpatched where the library is installed
  (lucidrains, diffusers), and improved-diffusion's chain (`torch_ddpm.eager`,
  its formulas as it writes them) for the drop-in's loops.
The ratio ours/raw is the host's overhead of our loop; the goal is at most 1.5
(1.3 for a front end's call).
"""
import argparse
import json
import statistics
import time
from typing import Optional

import torch

from .bench import portable_command, cpu_model

STEPS = 100
DDIM_STEPS = 50


class NullModel(torch.nn.Module):
    """x, t -> zeros with `channels` channels: a model that costs nothing.
    (channels, out_dim, self_condition: what lucidrains' GaussianDiffusion reads.)"""

    def __init__(self, channels):
        super().__init__()
        self.channels = self.out_dim = channels
        self.self_condition = False
        self.random_or_learned_sinusoidal_cond = False
        self.weight = torch.nn.Parameter(torch.zeros(1))  # so that loops find a device

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                x_self_cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        return x.new_zeros([x.shape[0], self.channels] + list(x.shape[2:]))


def add_arguments(p):
    p.add_argument("--shape", type=int, nargs="+", default=[2, 3, 8, 8])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=7, help="repetitions of every loop (default: 7)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", help="write the rows as JSON")


def _time_per_step(fn, steps, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1e6


def _dropin_cases(shape, device):
    """(name, {variant: (fn, steps)}) for the improved/guided-diffusion drop-in."""
    from ..eager import EagerGaussianDiffusion
    from ..gaussian_diffusion import LossType, ModelMeanType, ModelVarType, get_named_beta_schedule
    from ..respace import SpacedDiffusion, space_timesteps
    from ..tables import step_tables

    class EagerSpaced(SpacedDiffusion, EagerGaussianDiffusion):
        pass

    cases = []
    betas = get_named_beta_schedule("linear", 1000)
    for var, var_name in ((ModelVarType.FIXED_SMALL, "fixed_small"),
                          (ModelVarType.LEARNED_RANGE, "learned_range")):
        model = NullModel(shape[1] * (2 if var_name == "learned_range" else 1)).to(device)
        made = {}
        for cls, who in ((SpacedDiffusion, "ours"), (EagerSpaced, "theirs")):
            for steps in (STEPS, DDIM_STEPS):
                made[who, steps] = cls(use_timesteps=space_timesteps(1000, [steps]), betas=betas,
                                       model_mean_type=ModelMeanType.EPSILON,
                                       model_var_type=var, loss_type=LossType.MSE)
        for loop, steps in (("p_sample_loop", STEPS), ("p_sample_loop_progressive", STEPS),
                            ("ddim_sample_loop", DDIM_STEPS),
                            ("ddim_sample_loop_progressive", DDIM_STEPS)):
            kind = "ddim_sample" if loop.startswith("ddim") else "p_sample"
            tables = step_tables(kind, made["ours", steps]._ddpm_tables(device))
            own = (0.0,) if kind == "ddim_sample" else ()
            progressive = loop.endswith("progressive")
            raw = _raw_loop(kind, model, shape, device, steps, tables, own, var_name, progressive)

            def run(diffusion, loop=loop, progressive=progressive, model=model):
                out = getattr(diffusion, loop)(model, tuple(shape), device=device)
                if progressive:
                    for step in out:
                        pass
                    return step["sample"]
                return out

            cases.append((f"{loop} {var_name}", steps, {
                "raw": raw, "ours": lambda d=made["ours", steps], r=run: r(d),
                "theirs": lambda d=made["theirs", steps], r=run: r(d)}))
    return cases


def _raw_loop(kind, model, shape, device, steps, tables, own, var_name, progressive):
    """The minimal loop over the raw operator (see the module's docstring)."""
    packet = getattr(torch.ops.ddpm, kind)
    step_out, step = packet.sample_out, packet.default
    modes = ("epsilon", var_name, True, None, False)

    def loop():
        x = torch.randn(*shape, device=device)
        with torch.no_grad():
            for i in reversed(range(steps)):
                t = torch.full((shape[0],), i, dtype=torch.long, device=device)
                out = model(x, t)
                noise = torch.randn_like(x)
                if progressive:
                    x, _ = step(out, x, t, noise, *tables, *own, *modes)
                else:
                    step_out(out, x, t, noise, *tables, *own, *modes, sample=x)
        return x

    return loop


def _sampler_case(shape, device):
    from ..gaussian_diffusion import get_named_beta_schedule
    from ..sampler import Sampler
    from ..schedules import DiffusionSchedule
    from ..tables import step_tables

    betas = torch.tensor(get_named_beta_schedule("linear", STEPS))
    model = NullModel(shape[1]).to(device)
    sampler = torch.jit.script(Sampler(model, betas)).to(device)
    tables = step_tables("p_sample", dict(DiffusionSchedule(betas).to(device).named_buffers()))
    raw = _raw_loop("p_sample", model, shape, device, STEPS, tables, (), "fixed_small", False)

    def ours():
        with torch.no_grad():
            sampler(torch.randn(*shape, device=device))

    return [("Sampler (scripted) fixed_small", STEPS, {"raw": raw, "ours": ours})]


def _front_end_cases(shape, device):
    """One step call, 1000 times: the documented front ends against the raw
    overload (torch.ops.ddpm.p_sample.default)."""
    from .. import operators
    from ..gaussian_diffusion import get_named_beta_schedule
    from ..schedules import DiffusionSchedule

    schedule = DiffusionSchedule(get_named_beta_schedule("linear", STEPS)).to(device)
    tables = schedule._step_tables(False)
    x = torch.randn(*shape, device=device)
    t = torch.full((shape[0],), STEPS // 2, dtype=torch.long, device=device)
    noise, out = torch.randn_like(x), torch.zeros_like(x)
    raw_op = torch.ops.ddpm.p_sample.default
    calls = 1000

    def repeat(call):
        def run():
            for _ in range(calls):
                call()
        return run

    raw = repeat(lambda: raw_op(out, x, t, noise, *tables, "epsilon", "fixed_small", True,
                                None, False))
    return [
        ("front end torch_ddpm.p_sample (per call)", calls,
         {"raw": raw, "ours": repeat(lambda: operators.p_sample(out, x, t, noise, *tables))}),
        ("front end DiffusionSchedule.p_sample (per call)", calls,
         {"raw": raw, "ours": repeat(lambda: schedule.p_sample(out, x, t, noise))}),
    ]


def _lucidrains_cases(shape, device):
    try:
        from denoising_diffusion_pytorch import GaussianDiffusion
    except ImportError:
        return []
    import denoising_diffusion_pytorch.denoising_diffusion_pytorch as theirs_module
    import tqdm.auto

    from .. import patch
    from ..tables import step_tables

    class Quiet(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": True})

    # both sides' progress bars off alike (each loop draws one, always): the
    # original's, imported by its module, and ours, imported from tqdm.auto
    theirs_module.tqdm = tqdm.auto.tqdm = Quiet
    cases = []
    for loop, steps, timesteps in (("p_sample_loop", STEPS, STEPS),
                                   ("ddim_sample", DDIM_STEPS, 1000)):
        made = {}
        for who in ("ours", "theirs"):
            diffusion = GaussianDiffusion(NullModel(shape[1]), image_size=shape[-1],
                                          timesteps=timesteps, sampling_timesteps=steps,
                                          objective="pred_noise").to(device)
            made[who] = patch(diffusion) if who == "ours" else diffusion
        raw_tables = step_tables("p_sample", {
            "sqrt_recip_alphas_cumprod": made["theirs"].sqrt_recip_alphas_cumprod.double(),
            "sqrt_recipm1_alphas_cumprod": made["theirs"].sqrt_recipm1_alphas_cumprod.double(),
            "posterior_mean_coef1": made["theirs"].posterior_mean_coef1.double(),
            "posterior_mean_coef2": made["theirs"].posterior_mean_coef2.double(),
            "posterior_log_variance_clipped": made["theirs"].posterior_log_variance_clipped.double(),
            "betas": made["theirs"].betas.double()})
        raw = _raw_loop("p_sample", made["theirs"].model, shape, device, steps, raw_tables, (),
                        "fixed_small", False)
        shape_ = (shape[0], shape[1], shape[2], shape[3])
        cases.append((f"lucidrains {loop} pred_noise", steps, {
            "raw": raw,
            "ours": lambda d=made["ours"], lp=loop: getattr(d, lp)(shape_),
            "theirs": lambda d=made["theirs"], lp=loop: getattr(d, lp)(shape_)}))
    return cases


def _diffusers_cases(shape, device):
    try:
        import diffusers
    except ImportError:
        return []
    from .. import diffusers as ours_diffusers
    from ..schedules import schedule_tables
    from ..tables import step_tables

    cases = []
    for name, kind, steps in (("DDPMScheduler", "p_sample", STEPS),
                              ("DDIMScheduler", "ddim_sample", DDIM_STEPS)):
        theirs = getattr(diffusers, name)(num_train_timesteps=1000)
        ours = getattr(ours_diffusers, name).from_config(theirs.config)
        model = NullModel(shape[1]).to(device)
        runs = {}
        for who, sched in (("ours", ours), ("theirs", theirs)):
            sched.set_timesteps(steps, device=device)  # once per generation, as a pipeline

            def run(sched=sched):
                x = torch.randn(*shape, device=device)
                g = torch.Generator(device=device).manual_seed(0)
                with torch.no_grad():
                    for t in sched.timesteps:
                        out = model(x, t)
                        x = sched.step(out, t, x, generator=g).prev_sample
                return x
            runs[who] = run
        # raw: the step as a pipeline uses it (both outputs), its noise drawn
        # from the generator (DDIM at eta 0 draws none)
        tables = step_tables(kind, {k: v.to(device) for k, v in schedule_tables(
            torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)).items()})
        op = getattr(torch.ops.ddpm, kind).default
        own = (0.0,) if kind == "ddim_sample" else ()
        times = list(range(999, -1, -1000 // steps))

        def raw(op=op, tables=tables, own=own, kind=kind, model=model, times=times):
            x = torch.randn(*shape, device=device)
            g = torch.Generator(device=device).manual_seed(0)
            with torch.no_grad():
                for i in times:
                    t = torch.full((shape[0],), i, dtype=torch.long, device=device)
                    out = model(x, t)
                    noise = x if kind == "ddim_sample" else torch.randn(
                        x.shape, generator=g, device=device)
                    x, _ = op(out, x, t, noise, *tables, *own, "epsilon", "fixed_small", True)
            return x
        runs["raw"] = raw
        cases.append((f"diffusers {name}.step loop", steps, runs))
    return cases


def run(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = list(args.shape)
    cases = (_dropin_cases(shape, device) + _sampler_case(shape, device)
             + _front_end_cases(shape, device) + _lucidrains_cases(shape, device)
             + _diffusers_cases(shape, device))
    print(f"# torch-ddpm bench-loops: torch {torch.__version__}, {cpu_model()}, "
          f"{args.threads} thread(s), device {device}, shape {shape}, null model")
    print(f"# {portable_command()}")
    header = f"{'loop':44s} {'steps':>5s} {'raw µs':>8s} {'ours µs':>8s} {'theirs µs':>10s} " \
             f"{'ours/raw':>8s} {'theirs/ours':>11s}"
    print(header)
    rows = []
    for name, steps, variants in cases:
        for fn in variants.values():  # warm-up: compile, caches
            fn()
        times = {v: [] for v in variants}
        for _ in range(args.reps):
            for v, fn in variants.items():
                times[v].append(_time_per_step(fn, steps, device))
        med = {v: statistics.median(ts) for v, ts in times.items()}
        row = {"loop": name, "steps": steps, **{f"{v}_us": m for v, m in med.items()}}
        if "raw" in med:
            row["ours_over_raw"] = med["ours"] / med["raw"]
        if "theirs" in med:
            row["theirs_over_ours"] = med["theirs"] / med["ours"]
        rows.append(row)
        fmt = lambda v: f"{med[v]:.1f}" if v in med else "-"  # noqa: E731
        ratio = f"{row['ours_over_raw']:.2f}" if "ours_over_raw" in row else "-"
        theirs = f"{row['theirs_over_ours']:.1f}x" if "theirs_over_ours" in row else "-"
        print(f"{name:44s} {steps:5d} {fmt('raw'):>8s} {fmt('ours'):>8s} {fmt('theirs'):>10s} "
              f"{ratio:>8s} {theirs:>11s}")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"command": portable_command(), "torch": torch.__version__,
                       "processor": cpu_model(), "threads": args.threads, "device": str(device),
                       "shape": shape, "rows": rows}, f, indent=1)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
