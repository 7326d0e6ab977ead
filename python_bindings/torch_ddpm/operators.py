"""Documented Python front ends of the ddpm operators (torch.ops.ddpm.*);
the training loss's is torch_ddpm.losses.diffusion_mse.

Each function is the operator itself: it works on CPU and CUDA tensors, is
differentiable (q_sample in x_start and noise, posterior_mean_variance in
x_start and x_t, p_sample in model_output and x_t), and is visible to
TorchScript and torch.compile as torch.ops.ddpm.<name>.

Conventions: t is an int64 tensor of shape [B] on the data's device; data
tensors have shape [B, ...]; tables are 1-D float32/float64 tensors of length T
on the same device (build them with torch_ddpm.schedules). float16 and
bfloat16 data are computed in float32 and rounded once on store.
"""
from typing import Tuple

import torch

from .noise import _as_int64, _checked_offset

__all__ = ["q_sample", "posterior_mean_variance", "p_sample", "ddim_sample", "euler_sample",
           "dpm_solver_sample", "mode_name",
           "q_sample_philox", "p_sample_philox", "ddim_sample_philox", "in_common_dtype",
           "step_overload"]


def mode_name(mode) -> str:
    """'epsilon', 'fixed_small', ... from a string or an enum such as
    improved-diffusion's ModelMeanType.EPSILON / ModelVarType.FIXED_SMALL."""
    name = getattr(mode, "name", mode)
    if not isinstance(name, str):
        raise TypeError(f"expected a mode name or enum, got {mode!r}")
    return name.lower()


def q_sample(x_start, t, noise, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
             noise_offset=None):
    """Diffuse x_start to step t: sqrt(abar_t) x_start + sqrt(1 - abar_t) noise.

    noise_offset: offset noise ([B, C], x's dtype): the noise is then
    noise + noise_offset[b, c] (lucidrains' and diffusers' noise_offset,
    ``noise + s * randn(B, C, 1, 1)``), in the same pass; give diffusion_mse
    the same offset for the target."""
    return torch.ops.ddpm.q_sample(
        x_start, t, noise, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, noise_offset
    )


def posterior_mean_variance(
    x_start, x_t, t, posterior_mean_coef1, posterior_mean_coef2,
    posterior_variance, posterior_log_variance_clipped,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0).

    variance and log_variance are [B, 1, ...] values broadcast to x's shape.
    """
    return torch.ops.ddpm.posterior_mean_variance(
        x_start, x_t, t, posterior_mean_coef1, posterior_mean_coef2,
        posterior_variance, posterior_log_variance_clipped,
    )


def p_sample(
    model_output, x_t, t, noise,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
    posterior_mean_coef1, posterior_mean_coef2,
    posterior_log_variance_clipped, betas,
    model_mean_type="epsilon", model_var_type="fixed_small", clip_denoised=True,
    clip_bound=None, clip_rescale=False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One fused reverse step x_t -> x_{t-1}; returns (sample, pred_xstart).

    model_mean_type: what the model predicts, one of MEAN_TYPES
        ('epsilon', 'start_x', 'previous_x', 'v').
    model_var_type: one of VAR_TYPES ('fixed_small', 'fixed_large', 'learned',
        'learned_range'); for the learned ones model_output has 2C channels,
        the second half being the log-variance or its interpolation weight.
    clip_denoised: clamp pred_xstart to [-1, 1] before forming the mean.
    clip_bound: a tensor [B], one bound s per sample: pred_xstart is clamped
        to [-s, s] instead (needs clip_denoised); with clip_rescale it is
        also divided by s: Imagen's dynamic thresholding, s from
        dynamic_threshold_bound(). Still one pass; no gradient flows to s.
    No noise is added where t == 0. Same semantics as improved-diffusion's
    p_mean_variance followed by p_sample, with the noise passed explicitly.
    """
    return torch.ops.ddpm.p_sample(
        model_output, x_t, t, noise,
        sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
        posterior_mean_coef1, posterior_mean_coef2,
        posterior_log_variance_clipped, betas,
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised),
        clip_bound, bool(clip_rescale),
    )


def ddim_sample(
    model_output, x_t, t, noise,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
    posterior_mean_coef1, posterior_mean_coef2,
    alphas_cumprod, alphas_cumprod_prev, eta=0.0,
    model_mean_type="epsilon", model_var_type="fixed_small", clip_denoised=True,
    clip_bound=None, clip_rescale=False, use_clipped_model_output=True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One fused DDIM step x_t -> x_{t-1}; returns (sample, pred_xstart).

    With eps = (x_t/sqrt(abar_t) - pred_xstart)/sqrt(1/abar_t - 1) and
    sigma = eta*sqrt((1 - abar_prev)/(1 - abar_t))*sqrt(1 - abar_t/abar_prev):
    sample = sqrt(abar_prev)*pred_xstart + sqrt(1 - abar_prev - sigma^2)*eps
    + [t > 0]*sigma*noise, as improved-diffusion's ddim_sample. eta = 0 is the
    deterministic step; alphas_cumprod_next in place of alphas_cumprod_prev
    (eta = 0) is ddim_reverse_sample's step x_t -> x_{t+1}. A learned variance
    half of model_output is ignored. Modes as p_sample's. Give the tables in
    float64: the step forms 1 - abar from them.
    use_clipped_model_output=False: eps in the direction term is the model's
    own prediction (from the unclipped x_0), diffusers' default, not the one
    re-derived from the clipped pred_xstart; the same step without clipping.
    """
    return torch.ops.ddpm.ddim_sample(
        model_output, x_t, t, noise,
        sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
        posterior_mean_coef1, posterior_mean_coef2,
        alphas_cumprod, alphas_cumprod_prev, float(eta),
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised),
        clip_bound, bool(clip_rescale), bool(use_clipped_model_output),
    )


def euler_sample(model_output, x_t, t, noise, sigmas, sigmas_next, eta=0.0,
                 model_mean_type="epsilon", model_var_type="fixed_small", clip_denoised=False,
                 clip_bound=None, clip_rescale=False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One fused Euler step in sigma space, sample t (an inference step index,
    [B]) from sigmas[t] to sigmas_next[t]; returns (sample, pred_xstart).

    x_t is the sigma-scaled sample (the model is given x_t/sqrt(sigma^2 + 1));
    sample = x_t + (x_t - pred_xstart)/sigma*(sigma_down - sigma) +
    sigma_up*noise with k-diffusion's ancestral split of sigma_next scaled by
    eta: eta = 0 is diffusers' EulerDiscreteScheduler step (the noise is not
    read: pass x_t), eta = 1 its EulerAncestralDiscreteScheduler step.
    model_mean_type "epsilon", "v" or "start_x"; a learned variance half is
    ignored. torch_ddpm.tables.sigma_step_tables gives the two tables from a
    chain's sigmas."""
    return torch.ops.ddpm.euler_sample(
        model_output, x_t, t, noise, sigmas, sigmas_next, float(eta),
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised), clip_bound,
        bool(clip_rescale))


def dpm_solver_sample(model_output, x_t, t, noise, sigmas, sigmas_next, sigmas_1, sigmas_2,
                      pred_xstart_1=None, pred_xstart_2=None, solver_order=1,
                      solver_type="midpoint", algorithm_type="dpmsolver++",
                      model_mean_type="epsilon", model_var_type="fixed_small",
                      clip_denoised=False, clip_bound=None,
                      clip_rescale=False) -> Tuple[torch.Tensor, torch.Tensor]:
    """One fused DPM-Solver++ multistep step (Lu et al. 2022, as diffusers'
    DPMSolverMultistepScheduler), sample t (an inference step index, [B]) from
    sigmas[t] to sigmas_next[t]; returns (sample, pred_xstart).

    x_t is variance-preserving. solver_order (1, 2 or 3) is this step's: a
    chain's first steps lower it, as may its last; orders 2 and 3 read the
    pred_xstart returned by the steps one and two before (pred_xstart_1,
    pred_xstart_2; their sigmas are sigmas_1[t], sigmas_2[t]) in the same
    pass. solver_type "midpoint" or "heun" (order 2), algorithm_type
    "dpmsolver++" (the noise is not read: pass x_t) or "sde-dpmsolver++".
    clip_bound with clip_rescale is diffusers' thresholding of pred_xstart.
    torch_ddpm.tables.sigma_step_tables gives the four float64 tables from a
    chain's sigmas."""
    return torch.ops.ddpm.dpm_solver_sample(
        model_output, x_t, t, noise, sigmas, sigmas_next, sigmas_1, sigmas_2, pred_xstart_1,
        pred_xstart_2, int(solver_order), str(solver_type), str(algorithm_type),
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised), clip_bound,
        bool(clip_rescale))


def q_sample_philox(x_start, t, seed, offset, sqrt_alphas_cumprod,
                    sqrt_one_minus_alphas_cumprod) -> Tuple[torch.Tensor, torch.Tensor]:
    """q_sample with the noise drawn in the kernel: returns (x_t, noise), the
    noise being philox_normal(x_start, seed, offset) (the training target)."""
    return torch.ops.ddpm.q_sample_philox(
        x_start, t, _as_int64(seed), _checked_offset(offset), sqrt_alphas_cumprod,
        sqrt_one_minus_alphas_cumprod)


def p_sample_philox(
    model_output, x_t, t, seed, offset,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
    posterior_mean_coef1, posterior_mean_coef2,
    posterior_log_variance_clipped, betas,
    model_mean_type="epsilon", model_var_type="fixed_small", clip_denoised=True,
    clip_bound=None, clip_rescale=False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """p_sample with noise = philox_normal(x_t, seed, offset) drawn in the
    kernel (in float32, also for 16-bit data): reads model_output and x_t,
    writes sample and pred_xstart, nothing else."""
    return torch.ops.ddpm.p_sample_philox(
        model_output, x_t, t, _as_int64(seed), _checked_offset(offset),
        sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
        posterior_mean_coef1, posterior_mean_coef2,
        posterior_log_variance_clipped, betas,
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised),
        clip_bound, bool(clip_rescale),
    )


def ddim_sample_philox(
    model_output, x_t, t, seed, offset,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
    posterior_mean_coef1, posterior_mean_coef2,
    alphas_cumprod, alphas_cumprod_prev, eta=0.0,
    model_mean_type="epsilon", model_var_type="fixed_small", clip_denoised=True,
    clip_bound=None, clip_rescale=False, use_clipped_model_output=True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """ddim_sample with noise = philox_normal(x_t, seed, offset) drawn in the
    kernel (in float32, also for 16-bit data)."""
    return torch.ops.ddpm.ddim_sample_philox(
        model_output, x_t, t, _as_int64(seed), _checked_offset(offset),
        sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
        posterior_mean_coef1, posterior_mean_coef2,
        alphas_cumprod, alphas_cumprod_prev, float(eta),
        mode_name(model_mean_type), mode_name(model_var_type), bool(clip_denoised),
        clip_bound, bool(clip_rescale), bool(use_clipped_model_output),
    )


_OVERLOADS = {}


def step_overload(kind, noise_args=None, sample_out=False):
    """The overload of step operator `kind` ("p_sample", "ddim_sample", ...) a call
    takes: noise_args None for a noise tensor, else what a PhiloxStream's
    noise_args() gave (seed, offset) or (generator,), which pick the *_philox
    form; sample_out its .sample_out form. Resolved here, once per form: the
    packet (torch.ops.ddpm.p_sample) matches an overload from its keyword
    arguments at every call, which costs several times the call."""
    source = 0 if noise_args is None else len(noise_args)
    key = (kind, source, sample_out)
    op = _OVERLOADS.get(key)
    if op is None:
        packet = getattr(torch.ops.ddpm, kind + ("_philox" if source else ""))
        name = "_".join(p for p in ("generator" if source == 1 else "",
                                     "sample_out" if sample_out else "") if p)
        op = _OVERLOADS[key] = getattr(packet, name or "default")
    return op


def in_common_dtype(*tensors):
    """The tensors (None kept) in the widest of their dtypes, each cast only
    where it differs. Under autocast a model's output is 16-bit where the
    sample is float32; the eager formulas the adapters replace promote, so the
    adapters compute in the wider dtype too (an exact cast), while the
    operators themselves take one dtype and name a mismatch."""
    dtype = None
    for x in tensors:
        if x is not None:
            dtype = x.dtype if dtype is None else torch.promote_types(dtype, x.dtype)
    return tuple(x if x is None or x.dtype == dtype else x.to(dtype) for x in tensors)
