"""Per-timestep loss weights for diffusion training, as float64 tables [T].

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
import torch

__all__ = ["loss_weights", "KINDS", "PREDICTIONS"]

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
