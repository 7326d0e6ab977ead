"""torch_ddpm: fused PyTorch operators for denoising diffusion models.

Importing the package loads the compiled library, which registers
torch.ops.ddpm.q_sample, .posterior_mean_variance, .p_sample, .ddim_sample,
.euler_sample, .dpm_solver_sample and .diffusion_mse (and their backward operators, and the in-kernel-noise
variants *_philox and philox_normal) for CPU, Meta and, when built with
WITH_CUDA=1, CUDA.
"""
from ._load import library_path, load_library

load_library()

from . import schedules  # noqa: E402
from .operators import (ddim_sample, ddim_sample_philox, dpm_solver_sample,  # noqa: E402
                        euler_sample, mode_name, p_sample, p_sample_philox,
                        posterior_mean_variance, q_sample, q_sample_philox, step_overload)
from .thresholding import DynamicThreshold, dynamic_threshold_bound  # noqa: E402
from .losses import diffusion_mse, loss_weights  # noqa: E402
from .noise import PhiloxStream, philox_normal, philox_seed_offset  # noqa: E402
from .schedules import DiffusionSchedule, get_named_beta_schedule  # noqa: E402
from .gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType  # noqa: E402
from .respace import SpacedDiffusion, space_timesteps  # noqa: E402
from .patching import patch  # noqa: E402
from .graphs import GraphedLoop  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DiffusionSchedule",
    "GraphedLoop",
    "ddim_sample",
    "ddim_sample_philox",
    "dpm_solver_sample",
    "euler_sample",
    "diffusion_mse",
    "dynamic_threshold_bound",
    "DynamicThreshold",
    "PhiloxStream",
    "philox_normal",
    "philox_seed_offset",
    "p_sample_philox",
    "q_sample_philox",
    "GaussianDiffusion",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "patch",
    "loss_weights",
    "space_timesteps",
    "get_named_beta_schedule",
    "library_path",
    "mode_name",
    "p_sample",
    "posterior_mean_variance",
    "q_sample",
    "schedules",
    "step_overload",
]
