"""The reverse step's formulas as chains of tensor ops, once: the unfused
fallback of GaussianDiffusion (a denoised_fn or cond_fn between the
prediction of x_0 and the mean) and the eager improved-diffusion chain
(torch_ddpm.eager, the benchmarks' baseline and the drop-in's reference)
both use them. The fused operators compute the same in one pass
(csrc/ddpm/coefficients.h, elementwise.h; docs/math.md).

Coefficients come as tensors broadcast to the data (table[t] per sample).
"""
import torch

__all__ = ["learned_range_log_variance", "nonzero_mask", "ancestral_sample", "ddim_sigma",
           "ddim_sample", "ddim_reverse_sample", "v_target"]


def learned_range_log_variance(v, min_log, max_log):
    """The model's v in [-1, 1] interpolating between the two fixed log-variances."""
    frac = (v + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def nonzero_mask(t, ndim):
    """1 where t > 0, else 0, shaped [B, 1, ...]: no noise is added at t = 0."""
    return (t != 0).float().view(-1, *([1] * (ndim - 1)))


def ancestral_sample(mean, log_variance, noise, t):
    """x_{t-1} = mean + [t > 0] exp(log_variance / 2) noise."""
    return mean + nonzero_mask(t, mean.dim()) * torch.exp(0.5 * log_variance) * noise


def ddim_sigma(eta, alpha_bar, alpha_bar_prev):
    """DDIM's noise scale eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)."""
    return (eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
            * torch.sqrt(1 - alpha_bar / alpha_bar_prev))


def ddim_sample(pred_xstart, eps, alpha_bar_prev, sigma, noise, t):
    """sqrt(abar_prev) x_0 + sqrt(1 - abar_prev - sigma^2) eps + [t > 0] sigma noise."""
    mean_pred = (pred_xstart * torch.sqrt(alpha_bar_prev)
                 + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps)
    return mean_pred + nonzero_mask(t, mean_pred.dim()) * sigma * noise


def ddim_reverse_sample(pred_xstart, eps, alpha_bar_next):
    """The reverse ODE step x_t -> x_{t+1}: sqrt(abar_next) x_0 + sqrt(1 - abar_next) eps."""
    return pred_xstart * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps


def v_target(sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, noise, x_start):
    """v = sqrt(abar) eps - sqrt(1 - abar) x_0, the v-prediction's training target."""
    return sqrt_alphas_cumprod * noise - sqrt_one_minus_alphas_cumprod * x_start
