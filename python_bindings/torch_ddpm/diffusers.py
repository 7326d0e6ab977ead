"""torch_ddpm.diffusers: diffusers schedulers on the fused operators.

    from torch_ddpm.diffusers import DDPMScheduler
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)

EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and
DPMSolverMultistepScheduler are diffusers' own classes with a fused step
(torch_ddpm.diffusers_solvers says what differs).

DDPMScheduler and DDIMScheduler here are real diffusers schedulers
(SchedulerMixin, ConfigMixin, the same registered config as diffusers' own),
so from_config, from_pretrained, save_pretrained and the pipelines that take a
DDPM or DDIM scheduler work with them, and a config saved by either side loads in the other. Its step,
add_noise and get_velocity are torch_ddpm.fused_schedulers' (one fused
operator each, the same random numbers as diffusers'); it also takes
diffusers' laplace schedule and rescale_betas_zero_snr, built by diffusers' own
helpers. diffusers stays optional: `import torch_ddpm` never imports it.
"""
try:
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.schedulers import scheduling_ddim, scheduling_ddpm
    from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers, SchedulerMixin
except ImportError as error:  # pragma: no cover (the message is tested in a subprocess)
    raise ImportError("torch_ddpm.diffusers needs diffusers (pip install diffusers); "
                      "torch_ddpm.fused_schedulers.DDPMScheduler works without it") from error

from .diffusers_solvers import (DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                                EulerAncestralDiscreteSchedulerOutput, EulerDiscreteScheduler,
                                EulerDiscreteSchedulerOutput)
from .fused_schedulers import _FusedDDIMSteps, _FusedDDPMSteps, denoising_loop

# the steps return diffusers' own output classes (BaseOutput)
DDPMSchedulerOutput = scheduling_ddpm.DDPMSchedulerOutput
DDIMSchedulerOutput = scheduling_ddim.DDIMSchedulerOutput

__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "DDIMScheduler", "DDIMSchedulerOutput",
           "EulerDiscreteScheduler", "EulerDiscreteSchedulerOutput",
           "EulerAncestralDiscreteScheduler", "EulerAncestralDiscreteSchedulerOutput",
           "DPMSolverMultistepScheduler", "denoising_loop"]


class _DiffusersSchedules:
    """What both diffusers subclasses add to the fused steps: diffusers' place in
    the scheduler family, and the schedules built by diffusers' own helpers
    (laplace, zero-terminal-SNR rescaling)."""
    _compatibles = [e.name for e in KarrasDiffusionSchedulers]
    order = 1
    _ZERO_SNR = True

    def _as_diffusers_component(self):
        """A pipeline records each component as (library, class name), the library
        read from the component's __module__ (diffusers'
        _fetch_class_library_tuple). This instance reads as diffusers' own
        scheduler of the same name, so a pipeline saved with it loads with plain
        diffusers (as diffusers' scheduler, from the same config); our class
        itself, its pickling included, is unchanged."""
        self.__module__ = "diffusers"

    def _betas(self, config):
        if config.trained_betas is None and config.beta_schedule == "laplace":
            betas = scheduling_ddpm.betas_for_alpha_bar(config.num_train_timesteps,
                                                        alpha_transform_type="laplace")
        else:
            betas = super()._betas(config)
        if config.rescale_betas_zero_snr:
            betas = scheduling_ddpm.rescale_zero_terminal_snr(betas)
        return betas


class DDPMScheduler(_DiffusersSchedules, _FusedDDPMSteps, SchedulerMixin, ConfigMixin):
    """diffusers' DDPMScheduler, each method one fused operator (see the module)."""
    _OUTPUT = DDPMSchedulerOutput

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 variance_type: str = "fixed_small", clip_sample: bool = True,
                 prediction_type: str = "epsilon", thresholding: bool = False,
                 dynamic_thresholding_ratio: float = 0.995, clip_sample_range: float = 1.0,
                 sample_max_value: float = 1.0, timestep_spacing: str = "leading",
                 steps_offset: int = 0, rescale_betas_zero_snr: bool = False):
        self._setup_from_config()
        self._as_diffusers_component()


class DDIMScheduler(_DiffusersSchedules, _FusedDDIMSteps, SchedulerMixin, ConfigMixin):
    """diffusers' DDIMScheduler, its step one fused ddim_sample (see the module
    and torch_ddpm.fused_schedulers._FusedDDIMSteps.step)."""
    _OUTPUT = DDIMSchedulerOutput

    @register_to_config
    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001,
                 beta_end: float = 0.02, beta_schedule: str = "linear", trained_betas=None,
                 clip_sample: bool = True, set_alpha_to_one: bool = True, steps_offset: int = 0,
                 prediction_type: str = "epsilon", thresholding: bool = False,
                 dynamic_thresholding_ratio: float = 0.995, clip_sample_range: float = 1.0,
                 sample_max_value: float = 1.0, timestep_spacing: str = "leading",
                 rescale_betas_zero_snr: bool = False):
        self._setup_from_config()
        self._as_diffusers_component()
