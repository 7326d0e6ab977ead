"""The import path of diffusers' look-alike schedulers before it was named
for what it holds: torch_ddpm.fused_schedulers (diffusers-free); the real
diffusers schedulers are torch_ddpm.diffusers'."""
from .fused_schedulers import DDIMScheduler, DDIMSchedulerOutput, DDPMScheduler, DDPMSchedulerOutput

__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "DDIMScheduler", "DDIMSchedulerOutput"]
