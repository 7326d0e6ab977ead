"""Every loss: the fused training loss (diffusion_mse, one pass over memory),
its per-timestep weights (loss_weights), and the likelihood terms of the
variational bound, with improved-diffusion's losses.py semantics (KL between
Gaussians, the discretized Gaussian decoder).

Loss weights, as float64 tables [T]:
Per-timestep loss weights for diffusion training, as float64 tables [T].

    weights = torch_ddpm.loss_weights(schedule, "min_snr", gamma=5.0, prediction="epsilon")
    loss = (mse_per_sample * weights.to(device, dtype)[t]).mean()

With SNR_t = abar_t / (1 - abar_t), for a model trained on the squared error of
its own target (prediction: "epsilon", "x0" or "v"):

- "min_snr" (Hang et al. 2023; diffusers' training scripts with compute_snr,
  lucidrains' min_snr_loss_weight): min(SNR, gamma) over the target's own SNR
  weight, i.e. min(SNR, gamma) / SNR for epsilon, min(SNR, gamma) for x0,
  min(SNR, gamma) / (SNR + 1) for v.
- "p2" (Choi et al. 2022): (k + SNR) ** -gamma.
- "truncated_snr" (Salimans & Ho 2022): max(SNR, 1) on the x0 error, carried to
  the target: max(SNR, 1) / SNR for epsilon, max(SNR, 1) for x0,
  max(SNR, 1) / (SNR + 1) for v.
- "none": ones.

Zero terminal SNR (abar_T = 0, rescale_betas_zero_snr) divides by nothing:
min-SNR's epsilon weight there is its limit, 1. Truncated SNR's epsilon weight
there is infinite (an x0 error of weight 1 is an epsilon error of weight
1/SNR): refused, by name, rather than returned as inf.
"""
import math

import torch

from .operators import in_common_dtype, mode_name

__all__ = ["diffusion_mse", "loss_target_name", "loss_weights", "KINDS", "PREDICTIONS",
           "mean_flat", "normal_kl", "approx_standard_normal_cdf",
           "discretized_gaussian_log_likelihood"]


# ---- the training loss ---------------------------------------------------------------
# The prediction targets as the other codebases name them: diffusers'
# prediction_type, lucidrains' objective, improved-diffusion's ModelMeanType.
_TARGET_ALIASES = {"epsilon": "epsilon", "start_x": "start_x", "v": "v",
                   "sample": "start_x", "v_prediction": "v",
                   "pred_noise": "epsilon", "pred_x0": "start_x", "pred_v": "v"}


def loss_target_name(target) -> str:
    """'epsilon', 'start_x' or 'v' from any codebase's name for what the model
    predicts (diffusers' 'sample' / 'v_prediction', lucidrains' 'pred_noise' /
    'pred_x0' / 'pred_v', improved-diffusion's ModelMeanType.EPSILON /
    START_X); other names pass through and the operator refuses them."""
    name = mode_name(target)
    return _TARGET_ALIASES.get(name, name)


def diffusion_mse(model_output, x_start, noise, t, sqrt_alphas_cumprod,
                  sqrt_one_minus_alphas_cumprod, weight=None, target="epsilon",
                  noise_offset=None):
    """The diffusion training loss per sample, in one pass over memory:

        loss[b] = weight[t_b] * mean((model_output[b] - target[b])**2)

    target: what the model predicts: 'epsilon' (the noise), 'start_x'
    (x_start) or 'v' (sqrt(abar_t) noise - sqrt(1 - abar_t) x_start); the
    other codebases' names are accepted too (loss_target_name). weight: a
    table of length T (torch_ddpm.loss_weights builds min-SNR, P2 and
    truncated-SNR ones), or None for 1. Returns a [B] tensor: float64 for
    float64 data, else float32 (the mean is accumulated in float64; 16-bit
    data is not rounded back). Differentiable in model_output, x_start and
    noise; its backward writes model_output's gradient in one pass.
    model_output, x_start and noise share a shape, dtype and device;
    model_output may be a channel slice (the mean half of a learned-variance
    output), read in place. noise_offset: as q_sample's (the target's noise
    is noise + noise_offset[b, c]).

    Under autocast the model's output is often 16-bit where x_start and the
    noise are float32: the three are compared in the widest of their dtypes
    here (as autocast runs mse_loss in float32, and diffusers' scripts call
    .float()); the operator itself takes one dtype and names a mismatch.

    The same as ``(weight[t] * mean_flat((target - model_output)**2))`` of
    improved-diffusion, lucidrains' p_losses and diffusers' training scripts
    (``F.mse_loss(model_pred.float(), target.float(), reduction="none")``
    then the mean over all but the batch), to float rounding.
    """
    model_output, x_start, noise = in_common_dtype(model_output, x_start, noise)
    if noise_offset is not None:
        noise_offset = noise_offset.to(noise.dtype)
    return torch.ops.ddpm.diffusion_mse(
        model_output, x_start, noise, t, sqrt_alphas_cumprod,
        sqrt_one_minus_alphas_cumprod, weight, loss_target_name(target), noise_offset)


# ---- loss weights ---------------------------------------------------------------------
KINDS = ("min_snr", "p2", "truncated_snr", "none")
PREDICTIONS = ("epsilon", "x0", "v")
# other spellings of the targets (diffusers', lucidrains', improved-diffusion's)
_PREDICTION_NAMES = {"epsilon": "epsilon", "pred_noise": "epsilon", "eps": "epsilon",
                     "x0": "x0", "sample": "x0", "pred_x0": "x0", "start_x": "x0",
                     "v": "v", "v_prediction": "v", "pred_v": "v"}


def _alphas_cumprod(schedule) -> torch.Tensor:
    """float64 abar from a schedule object or dict with alphas_cumprod (ours,
    improved-diffusion's, diffusers' schedulers, lucidrains' GaussianDiffusion),
    or from a 1-D tensor / sequence of betas."""
    if isinstance(schedule, dict):
        abar = schedule["alphas_cumprod"]
    elif hasattr(schedule, "alphas_cumprod"):
        abar = schedule.alphas_cumprod
    else:
        betas = torch.as_tensor(schedule, dtype=torch.float64)
        if betas.dim() != 1 or betas.numel() == 0:
            raise ValueError("loss_weights: schedule must be a schedule with alphas_cumprod "
                             f"or 1-D betas, got shape {tuple(betas.shape)}")
        return torch.cumprod(1.0 - betas.cpu(), dim=0)
    return torch.as_tensor(abar).detach().to(device="cpu", dtype=torch.float64)


def loss_weights(schedule, kind: str, gamma: float = 5.0, prediction: str = "epsilon",
                 k: float = 1.0) -> torch.Tensor:
    """The weight of each timestep's loss, float64 [T] on the CPU (see the module).

    schedule: anything with alphas_cumprod, or betas. kind: one of KINDS.
    gamma: min-SNR's cap or P2's exponent. prediction: the model's target
    ("epsilon", "x0", "v", or diffusers' / lucidrains' names for them).
    k: P2's offset."""
    if kind not in KINDS:
        raise ValueError(f"loss_weights: kind must be one of {KINDS}, got {kind!r}")
    if prediction not in _PREDICTION_NAMES:
        raise ValueError(f"loss_weights: prediction must be one of {PREDICTIONS} (or "
                         f"{sorted(set(_PREDICTION_NAMES) - set(PREDICTIONS))}), got {prediction!r}")
    target = _PREDICTION_NAMES[prediction]
    abar = _alphas_cumprod(schedule)
    if not bool(((abar >= 0) & (abar <= 1)).all()):
        raise ValueError("loss_weights: alphas_cumprod must lie in [0, 1]")
    if kind == "none":
        return torch.ones_like(abar)
    snr = abar / (1.0 - abar)  # inf where abar = 1, 0 where abar = 0
    if kind == "p2":
        if k <= 0 and bool((snr == 0).any()):
            raise ValueError("loss_weights: p2 with k <= 0 is infinite at zero SNR")
        return (k + snr) ** -gamma
    if kind == "min_snr":
        if gamma <= 0:
            raise ValueError(f"loss_weights: min_snr needs gamma > 0, got {gamma}")
        x0_weight = torch.clamp(snr, max=gamma)
        if target == "x0":
            return x0_weight
        if target == "v":
            return x0_weight / (snr + 1.0)
        # min(SNR, gamma) / SNR without 0 / 0: 1 up to gamma, gamma / SNR above
        return torch.where(snr > gamma, gamma / torch.clamp(snr, min=gamma), torch.ones_like(snr))
    # truncated_snr
    x0_weight = torch.clamp(snr, min=1.0)
    if target == "x0":
        return x0_weight
    if target == "v":
        return torch.where(torch.isinf(snr), torch.ones_like(snr), x0_weight / (snr + 1.0))
    if bool((snr == 0).any()):
        first = int((snr == 0).nonzero()[0])
        raise ValueError(f"loss_weights: truncated_snr for epsilon prediction is infinite at "
                         f"zero SNR (timestep {first}): weight the x0 or v error instead")
    return torch.clamp(1.0 / snr, min=1.0)


# ---- the variational bound's terms (improved-diffusion's losses.py) -------------------
def mean_flat(tensor):
    """Mean over all non-batch dimensions."""
    return tensor.mean(dim=list(range(1, tensor.dim())))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise; scalars broadcast."""
    tensor = next((x for x in (mean1, logvar1, mean2, logvar2) if isinstance(x, torch.Tensor)), None)
    assert tensor is not None, "at least one argument must be a Tensor"
    logvar1, logvar2 = [x if isinstance(x, torch.Tensor) else torch.tensor(x).to(tensor)
                        for x in (logvar1, logvar2)]
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    """A fast approximation of the standard normal CDF (tanh form)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    """Log-likelihood of images in [-1, 1] (256 bins) under a discretized Gaussian."""
    assert x.shape == means.shape == log_scales.shape
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    log_probs = torch.where(
        x < -0.999, log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )
    assert log_probs.shape == x.shape
    return log_probs
