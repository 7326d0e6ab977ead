"""diffusers' Euler, Euler ancestral and DPM-Solver++ multistep schedulers
with each step one fused operator (euler_sample, dpm_solver_sample).

They are diffusers' own classes, subclassed: the config, set_timesteps (every
sigma schedule: karras, exponential, beta, lu lambdas, spacings, offsets,
zero-SNR rescaling, final sigmas), scale_model_input, add_noise and
save/load are diffusers' code; step is ours. Import them from
torch_ddpm.diffusers.

What differs from diffusers' step, on purpose:
- The step index is never searched for on the device. diffusers finds it at
  the first step of a chain by comparing the timestep with the schedule on the
  device and reading the match on the host (a wait for the GPU, and no CUDA
  graph). Here a chain starts where set_begin_index put it, else at the
  timestep's place in the schedule when the timestep is a host value (a
  number, a CPU tensor: found on the host), else at its first step.
- The coefficients are formed in float64 from the same float32 sigmas, and the
  step is one pass in the data's dtype (float32 for a 16-bit model output with
  a float32 sample): results agree with diffusers' to float32 rounding and are
  nearer a float64 run of its formulas. A 16-bit step keeps its
  pred_original_sample 16-bit (diffusers' is float32).
- Refused by name where diffusers would run: DPMSolverMultistepScheduler's
  noise-prediction algorithms (dpmsolver, sde-dpmsolver) and flow sigmas
  (use_flow_sigmas, prediction_type="flow_prediction", use_dynamic_shifting);
  diffusers' own class runs those.
- EulerDiscreteScheduler.step with s_churn > 0 (noise added before the step)
  runs diffusers' own step, as does DPMSolverMultistepScheduler.step when an
  earlier step's x_0 prediction requires grad (a chain sampled under autograd:
  the fused step takes those as constants).
"""
import functools

import torch
from diffusers.schedulers import (scheduling_dpmsolver_multistep, scheduling_euler_ancestral_discrete,
                                  scheduling_euler_discrete)
from diffusers.schedulers.scheduling_utils import SchedulerOutput
from diffusers.utils import logging

from .fused_schedulers import _randn, _timestep_batch
from .operators import step_overload
from .tables import cached_on, sigma_step_tables
from .thresholding import step_threshold_bound

logger = logging.get_logger(__name__)

EulerDiscreteSchedulerOutput = scheduling_euler_discrete.EulerDiscreteSchedulerOutput
EulerAncestralDiscreteSchedulerOutput = (
    scheduling_euler_ancestral_discrete.EulerAncestralDiscreteSchedulerOutput)

_MEAN_TYPES = {"epsilon": "epsilon", "v_prediction": "v", "sample": "start_x",
               "original_sample": "start_x"}


class _SigmaSteps:
    """What the three schedulers add to diffusers' classes: the chain kept on
    the host, its tables on each device, the step's working dtype."""

    def __init_subclass__(cls, **kwargs):
        """Each scheduler's __init__ is diffusers' own, then an instance that a
        saved pipeline records as diffusers' class of the same name (it loads
        with plain diffusers; see torch_ddpm.diffusers). Wrapped, not
        redefined: from_config reads the init's signature for its keys."""
        super().__init_subclass__(**kwargs)
        base_init = next((c.__init__ for c in cls.__mro__[1:]
                          if c.__module__.startswith("diffusers.") and "__init__" in vars(c)),
                         None)
        if base_init is None:  # (a mixin of ours)
            return

        @functools.wraps(base_init)
        def __init__(self, *args, **kw):
            base_init(self, *args, **kw)
            self._check_config()
            self.__module__ = "diffusers"

        cls.__init__ = __init__

    def _check_config(self):
        """Refuses by name what the fused step does not do."""

    def set_timesteps(self, num_inference_steps=None, device=None, *args, **kwargs):
        """diffusers' set_timesteps, with the chain's timesteps also kept on the
        host (where the first step's index is found)."""
        super().set_timesteps(num_inference_steps, None, *args, **kwargs)
        self._timesteps_host = self.timesteps.clone()
        self._chain = getattr(self, "_chain", 0) + 1
        if device is not None:
            self.timesteps = self.timesteps.to(device)

    def _init_step_index(self, timestep):
        """Where a chain starts (see the module): never a device read."""
        if self.begin_index is not None:
            self._step_index = self._begin_index
        elif torch.is_tensor(timestep) and timestep.device.type != "cpu":
            self._step_index = 0
        else:
            host = getattr(self, "_timesteps_host", None)
            if host is None:
                host = self.timesteps.cpu()
            self._step_index = self.index_for_timestep(torch.as_tensor(timestep), host)

    def _restart_chain(self):
        """Back to the chain's start (set_begin_index's, or found at the first
        step), a multistep scheduler's history cleared: what set_timesteps
        leaves, for a loop run again on the same chain (denoising_loop)."""
        self._step_index = None
        if hasattr(self, "model_outputs"):
            self.model_outputs = [None] * self.config.solver_order
            self.lower_order_nums = 0

    def _graph_chain(self, device):
        """(this chain by value, what a captured loop reads that it did not
        make): see fused_schedulers' _graph_chain."""
        key = (tuple(self._timesteps_host.tolist()), tuple(self.sigmas.tolist()),
               self.begin_index)
        return key, (self.timesteps, self._tables(device))

    def _tables(self, device):
        """The operator's tables of this chain on device, float64 (the float32
        sigmas widened), made once per chain and device."""
        return cached_on(self, device, self._make_tables, key=getattr(self, "_chain", 0),
                         slot="sigma_tables")

    def _step_t(self, batch, device):
        """[B] int64: the step index for each sample, one tensor per index."""
        return _timestep_batch(self, self.step_index, batch, device)


def _working_dtypes(model_output, sample, noise=None):
    """(model_output, sample, noise) in the step's dtype: theirs where they
    agree, else float32 (float64 for a float64 model output), as diffusers
    upcasts the sample to float32 and its formulas promote."""
    if model_output.dtype == sample.dtype and (noise is None or noise.dtype == sample.dtype):
        return model_output, sample, noise
    work = torch.float64 if model_output.dtype == torch.float64 else torch.float32
    return tuple(x if x is None else x.to(work) for x in (model_output, sample, noise))


class _EulerSteps(_SigmaSteps):
    _ETA = 0.0
    _OUTPUT = EulerDiscreteSchedulerOutput

    def _make_tables(self):
        return sigma_step_tables("euler_sample", self.sigmas)

    def _fused_step(self, model_output, timestep, sample, generator, return_dict):
        if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)):
            raise ValueError(
                "Passing integer indices (e.g. from `enumerate(timesteps)`) as timesteps to "
                f"`{type(self).__name__}.step()` is not supported. Make sure to pass one of the "
                "`scheduler.timesteps` as a timestep.")
        if not self.is_scale_input_called:
            logger.warning("The `scale_model_input` function should be called before `step` to "
                           "ensure correct denoising. See `StableDiffusionPipeline` for a usage "
                           "example.")
        if self.step_index is None:
            self._init_step_index(timestep)
        prediction_type = self.config.prediction_type
        if prediction_type not in _MEAN_TYPES:
            raise ValueError(f"prediction_type given as {prediction_type} must be one of "
                             "`epsilon`, or `v_prediction`")
        noise = None
        if self._ETA > 0:  # drawn as diffusers draws it
            noise = _randn(model_output.shape, model_output.dtype, model_output.device,
                           generator)
        out, x, noise = _working_dtypes(model_output, sample, noise)
        tables = self._tables(x.device)
        prev_sample, pred_original_sample = step_overload("euler_sample")(
            out, x, self._step_t(x.shape[0], x.device), x if noise is None else noise,
            tables["sigmas"], tables["sigmas_next"], self._ETA, _MEAN_TYPES[prediction_type])
        if prev_sample.dtype != model_output.dtype:
            prev_sample = prev_sample.to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return prev_sample, pred_original_sample
        return self._OUTPUT(prev_sample=prev_sample, pred_original_sample=pred_original_sample)


class EulerDiscreteScheduler(_EulerSteps, scheduling_euler_discrete.EulerDiscreteScheduler):
    """diffusers' EulerDiscreteScheduler, its step one fused euler_sample (see
    the module)."""

    def step(self, model_output, timestep, sample, s_churn=0.0, s_tmin=0.0,
             s_tmax=float("inf"), s_noise=1.0, generator=None, return_dict=True):
        """diffusers' Euler step in one pass; with s_churn > 0 where it applies
        (noise added before the step), diffusers' own step."""
        if s_churn > 0:
            if self.step_index is None:
                self._init_step_index(timestep)
            sigma = float(self.sigmas[self.step_index])
            if s_tmin <= sigma <= s_tmax and min(s_churn / (len(self.sigmas) - 1),
                                                 2**0.5 - 1) > 0:
                return super().step(model_output, timestep, sample, s_churn, s_tmin, s_tmax,
                                    s_noise, generator, return_dict)
        return self._fused_step(model_output, timestep, sample, generator, return_dict)


class EulerAncestralDiscreteScheduler(
        _EulerSteps, scheduling_euler_ancestral_discrete.EulerAncestralDiscreteScheduler):
    """diffusers' EulerAncestralDiscreteScheduler, its step one fused
    euler_sample with eta = 1 and the noise diffusers draws (see the module)."""
    _ETA = 1.0
    _OUTPUT = EulerAncestralDiscreteSchedulerOutput

    def step(self, model_output, timestep, sample, generator=None, return_dict=True):
        """diffusers' ancestral Euler step in one pass."""
        if self.config.prediction_type == "sample":
            raise NotImplementedError("prediction_type not implemented yet: sample")
        return self._fused_step(model_output, timestep, sample, generator, return_dict)


class DPMSolverMultistepScheduler(_SigmaSteps,
                                  scheduling_dpmsolver_multistep.DPMSolverMultistepScheduler):
    """diffusers' DPMSolverMultistepScheduler (DPM-Solver++, orders 1-3,
    midpoint or heun, ODE or SDE), its step one fused dpm_solver_sample that
    reads the earlier steps' x_0 predictions diffusers keeps in model_outputs
    (see the module)."""

    def _check_config(self):
        config = self.config
        if config.algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
            raise ValueError(
                f"torch_ddpm's DPMSolverMultistepScheduler fuses DPM-Solver++ (algorithm_type "
                f"'dpmsolver++' or 'sde-dpmsolver++'), got algorithm_type="
                f"'{config.algorithm_type}': use diffusers' own DPMSolverMultistepScheduler")
        if (config.use_flow_sigmas or config.prediction_type == "flow_prediction"
                or config.use_dynamic_shifting):
            raise ValueError(
                "torch_ddpm's DPMSolverMultistepScheduler does not fuse flow matching "
                "(use_flow_sigmas=True, prediction_type='flow_prediction', and "
                "use_dynamic_shifting=True, which shifts flow sigmas): use diffusers' own "
                "DPMSolverMultistepScheduler")

    def _make_tables(self):
        return sigma_step_tables("dpm_solver_sample", self.sigmas)

    def _order(self):
        """This step's order, as diffusers' step chooses it."""
        config, n, i = self.config, len(self.timesteps), self.step_index
        lower_order_final = i == n - 1 and (config.euler_at_final
                                            or (config.lower_order_final and n < 15)
                                            or config.final_sigmas_type == "zero")
        lower_order_second = i == n - 2 and config.lower_order_final and n < 15
        if config.solver_order == 1 or self.lower_order_nums < 1 or lower_order_final:
            return 1
        if config.solver_order == 2 or self.lower_order_nums < 2 or lower_order_second:
            return 2
        return 3

    def step(self, model_output, timestep, sample, generator=None, variance_noise=None,
             return_dict=True):
        """diffusers' DPM-Solver++ step in one pass: the x_0 prediction (and
        its thresholding bound, computed first), the multistep update and the
        noise of the SDE form."""
        if self.num_inference_steps is None:
            raise ValueError("Number of inference steps is 'None', you need to run "
                             "'set_timesteps' after creating the scheduler")
        if self.step_index is None:
            self._init_step_index(timestep)
        config = self.config
        order = self._order()
        # the x_0 predictions of the steps one and two before, as diffusers keeps them
        earlier = list(reversed(self.model_outputs))[: order - 1]
        if torch.is_grad_enabled() and any(h.requires_grad for h in earlier):
            # a gradient through the earlier steps (sampling under autograd): the
            # fused step takes them as constants, diffusers' own step does not
            return super().step(model_output, timestep, sample, generator, variance_noise,
                                return_dict)
        # the result's dtype, diffusers': its x_0 prediction's, which the sample
        # widens but for the sample prediction (the output itself)
        dtype = model_output.dtype
        if config.prediction_type != "sample" and sample.dtype != dtype:
            dtype = torch.promote_types(dtype, sample.dtype)
        channels = sample.shape[1] if sample.dim() > 1 else None
        var_type = "fixed_small"
        x0_shape = model_output.shape  # (the converted output's, which the noise takes)
        if config.variance_type in ("learned", "learned_range") and config.prediction_type == "epsilon":
            if channels is not None and model_output.shape[1] == 2 * channels:
                var_type = "learned"  # (the operator reads the first half)
                x0_shape = sample.shape
            else:
                model_output = model_output[:, :3]  # as diffusers slices it
                x0_shape = model_output.shape
        noise = None
        if config.algorithm_type == "sde-dpmsolver++":
            noise = (_randn(x0_shape, torch.float32, model_output.device, generator)
                     if variance_noise is None
                     else variance_noise.to(device=model_output.device, dtype=torch.float32))
        out, x, noise = _working_dtypes(model_output, sample, noise)
        history = [h if h.dtype == x.dtype else h.to(x.dtype) for h in earlier]
        history += [None] * (2 - len(history))
        tables = self._tables(x.device)
        t = self._step_t(x.shape[0], x.device)
        mean_type = _MEAN_TYPES[config.prediction_type]
        tabs = (tables["sigmas"], tables["sigmas_next"], tables["sigmas_1"], tables["sigmas_2"])
        clip, bound = False, None
        if config.thresholding:
            bound = step_threshold_bound("dpm_solver_sample", out, x, t, tabs, mean_type,
                                         config.dynamic_thresholding_ratio,
                                         config.sample_max_value)
            clip = True
        prev_sample, x0_pred = step_overload("dpm_solver_sample")(
            out, x, t, x if noise is None else noise, *tabs, *history, order,
            config.solver_type, config.algorithm_type, mean_type, var_type, clip, bound, clip)
        for i in range(config.solver_order - 1):
            self.model_outputs[i] = self.model_outputs[i + 1]
        self.model_outputs[-1] = x0_pred
        if self.lower_order_nums < config.solver_order:
            self.lower_order_nums += 1
        if prev_sample.dtype != dtype:
            prev_sample = prev_sample.to(dtype)
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)
