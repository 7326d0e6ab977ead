"""Samplers for torch.export and AOTInductor: run a trained denoiser's sampling
loop without Python, from a `.pt2` package (docs/export.md).

What is exported is one reverse step with the model inside,

    SamplingStep(denoiser, betas, ...).forward(x_t, t, noise) -> x_{t-1}

and the loop stays in the runner (C++: examples/aoti/run_package.cpp; Python:
`sample`), so the package's size and compile time do not grow with the number
of steps. The noise is an input: the runner draws it with
`torch.ops.ddpm.philox_normal(x_t, seed, 4*k)` at the k-th step (k = 1, 2, ...),
after x_T = philox_normal(x, seed, 0). That is the noise the in-kernel
operators draw for the same key, so a seed gives the same samples as
`torch_ddpm.Sampler(...)(x_T, seed)` (TorchScript), bit for bit, on the same
device. With noise_from_key=True the step takes the key instead, an int64
tensor (seed, 4*k), and draws that noise inside the fused step
(p_sample_philox.key, ddim_sample_philox.key): the package then holds
everything but the loop, and no pass over memory writes the noise.

    step = SamplingStep(denoiser, betas, "epsilon", "learned_range")
    exported = export_step(step, example_x)              # torch.export.export
    package = compile_package(exported, "sampler.pt2")   # AOTInductor
    x_0 = sample(load_package(package), x_T.shape, seed, step.num_timesteps)

Needs torch >= 2.5 (torch.export, AOTInductor packages).
"""
from typing import Callable, Optional, Sequence

import torch

from .schedules import DiffusionSchedule

__all__ = ["SamplingStep", "export_step", "compile_package", "load_package", "sample",
           "step_noise_offset"]


def step_noise_offset(k: int) -> int:
    """The Philox offset of the k-th step's noise (k = 1, 2, ...); 0 is x_T's."""
    return 4 * k


class SamplingStep(torch.nn.Module):
    """One reverse step, x_{t-1} from x_t, with the denoiser inside.

    denoiser(x_t, t) -> model output (t int64 [B]); betas: the schedule.
    ddim_eta < 0: ancestral sampling (p_sample); >= 0: DDIM with that eta
    (ddim_sample; a learned variance's half of the output is ignored).
    timestep_map (optional, int64 [T]): the timestep the denoiser is given for
    each of the schedule's (a respaced schedule's original timesteps).

    forward(x_t, t, noise): t int64 [B] (every sample may have its own), noise
    like x_t. Returns x_{t-1}, a new tensor. With noise_from_key,
    forward(x_t, t, key): key int64 [2], (seed, offset), on the CPU or on
    x_t's device; the step draws the noise of that key in its own pass (the
    noise philox_normal gives for it).
    """

    def __init__(self, denoiser: torch.nn.Module, betas, model_mean_type: str = "epsilon",
                 model_var_type: str = "fixed_small", clip_denoised: bool = True,
                 ddim_eta: float = -1.0, timestep_map: Optional[torch.Tensor] = None,
                 noise_from_key: bool = False):
        super().__init__()
        self.denoiser = denoiser
        self.schedule = DiffusionSchedule(betas)
        self.num_timesteps = self.schedule.num_timesteps
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.clip_denoised = bool(clip_denoised)
        self.ddim_eta = float(ddim_eta)
        self.noise_from_key = bool(noise_from_key)
        if timestep_map is not None:
            timestep_map = torch.as_tensor(timestep_map, dtype=torch.long)
            if timestep_map.shape != (self.num_timesteps,):
                raise ValueError(f"SamplingStep: expected timestep_map of shape "
                                 f"[{self.num_timesteps}] (one per timestep of the schedule), "
                                 f"got {list(timestep_map.shape)}")
        self.register_buffer("timestep_map", timestep_map)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        s = self.schedule
        model_t = t if self.timestep_map is None else self.timestep_map[t]
        model_output = self.denoiser(x_t, model_t)
        tables = (s.sqrt_recip_alphas_cumprod, s.sqrt_recipm1_alphas_cumprod,
                  s.posterior_mean_coef1, s.posterior_mean_coef2)
        modes = (self.model_mean_type, self.model_var_type, self.clip_denoised)
        if self.ddim_eta < 0:
            # (noise_from_key: the .key overload draws the key's noise in the
            # step's own pass)
            op = torch.ops.ddpm.p_sample_philox.key if self.noise_from_key else \
                torch.ops.ddpm.p_sample
            return op(model_output, x_t, t, noise, *tables, s.posterior_log_variance_clipped,
                      s.betas, *modes)[0]
        op = torch.ops.ddpm.ddim_sample_philox.key if self.noise_from_key else \
            torch.ops.ddpm.ddim_sample
        return op(model_output, x_t, t, noise, *tables, s.alphas_cumprod, s.alphas_cumprod_prev,
                  self.ddim_eta, *modes)[0]


def _require_export():
    if not hasattr(torch, "_inductor") or not hasattr(torch, "export") or \
            not hasattr(torch.export, "Dim"):
        raise RuntimeError(f"torch_ddpm.export needs torch.export (torch >= 2.5); this is "
                           f"torch {torch.__version__}")


def export_step(step: SamplingStep, example_x: torch.Tensor, dynamic_batch: bool = True,
                min_batch: int = 1, max_batch: Optional[int] = None):
    """torch.export.export of step for inputs shaped and typed like example_x.

    dynamic_batch: the batch size is a dimension of the program, from min_batch
    to max_batch (None: unbounded). A denoiser may allow less than that:
    torch.export then says which range it does (diffusers' UNet2DModel, for
    one, specializes a batch of 1 and bounds it above), and that range goes
    here. False: a program of example_x's batch size alone."""
    _require_export()
    t = torch.zeros(example_x.shape[0], dtype=torch.long, device=example_x.device)
    if step.noise_from_key:
        noise = torch.tensor([0, 4], dtype=torch.long, device=example_x.device)
    else:
        noise = torch.zeros_like(example_x)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=min_batch, max=max_batch)
        dynamic_shapes = {"x_t": {0: batch}, "t": {0: batch},
                          "noise": None if step.noise_from_key else {0: batch}}
    with torch.no_grad():
        return torch.export.export(step, (example_x, t, noise), dynamic_shapes=dynamic_shapes)


def compile_package(exported, package_path: str) -> str:
    """AOTInductor: compiles the exported step to a `.pt2` package (C++ compiled
    with the host compiler: tens of seconds for a small model) and returns its
    path. The package calls the ddpm operators: whatever runs it must have
    loaded the library first (importing torch_ddpm does; in C++, linking
    torch_ddpm::ddpm_ops)."""
    _require_export()
    import torch._inductor
    return torch._inductor.aoti_compile_and_package(exported, package_path=package_path)


def load_package(package_path: str) -> Callable:
    """The compiled step of a `.pt2` package, callable as step(x_t, t, noise)."""
    _require_export()
    import torch._inductor
    runner = torch._inductor.aoti_load_package(package_path)

    def step(x_t, t, noise):
        out = runner(x_t, t, noise)
        return out[0] if isinstance(out, (list, tuple)) else out
    return step


def sample(step: Callable, shape: Sequence[int], seed: int, num_timesteps: int,
           device="cpu", dtype=torch.float32, noise_from_key: Optional[bool] = None
           ) -> torch.Tensor:
    """The sampling loop around a step (a SamplingStep, its exported module or a
    loaded package), as examples/aoti/run_package.cpp runs it: x_T and every
    step's noise drawn by philox_normal from seed (see the module's doc), or
    with noise_from_key (default: the step's own setting, else False) the key
    of each step's noise given to the step instead."""
    if noise_from_key is None:
        noise_from_key = bool(getattr(step, "noise_from_key", False))
    x = torch.ops.ddpm.philox_normal(torch.empty(list(shape), device=device, dtype=dtype),
                                     seed, 0)
    with torch.no_grad():
        for k in range(1, num_timesteps + 1):
            t = torch.full([x.shape[0]], num_timesteps - k, dtype=torch.long, device=device)
            if noise_from_key:
                noise = torch.tensor([seed, step_noise_offset(k)], dtype=torch.long,
                                     device=device)
            else:
                noise = torch.ops.ddpm.philox_normal(x, seed, step_noise_offset(k))
            x = step(x, t, noise)
    return x
