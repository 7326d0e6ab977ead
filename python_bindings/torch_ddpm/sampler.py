"""A TorchScript-able sampler: a denoiser plus the schedule as buffers, running
the full reverse chain with the fused operators. Script it, save it with
torch.jit.save, and run it from C++ (examples/run_sampler.cpp) without Python:

    sampler = torch.jit.script(Sampler(denoiser, betas, "epsilon", "fixed_small"))
    torch.jit.save(sampler, "sampler.pt")
"""
from typing import Optional

import torch

from .schedules import DiffusionSchedule

__all__ = ["Sampler"]


class Sampler(torch.nn.Module):
    """x_T -> x_0 by ancestral sampling (p_sample) or DDIM (ddim_eta >= 0).

    denoiser: a scriptable module called as denoiser(x_t, t) with t int64 [B].
    forward(x): noise is drawn with torch.randn_like(x) each step, so a seeded
    run in C++ and in Python consume the same random numbers.
    forward(x, seed): noise is drawn inside the kernels (Philox, see
    torch_ddpm.noise), the k-th step (k = 1, 2, ...) with offset 4k, leaving
    offset 0 for x_T = torch.ops.ddpm.philox_normal(x, seed, 0): the same
    samples on CPU and CUDA, in Python and in C++.
    """

    def __init__(self, denoiser, betas, model_mean_type="epsilon",
                 model_var_type="fixed_small", clip_denoised=True, ddim_eta=-1.0):
        super().__init__()
        self.denoiser = denoiser
        self.schedule = DiffusionSchedule(betas)
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.clip_denoised = clip_denoised
        self.ddim_eta = float(ddim_eta)  # < 0: ancestral sampling

    def forward(self, x: torch.Tensor, seed: Optional[int] = None) -> torch.Tensor:
        s = self.schedule
        step = 0
        own_x = False  # whether x is a buffer of ours, which the next step may overwrite
        for i in range(s.num_timesteps - 1, -1, -1):
            step += 1
            t = torch.full([x.shape[0]], i, dtype=torch.long, device=x.device)
            model_output = self.denoiser(x, t)
            if torch.is_grad_enabled() and (model_output.requires_grad or x.requires_grad):
                # differentiable: the functional operators (their sample_out
                # overloads, like any out= op, have no autograd)
                x = self._step(model_output, x, t, seed, 4 * step, torch.jit.annotate(
                    Optional[torch.Tensor], None))
                own_x = False
            else:
                # x_{t-1} into x_t's storage once it is ours, and no pred_xstart:
                # a quarter less memory traffic per step, no allocation
                out = x if own_x else torch.empty_like(x, memory_format=torch.contiguous_format)
                x = self._step(model_output, x, t, seed, 4 * step, out)
                own_x = True
        return x

    def _step(self, model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
              seed: Optional[int], offset: int, out: Optional[torch.Tensor]) -> torch.Tensor:
        """One step, x_{t-1}: into out (the sample_out overloads) unless None."""
        s = self.schedule
        ddim, eta = self.ddim_eta >= 0, self.ddim_eta
        tab = (s.sqrt_recip_alphas_cumprod, s.sqrt_recipm1_alphas_cumprod,
               s.posterior_mean_coef1, s.posterior_mean_coef2,
               s.alphas_cumprod if ddim else s.posterior_log_variance_clipped,
               s.alphas_cumprod_prev if ddim else s.betas)
        m, v, clip = self.model_mean_type, self.model_var_type, self.clip_denoised
        if seed is not None:
            if not ddim:
                if out is None:
                    return torch.ops.ddpm.p_sample_philox(
                        model_output, x, t, seed, offset, *tab, m, v, clip)[0]
                return torch.ops.ddpm.p_sample_philox(
                    model_output, x, t, seed, offset, *tab, m, v, clip, sample=out)
            if out is None:
                return torch.ops.ddpm.ddim_sample_philox(
                    model_output, x, t, seed, offset, *tab, eta, m, v, clip)[0]
            return torch.ops.ddpm.ddim_sample_philox(
                model_output, x, t, seed, offset, *tab, eta, m, v, clip, sample=out)
        noise = torch.randn_like(x)
        if not ddim:
            if out is None:
                return torch.ops.ddpm.p_sample(model_output, x, t, noise, *tab, m, v, clip)[0]
            return torch.ops.ddpm.p_sample(model_output, x, t, noise, *tab, m, v, clip, sample=out)
        if out is None:
            return torch.ops.ddpm.ddim_sample(model_output, x, t, noise, *tab, eta, m, v, clip)[0]
        return torch.ops.ddpm.ddim_sample(
            model_output, x, t, noise, *tab, eta, m, v, clip, sample=out)
