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
        for i in range(s.num_timesteps - 1, -1, -1):
            step += 1
            t = torch.full([x.shape[0]], i, dtype=torch.long, device=x.device)
            model_output = self.denoiser(x, t)
            if seed is not None:
                x = self._philox_step(model_output, x, t, seed, 4 * step)
                continue
            noise = torch.randn_like(x)
            if self.ddim_eta < 0:
                x, _ = s.p_sample(model_output, x, t, noise, self.model_mean_type,
                                  self.model_var_type, self.clip_denoised)
            else:
                x, _ = torch.ops.ddpm.ddim_sample(
                    model_output, x, t, noise, s.sqrt_recip_alphas_cumprod,
                    s.sqrt_recipm1_alphas_cumprod, s.posterior_mean_coef1,
                    s.posterior_mean_coef2, s.alphas_cumprod, s.alphas_cumprod_prev,
                    self.ddim_eta, self.model_mean_type, self.model_var_type,
                    self.clip_denoised)
        return x

    def _philox_step(self, model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                     seed: int, offset: int) -> torch.Tensor:
        s = self.schedule
        if self.ddim_eta < 0:
            x, _ = s.p_sample_philox(model_output, x, t, seed, offset, self.model_mean_type,
                                     self.model_var_type, self.clip_denoised)
        else:
            x, _ = torch.ops.ddpm.ddim_sample_philox(
                model_output, x, t, seed, offset, s.sqrt_recip_alphas_cumprod,
                s.sqrt_recipm1_alphas_cumprod, s.posterior_mean_coef1,
                s.posterior_mean_coef2, s.alphas_cumprod, s.alphas_cumprod_prev,
                self.ddim_eta, self.model_mean_type, self.model_var_type,
                self.clip_denoised)
        return x
