"""The operators, each with what the generic tests (test_operators.py) need:
a builder of sample inputs, the float64 reference, the inputs it is
differentiable in, its modes and its out=/sample= overloads. Adding an
operator to the library adds an entry here; the generic checks then cover it.
"""
from dataclasses import dataclass, field
from typing import Callable, List, Sequence, Tuple

import torch

import reference as ref
from helpers import MEAN_TYPES, VAR_TYPES
from torch_ddpm.tables import STEP_TABLES

T = 50
Q_TABLES = ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
POST_TABLES = ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
               "posterior_log_variance_clipped")
P_TABLES = STEP_TABLES["p_sample"]
DDIM_TABLES = STEP_TABLES["ddim_sample"]
SEED, OFFSET = 1234, 40


@dataclass
class Case:
    """One call of an operator: its positional arguments, the names of the
    data arguments among them (position -> name), the float64 reference's
    outputs with their magnitudes and slacks."""
    args: tuple
    data: dict
    expected: List[Tuple[torch.Tensor, torch.Tensor, object]]


@dataclass
class Op:
    name: str
    build: Callable  # (device, dtype, shape, mode, noncontiguous, table_dtype) -> Case
    modes: Sequence = (None,)
    differentiable: Tuple[int, ...] = ()  # positions of the inputs with gradients
    out_overloads: dict = field(default_factory=dict)  # overload -> output names
    needs_channels: bool = False  # learned variances need [B, C, ...]
    result_dtype: Callable = lambda dtype: dtype  # the outputs' dtype for data of dtype
    # float32 tables allowed: a DDIM step forms 1 - abar and 1 - abar_prev from
    # its tables, which float32 loses near abar = 1 (docs/operators.md asks
    # float64 tables for it)
    float32_tables: bool = True

    @property
    def fn(self):
        return getattr(torch.ops.ddpm, self.name)

    def __str__(self):
        return self.name


def tables(device, table_dtype=torch.float64):
    """The kernel's tables, float64 or float32; the reference reads the same
    values widened (float32 tables only round each one)."""
    return ref.make_tables(T, "cosine", device, table_dtype)


def timesteps(batch, device):
    """0, 1, middle, T-1, then random: every class of t."""
    t = torch.randint(0, T, (batch,), generator=torch.Generator().manual_seed(batch))
    t[: min(batch, 4)] = torch.tensor([0, 1, T // 2, T - 1][: min(batch, 4)])
    return t.to(device)


def data(shape, dtype, device, seed, noncontiguous=False, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    if noncontiguous:
        return (torch.randn(*shape, 2, generator=g) * scale).to(dtype=dtype, device=device)[..., 1]
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=device)


def build_q_sample(device, dtype, shape, mode, nc, table_dtype=torch.float64):
    tab = tables(device, table_dtype)
    x0, noise = data(shape, dtype, device, 1, nc), data(shape, dtype, device, 2, nc)
    t = timesteps(shape[0], device)
    want, mag = ref.q_sample(x0, t, noise, tab)
    return Case((x0, t, noise, *(tab[k] for k in Q_TABLES)), {0: "x_start", 2: "noise"},
                [(want, mag, 0.0)])


def build_q_sample_philox(device, dtype, shape, mode, nc, table_dtype=torch.float64):
    tab = tables(device, table_dtype)
    x0 = data(shape, dtype, device, 1, nc)
    t = timesteps(shape[0], device)
    noise = torch.ops.ddpm.philox_normal(x0.float(), SEED, OFFSET)  # float32, rounded once
    want, mag = ref.q_sample(x0, t, noise, tab)
    return Case((x0, t, SEED, OFFSET, *(tab[k] for k in Q_TABLES)), {0: "x_start"},
                [(want, mag, 0.0), (noise.double(), noise.double().abs(), 0.0)])


def build_posterior(device, dtype, shape, mode, nc, table_dtype=torch.float64):
    tab = tables(device, table_dtype)
    x0, xt = data(shape, dtype, device, 1, nc), data(shape, dtype, device, 2, nc)
    t = timesteps(shape[0], device)
    mean, var, log_var, mag = ref.posterior_mean_variance(x0, xt, t, tab)
    return Case((x0, xt, t, *(tab[k] for k in POST_TABLES)), {0: "x_start", 1: "x_t"},
                [(mean, mag, 0.0), (var, var.abs(), 0.0), (log_var, log_var.abs(), 0.0)])


def clip_bounds(batch, device):
    """Per-sample clip bounds: tight, loose and in between (some elements
    clipped, some not, whatever the timestep)."""
    return (torch.tensor([0.5, 1.5, 3.0, 0.8, 2.0], dtype=torch.float64)
            .repeat(batch // 5 + 1)[:batch].to(device))


def step_builder(kind, philox):
    ddim = kind == "ddim_sample"
    def build(device, dtype, shape, mode, nc, table_dtype=torch.float64):
        mean_type, var_type, extra = mode[:3]
        clip = mode[3] if len(mode) > 3 else None  # None, "none", "bound" or "rescale"
        model_noise = len(mode) > 4 and mode[4] == "model_noise"  # DDIM's own option
        tab = tables(device, table_dtype)
        learned = var_type in ref.LEARNED
        out_shape = (shape[0], shape[1] * 2, *shape[2:]) if learned else shape
        model_output = data(out_shape, dtype, device, 3, nc)
        if learned:  # the variance half: v in [-1, 1], or a plausible log-variance
            half = model_output[:, shape[1]:]
            half.copy_(half.float().clamp(-1, 1) if var_type == "learned_range"
                       else half.float().clamp(-3, 0) - 2)
        x = data(shape, dtype, device, 4, nc)
        t = timesteps(shape[0], device)
        if philox:
            noise = torch.ops.ddpm.philox_normal(x.float(), SEED, OFFSET)
            noise_args = (SEED, OFFSET)
        else:
            noise = data(shape, dtype, device, 5, nc)
            noise_args = (noise,)
        names = STEP_TABLES[kind]
        eta = (extra,) if kind != "p_sample" else ()
        clip_args, ref_clip, clip_denoised = (), True, True
        if clip == "none":
            ref_clip = clip_denoised = False
        elif clip is not None:
            bound = clip_bounds(shape[0], device)
            clip_args, ref_clip = (bound, clip == "rescale"), (bound, clip == "rescale")
        history_args = ()
        if kind == "dpm_solver_sample":
            order, solver_type, algorithm = extra
            if order > 1:
                # the last step of a chain that ends at sigma 0 is first order: here
                # it ends at half the smallest sigma
                tab = dict(tab, sigmas_next=tab["sigmas_next"].clone())
                tab["sigmas_next"][0] = tab["sigmas"][0] / 2
            history = [data(shape, dtype, device, 6 + i, nc) for i in range(2)]
            history_args = (*history[: order - 1], *[None] * (3 - order), *extra)
            eta = ()
            want = ref.dpm_solver_sample(model_output, x, t, noise, tab, history, order,
                                         solver_type, algorithm, mean_type, var_type, ref_clip)
        elif kind == "euler_sample":
            want = ref.euler_sample(model_output, x, t, noise, tab, extra, mean_type, var_type,
                                    ref_clip)
        elif ddim:
            want = ref.ddim_sample(model_output, x, t, noise, tab, extra, mean_type, var_type,
                                   ref_clip, use_clipped_model_output=not model_noise)
        else:
            want = ref.p_sample(model_output, x, t, noise, tab, mean_type, var_type, ref_clip)
        e_sample, e_pred, s_mag, p_mag, (s_slack, p_slack) = want
        if model_noise:
            clip_args = clip_args or (None, False)
            clip_args += (False,)  # use_clipped_model_output
        args = (model_output, x, t, *noise_args, *(tab[k] for k in names), *history_args, *eta,
                mean_type, var_type, clip_denoised, *clip_args)
        data_args = {0: "model_output", 1: "x_t"}
        if not philox:
            data_args[3] = "noise"
        for i, value in enumerate(history_args[:2]):
            if value is not None:
                data_args[len(noise_args) + 3 + len(names) + i] = f"pred_xstart_{i + 1}"
        return Case(args, data_args, [(e_sample, s_mag, s_slack), (e_pred, p_mag, p_slack)])
    return build


def build_diffusion_mse(device, dtype, shape, mode, nc, table_dtype=torch.float64):
    target, weighted = mode
    tab = tables(device, table_dtype)
    out, x0 = data(shape, dtype, device, 3, nc), data(shape, dtype, device, 1, nc)
    noise = data(shape, dtype, device, 2, nc)
    t = timesteps(shape[0], device)
    weight = torch.rand(T, generator=torch.Generator().manual_seed(7),
                        dtype=torch.float64).to(device, table_dtype) if weighted else None
    want, mag = ref.diffusion_mse(out, x0, noise, t, tab, weight, target)
    return Case((out, x0, noise, t, *(tab[k] for k in Q_TABLES), weight, target),
                {0: "model_output", 1: "x_start", 2: "noise"}, [(want, mag, 0.0)])


STEP_OUTS = {"out": ("sample", "pred_xstart"), "sample_out": ("sample",)}
# the last modes clip to a per-sample bound, or threshold (clamp and divide)
P_MODES = [(m, v, None) for m in MEAN_TYPES for v in VAR_TYPES] + [
    ("epsilon", "fixed_small", None, "rescale"), ("v", "learned_range", None, "bound"),
    ("start_x", "fixed_large", None, "rescale")]
DDIM_MODES = [(m, v, eta) for m in MEAN_TYPES for v in ("fixed_small", "learned_range")
              for eta in (0.0, 0.5)] + [
    ("epsilon", "fixed_small", 0.5, "rescale"), ("v", "fixed_small", 0.0, "bound")] + [
    # the model's own noise prediction (diffusers' use_clipped_model_output=False)
    (m, "fixed_small", 0.5, clip, "model_noise") for m in MEAN_TYPES
    for clip in (None, "rescale")]
# eta 0: diffusers' Euler, 1: its ancestral step; unclipped (diffusers' Euler)
# and clipped
EULER_MODES = [(m, v, eta, "none") for m in ("epsilon", "start_x", "v")
               for v in ("fixed_small", "learned") for eta in (0.0, 1.0)] + [
    ("epsilon", "fixed_small", 0.5, None), ("v", "fixed_small", 1.0, "rescale"),
    ("start_x", "fixed_large", 0.0, "bound")]
# (solver_order, solver_type, algorithm_type): every order and form, ODE and SDE
DPM_SOLVER_MODES = [("epsilon", "fixed_small", (3, "midpoint", "dpmsolver++"), "none")] + [
    (m, v, (order, form, algorithm), "none") for m, v in (("epsilon", "learned"),
                                                        ("v", "fixed_small"),
                                                        ("start_x", "fixed_small"))
    for order in (1, 2, 3) for form in ("midpoint", "heun")
    for algorithm in ("dpmsolver++", "sde-dpmsolver++")] + [
    ("epsilon", "fixed_small", (2, "midpoint", "dpmsolver++"), "rescale"),
    ("v", "fixed_small", (1, "heun", "sde-dpmsolver++"), "bound")]

OPS = [
    Op("q_sample", build_q_sample, differentiable=(0, 2), out_overloads={"out": ("out",)}),
    Op("q_sample_philox", build_q_sample_philox, differentiable=(0,)),
    Op("posterior_mean_variance", build_posterior, differentiable=(0, 1),
       out_overloads={"out": ("mean",)}),
    # the first mode has a weight: TorchScript's generic test types every argument
    Op("diffusion_mse", build_diffusion_mse,
       [(target, weighted) for weighted in (True, False) for target in ("epsilon", "start_x", "v")],
       (0, 1, 2), result_dtype=lambda dtype: torch.float64 if dtype == torch.float64
       else torch.float32),
    Op("p_sample", step_builder("p_sample", False), P_MODES, (0, 1), STEP_OUTS, True),
    Op("p_sample_philox", step_builder("p_sample", True), P_MODES, (0, 1), STEP_OUTS, True),
    Op("ddim_sample", step_builder("ddim_sample", False), DDIM_MODES, (0, 1), STEP_OUTS, True,
       float32_tables=False),
    Op("ddim_sample_philox", step_builder("ddim_sample", True), DDIM_MODES, (0, 1), STEP_OUTS,
       True, float32_tables=False),
    Op("euler_sample", step_builder("euler_sample", False), EULER_MODES, (0, 1), STEP_OUTS, True),
    Op("euler_sample_philox", step_builder("euler_sample", True), EULER_MODES, (0, 1),
       STEP_OUTS, True),
    # (float64 tables: a DPM-Solver step forms log differences of its sigmas)
    Op("dpm_solver_sample", step_builder("dpm_solver_sample", False), DPM_SOLVER_MODES, (0, 1),
       STEP_OUTS, True, float32_tables=False),
    Op("dpm_solver_sample_philox", step_builder("dpm_solver_sample", True), DPM_SOLVER_MODES,
       (0, 1), STEP_OUTS, True, float32_tables=False),
]


def op_mode_params():
    """(op, mode) pairs, for pytest parametrization, with readable ids."""
    import pytest

    def flat(mode):
        return "-".join(flat(m) if isinstance(m, tuple) else str(m) for m in mode)

    return [pytest.param(op, mode, id=f"{op.name}-{flat(mode) if mode else 'x'}")
            for op in OPS for mode in op.modes]
