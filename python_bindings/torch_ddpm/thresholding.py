"""Imagen's dynamic thresholding (Saharia et al. 2022) inside the fused
steps: each sample's bound s is a quantile of |x_0| computed first, then the
step clamps x_0 to [-s, s] and divides it by s in its one pass (the steps'
clip_bound and clip_rescale)."""
from typing import NamedTuple

import torch

__all__ = ["DynamicThreshold", "dynamic_threshold_bound", "step_threshold_bound"]


class DynamicThreshold(NamedTuple):
    """Imagen's dynamic thresholding, given where a clip_denoised flag goes
    (GaussianDiffusion's p_sample, ddim_sample and their loops):
    clip_denoised=DynamicThreshold(0.995, 1.5) clamps each sample's pred_x0
    to [-s, s] and divides it by s, s = dynamic_threshold_bound(pred_x0,
    ratio, max_value); the step stays one fused pass (the quantile, of the
    unclipped pred_x0, is computed before it). For autograd s is a constant
    (the fused step's gradient is 1/s inside the bound, 0 outside); apply()
    differentiates through the quantile as well."""
    ratio: float = 0.995
    max_value: float = 1.0

    def apply(self, pred_xstart):
        """clamp(pred_xstart, -s, s) / s per sample, as a chain of tensor ops
        (for code that holds pred_xstart already, e.g. after a denoised_fn)."""
        s = dynamic_threshold_bound(pred_xstart, self.ratio, self.max_value)
        s = s.view(-1, *([1] * (pred_xstart.dim() - 1)))
        return (torch.clamp(pred_xstart.to(s.dtype), -s, s) / s).to(pred_xstart.dtype)


def dynamic_threshold_bound(pred_xstart, ratio=0.995, max_value=1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding bound, one per sample [B]: the `ratio`
    quantile of |pred_xstart| over the sample, clamped to [1, max_value], as
    diffusers' _threshold_sample forms it (in float32 for 16-bit data).
    Give it the unclipped pred_xstart and pass the result to a step as
    clip_bound with clip_rescale=True: the step clamps pred_xstart to [-s, s]
    and divides it by s in its one pass.

    The quantile is torch.quantile's, bit for bit (its linear interpolation
    between the two order statistics around ratio*(N-1), that position
    computed in the data's dtype), found by selection (kthvalue) instead of
    a sort of every sample; a sample holding NaN gets NaN, as there."""
    flat = pred_xstart.reshape(pred_xstart.shape[0], -1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # quantile wants float32 or float64
    flat = flat.abs()
    n = flat.shape[1]
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"dynamic_threshold_bound: expected ratio in [0, 1], got {ratio}")
    if n == 0:
        raise ValueError("dynamic_threshold_bound: expected non-empty samples")
    rank = torch.tensor(ratio, dtype=flat.dtype) * (n - 1)  # a CPU scalar: no device sync
    below_at, above_at = int(rank.floor()), int(rank.ceil())
    below = torch.kthvalue(flat, below_at + 1, dim=1).values
    above = below if above_at == below_at else torch.kthvalue(flat, above_at + 1, dim=1).values
    # the weight as a host scalar (exact: a value of the data's dtype), a kernel
    # argument; a 0-d tensor moved to a GPU would be a blocking copy
    bound = torch.lerp(below, above, float(rank - below_at))
    bound = torch.where(flat.isnan().any(dim=1), torch.full_like(bound, float("nan")), bound)
    return bound.clamp(min=1, max=max_value)


def step_threshold_bound(kind, model_output, x_t, t, tables, model_mean_type, ratio, max_value):
    """The bound of a step's dynamic thresholding: dynamic_threshold_bound of
    the x_0 the model predicts before any limit, which the step operator
    `kind` gives in one pass (clip_denoised=False; x_t stands in for the
    noise and fixed_small for the variance, which x_0 does not read; a
    learned variance half of model_output is left out). A constant for
    autograd; in x_t's dtype, as the step's pred_xstart."""
    model_output = model_output[:, :x_t.shape[1]] if x_t.dim() > 1 else model_output
    with torch.no_grad():
        _, pred_xstart = getattr(torch.ops.ddpm, kind)(
            model_output, x_t, t, x_t, *tables, model_mean_type=model_mean_type,
            model_var_type="fixed_small", clip_denoised=False)
        return dynamic_threshold_bound(pred_xstart, ratio, max_value)
