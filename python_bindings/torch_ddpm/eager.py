"""The same math written the way existing codebases write it today: numpy
tables gathered and broadcast per call, then a chain of small tensor ops
(improved-diffusion's GaussianDiffusion). This is the baseline the benchmark
measures against and the reference the drop-in's parity tests hold
GaussianDiffusion to; it runs no ddpm operator.
"""
import numpy as np
import torch

from . import formulas
from .gaussian_diffusion import GaussianDiffusion
from .losses import mean_flat
from .operators import mode_name
from .thresholding import DynamicThreshold

__all__ = ["EagerGaussianDiffusion", "extract_into_tensor"]


def extract_into_tensor(arr, timesteps, broadcast_shape):
    """arr[timesteps] as float32, broadcast by adding zeros (as improved-diffusion does)."""
    res = torch.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    while len(res.shape) < len(broadcast_shape):
        res = res[..., None]
    return res + torch.zeros(broadcast_shape, device=timesteps.device)


class EagerGaussianDiffusion(GaussianDiffusion):
    """GaussianDiffusion whose primitives are the eager tensor-op chains."""

    def _extract(self, name, t, shape):
        return extract_into_tensor(getattr(self, name), t, shape)

    def q_mean_variance(self, x_start, t):
        mean = extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = extract_into_tensor(1.0 - self.alphas_cumprod, t, x_start.shape)
        log_variance = extract_into_tensor(self.log_one_minus_alphas_cumprod, t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start, t, noise=None):
        if noise is None:
            noise = torch.randn_like(x_start)
        return (extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
                + extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise)

    def _mse_term(self, model_output, x_start, x_t, t, noise):
        mean_type = mode_name(self.model_mean_type)
        if mean_type == "previous_x":
            target = self.q_posterior_mean_variance(x_start, x_t, t)[0]
        elif mean_type == "start_x":
            target = x_start
        elif mean_type == "epsilon":
            target = noise
        else:  # v
            target = formulas.v_target(
                extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape),
                extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape),
                noise, x_start)
        return mean_flat((target - model_output) ** 2)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        posterior_mean = (extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
                          + extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t)
        posterior_variance = extract_into_tensor(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = extract_into_tensor(
            self.posterior_log_variance_clipped, t, x_t.shape)
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        model_output = self._model_output(model, x, t, model_kwargs)
        return self.mean_variance_from_output(model_output, x, t, clip_denoised, denoised_fn)

    def mean_variance_from_output(self, model_output, x, t, clip_denoised=True, denoised_fn=None):
        B, C = x.shape[:2]
        var_type = mode_name(self.model_var_type)
        if var_type in ("learned", "learned_range"):
            model_output, model_var_values = torch.split(model_output, C, dim=1)
            if var_type == "learned":
                model_log_variance = model_var_values
                model_variance = torch.exp(model_log_variance)
            else:
                min_log = extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
                max_log = extract_into_tensor(np.log(self.betas), t, x.shape)
                model_log_variance = formulas.learned_range_log_variance(
                    model_var_values, min_log, max_log)
                model_variance = torch.exp(model_log_variance)
        else:
            model_variance, model_log_variance = {
                "fixed_large": (np.append(self.posterior_variance[1], self.betas[1:]),
                                np.log(np.append(self.posterior_variance[1], self.betas[1:]))),
                "fixed_small": (self.posterior_variance, self.posterior_log_variance_clipped),
            }[var_type]
            model_variance = extract_into_tensor(model_variance, t, x.shape)
            model_log_variance = extract_into_tensor(model_log_variance, t, x.shape)

        def process_xstart(v):
            if denoised_fn is not None:
                v = denoised_fn(v)
            if isinstance(clip_denoised, DynamicThreshold):
                return clip_denoised.apply(v)
            return v.clamp(-1, 1) if clip_denoised else v

        mean_type = mode_name(self.model_mean_type)
        if mean_type == "previous_x":
            pred_xstart = process_xstart(self._predict_xstart_from_xprev(x, t, model_output))
            model_mean = model_output
        else:
            if mean_type == "start_x":
                pred_xstart = process_xstart(model_output)
            elif mean_type == "epsilon":
                pred_xstart = process_xstart(self._predict_xstart_from_eps(x, t, model_output))
            else:  # v
                pred_xstart = process_xstart(
                    extract_into_tensor(self.sqrt_alphas_cumprod, t, x.shape) * x
                    - extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x.shape) * model_output)
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": model_mean, "variance": model_variance,
                "log_variance": model_log_variance, "pred_xstart": pred_xstart}

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                 model_kwargs=None):
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        return self.sample_from(out, x, t, torch.randn_like(x), cond_fn, model_kwargs)

    def sample_from(self, out, x, t, noise, cond_fn=None, model_kwargs=None):
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs)
        sample = formulas.ancestral_sample(out["mean"], out["log_variance"], noise, t)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                    model_kwargs=None, eta=0.0):
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = extract_into_tensor(self.alphas_cumprod, t, x.shape)
        alpha_bar_prev = extract_into_tensor(self.alphas_cumprod_prev, t, x.shape)
        sigma = formulas.ddim_sigma(eta, alpha_bar, alpha_bar_prev)
        noise = torch.randn_like(x)
        sample = formulas.ddim_sample(out["pred_xstart"], eps, alpha_bar_prev, sigma, noise, t)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_sample(self, model, x, t, clip_denoised=True, denoised_fn=None,
                            model_kwargs=None, eta=0.0):
        assert eta == 0.0, "Reverse ODE only for deterministic path"
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = ((extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x.shape) * x - out["pred_xstart"])
               / extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x.shape))
        alpha_bar_next = extract_into_tensor(self.alphas_cumprod_next, t, x.shape)
        return {"sample": formulas.ddim_reverse_sample(out["pred_xstart"], eps, alpha_bar_next),
                "pred_xstart": out["pred_xstart"]}
