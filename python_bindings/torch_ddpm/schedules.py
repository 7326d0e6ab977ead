"""Noise schedules and every table the ddpm operators read, built in float64.

All tables are computed here, once, in float64 (see docs/math.md): kernels read them
per sample and compute in float32 for float32/float16/bfloat16 data. Never cast
a table to bfloat16 before forming 1 - alpha_bar: it erases the noise at small t.

    betas = get_named_beta_schedule("linear", 1000)
    sched = DiffusionSchedule(betas)          # an nn.Module holding the tables
    x_t = sched.q_sample(x_start, t, noise)
"""
import math
from typing import Callable, Optional, Tuple

import torch

__all__ = [
    "get_named_beta_schedule",
    "betas_for_alpha_bar",
    "linear_betas",
    "cosine_betas",
    "schedule_tables",
    "chain_tables",
    "DiffusionSchedule",
    "MEAN_TYPES",
    "VAR_TYPES",
]

MEAN_TYPES = ("epsilon", "start_x", "previous_x", "v")
VAR_TYPES = ("fixed_small", "fixed_large", "learned", "learned_range")


def linear_betas(num_timesteps: int) -> torch.Tensor:
    """DDPM's linear schedule, scaled by 1000/T so any T matches T = 1000."""
    scale = 1000.0 / num_timesteps
    return torch.linspace(
        scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64
    )


def betas_for_alpha_bar(
    num_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> torch.Tensor:
    """beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta)."""
    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule of Nichol & Dhariwal (2021)."""
    return betas_for_alpha_bar(
        num_timesteps,
        lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2,
        max_beta,
    )


def get_named_beta_schedule(name: str, num_timesteps: int) -> torch.Tensor:
    """'linear' or 'cosine' betas of length num_timesteps, float64."""
    if name == "linear":
        return linear_betas(num_timesteps)
    if name == "cosine":
        return cosine_betas(num_timesteps)
    raise NotImplementedError(f"unknown beta schedule: {name!r} (expected 'linear' or 'cosine')")


def chain_tables(betas, alphas_cumprod, alphas_cumprod_prev) -> dict:
    """The tables of a chain whose step t goes from alphas_cumprod[t] back to
    alphas_cumprod_prev[t] with betas[t] (= 1 - abar_t/abar_prev; the
    training chain's own betas, or a respaced or skipping chain's), in float64:
    the posterior (docs/math.md) and the predictions of x_0. Built here once for
    schedule_tables and the diffusers adapter."""
    ab, ab_prev = alphas_cumprod, alphas_cumprod_prev
    return {
        "sqrt_alphas_cumprod": torch.sqrt(ab),
        "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - ab),
        "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / ab),
        "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / ab - 1),
        # beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t): the posterior variance
        "posterior_variance": betas * (1.0 - ab_prev) / (1.0 - ab),
        "posterior_mean_coef1": betas * torch.sqrt(ab_prev) / (1.0 - ab),
        "posterior_mean_coef2": (1.0 - ab_prev) * torch.sqrt(1.0 - betas) / (1.0 - ab),
    }


def schedule_tables(betas) -> dict:
    """Every table of improved-diffusion's GaussianDiffusion, float64, from betas.

    Keys: betas, alphas_cumprod, alphas_cumprod_prev, alphas_cumprod_next,
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
    log_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
    sqrt_recipm1_alphas_cumprod, posterior_variance,
    posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().clone()
    if betas.dim() != 1 or betas.numel() < 1:
        raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {tuple(betas.shape)}")
    if not bool(((betas > 0) & (betas <= 1)).all()):
        raise ValueError("betas must lie in (0, 1]")
    one = torch.ones(1, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    alphas_cumprod_prev = torch.cat([one, alphas_cumprod[:-1]])
    tables = chain_tables(betas, alphas_cumprod, alphas_cumprod_prev)
    # the posterior variance is 0 at t = 0, so its log is clipped to the t = 1
    # value there (a one-step schedule has none: its step adds no noise)
    posterior_variance = tables["posterior_variance"]
    first = posterior_variance[1:2] if betas.numel() > 1 else posterior_variance[:1]
    return {
        **tables,
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "alphas_cumprod_next": torch.cat([alphas_cumprod[1:], torch.zeros(1, dtype=torch.float64)]),
        "log_one_minus_alphas_cumprod": torch.log(1.0 - alphas_cumprod),
        "posterior_log_variance_clipped": torch.log(torch.cat([first, posterior_variance[1:]])),
    }


class DiffusionSchedule(torch.nn.Module):
    """The schedule tables as float64 buffers, with the operators as methods.

    Being a Module, it moves with `.to(device)` and scripts with TorchScript.
    Keep the tables float64 (or float32): the operators refuse 16-bit tables,
    which is what a parent module's `.half()` or `.to(torch.bfloat16)` would
    make of them. Mode names: MEAN_TYPES and VAR_TYPES.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    alphas_cumprod_next: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    def __init__(self, betas):
        super().__init__()
        tables = schedule_tables(betas)
        self.num_timesteps = int(tables["betas"].numel())
        for name, value in tables.items():
            self.register_buffer(name, value)

    def _step_tables(self, ddim: bool) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                torch.Tensor, torch.Tensor, torch.Tensor]:
        """A step operator's six tables (p_sample's, or ddim_sample's with
        ddim). Outside TorchScript read from the buffer dict: a module's
        attribute lookup per table would cost as much as the step's own call."""
        if not torch.jit.is_scripting():
            b = self._buffers
            last = ("alphas_cumprod", "alphas_cumprod_prev") if ddim else \
                ("posterior_log_variance_clipped", "betas")
            return (b["sqrt_recip_alphas_cumprod"], b["sqrt_recipm1_alphas_cumprod"],
                    b["posterior_mean_coef1"], b["posterior_mean_coef2"], b[last[0]], b[last[1]])
        if ddim:
            return (self.sqrt_recip_alphas_cumprod, self.sqrt_recipm1_alphas_cumprod,
                    self.posterior_mean_coef1, self.posterior_mean_coef2,
                    self.alphas_cumprod, self.alphas_cumprod_prev)
        return (self.sqrt_recip_alphas_cumprod, self.sqrt_recipm1_alphas_cumprod,
                self.posterior_mean_coef1, self.posterior_mean_coef2,
                self.posterior_log_variance_clipped, self.betas)

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor,
                 noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_start + sqrt(1 - abar_t) noise (noise ~ randn_like if None)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        return torch.ops.ddpm.q_sample(
            x_start, t, noise, self.sqrt_alphas_cumprod, self.sqrt_one_minus_alphas_cumprod
        )

    def posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean, variance, log_variance) of q(x_{t-1} | x_t, x_0)."""
        return torch.ops.ddpm.posterior_mean_variance(
            x_start, x_t, t, self.posterior_mean_coef1, self.posterior_mean_coef2,
            self.posterior_variance, self.posterior_log_variance_clipped,
        )

    def p_sample(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        model_mean_type: str = "epsilon",
        model_var_type: str = "fixed_small",
        clip_denoised: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One fused reverse step: (x_{t-1}, pred_xstart). noise ~ randn_like(x_t) if None."""
        if noise is None:
            noise = torch.randn_like(x_t)
        r, rm1, c1, c2, log_var, betas = self._step_tables(False)
        return torch.ops.ddpm.p_sample(
            model_output, x_t, t, noise,
            r, rm1, c1, c2, log_var, betas,
            model_mean_type, model_var_type, clip_denoised,
        )

    def p_sample_philox(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        seed: int,
        offset: int,
        model_mean_type: str = "epsilon",
        model_var_type: str = "fixed_small",
        clip_denoised: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """p_sample with the noise drawn in the kernel from (seed, offset)
        (torch_ddpm.noise): the same bits on CPU and CUDA."""
        r, rm1, c1, c2, log_var, betas = self._step_tables(False)
        return torch.ops.ddpm.p_sample_philox(
            model_output, x_t, t, seed, offset,
            r, rm1, c1, c2, log_var, betas,
            model_mean_type, model_var_type, clip_denoised,
        )

    def ddim_sample(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        eta: float = 0.0,
        model_mean_type: str = "epsilon",
        model_var_type: str = "fixed_small",
        clip_denoised: bool = True,
        reverse: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One fused DDIM step: (x_{t-1}, pred_xstart); reverse=True (eta 0) is
        ddim_reverse_sample's step to x_{t+1}. noise ~ randn_like(x_t) if None."""
        if noise is None:
            noise = torch.randn_like(x_t)
        r, rm1, c1, c2, abar, abar_prev = self._step_tables(True)
        target = self.alphas_cumprod_next if reverse else abar_prev
        return torch.ops.ddpm.ddim_sample(
            model_output, x_t, t, noise,
            r, rm1, c1, c2, abar, target, eta,
            model_mean_type, model_var_type, clip_denoised,
        )

    def ddim_sample_philox(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        seed: int,
        offset: int,
        eta: float = 0.0,
        model_mean_type: str = "epsilon",
        model_var_type: str = "fixed_small",
        clip_denoised: bool = True,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ddim_sample with the noise drawn in the kernel from (seed, offset)."""
        r, rm1, c1, c2, abar, abar_prev = self._step_tables(True)
        return torch.ops.ddpm.ddim_sample_philox(
            model_output, x_t, t, seed, offset,
            r, rm1, c1, c2, abar, abar_prev, eta,
            model_mean_type, model_var_type, clip_denoised,
        )
