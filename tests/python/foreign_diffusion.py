"""Stand-ins for improved-diffusion's and guided-diffusion's GaussianDiffusion
and SpacedDiffusion, the classes torch_ddpm.patch() is applied to.

Neither package is on PyPI, so these classes carry what theirs carry and no
more: the same attributes (numpy float64 tables, the enums, num_timesteps,
rescale_timesteps; use_timesteps, timestep_map, original_num_steps,
_wrap_model and _scale_timesteps for SpacedDiffusion) and the same method
names. They derive from nothing of torch_ddpm's, so a patched instance has
only what patch() gives it. Unpatched, each method computes what the
original computes: it delegates to torch_ddpm's eager improved-diffusion
chain (torch_ddpm.eager), held in `_reference`; a test deletes that after
patching, so no patched path can reach it.
"""
import enum

import numpy as np

from torch_ddpm.eager import EagerGaussianDiffusion
from torch_ddpm.respace import SpacedDiffusion as _EagerSpacing
# what their _wrap_model returns does what ours does: the model (or cond_fn) called
# with the original timesteps of the kept steps
from torch_ddpm.respace import _WrappedModel


# improved-diffusion's enums (its ModelMeanType has no V): classes of their own,
# which torch_ddpm matches by name
ModelMeanType = enum.Enum("ModelMeanType", ["PREVIOUS_X", "START_X", "EPSILON"])
ModelVarType = enum.Enum("ModelVarType", ["LEARNED", "FIXED_SMALL", "FIXED_LARGE",
                                          "LEARNED_RANGE"])
LossType = enum.Enum("LossType", ["MSE", "RESCALED_MSE", "KL", "RESCALED_KL"])


# The methods improved-diffusion's GaussianDiffusion defines (besides
# __init__ and _scale_timesteps); guided-diffusion adds the conditioning.
IMPROVED_METHODS = (
    "q_mean_variance", "q_sample", "q_posterior_mean_variance", "p_mean_variance",
    "_predict_xstart_from_eps", "_predict_xstart_from_xprev", "_predict_eps_from_xstart",
    "p_sample", "p_sample_loop", "p_sample_loop_progressive", "ddim_sample",
    "ddim_reverse_sample", "ddim_sample_loop", "ddim_sample_loop_progressive",
    "_vb_terms_bpd", "training_losses", "_prior_bpd", "calc_bpd_loop",
)
GUIDED_METHODS = IMPROVED_METHODS + ("condition_mean", "condition_score")

_TABLES = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
           "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
           "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
           "sqrt_recipm1_alphas_cumprod", "posterior_variance",
           "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


class _EagerSpaced(_EagerSpacing, EagerGaussianDiffusion):
    """The eager chain with respacing: the reference of a SpacedDiffusion."""


def _delegating(name):
    def method(self, *args, **kwargs):
        return getattr(self._reference, name)(*args, **kwargs)

    method.__name__ = name
    return method


class _Base:
    def __init__(self, *, betas, model_mean_type, model_var_type, loss_type,
                 rescale_timesteps=False, _reference=None):
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        self._reference = _reference or EagerGaussianDiffusion(
            betas=betas, model_mean_type=model_mean_type, model_var_type=model_var_type,
            loss_type=loss_type, rescale_timesteps=rescale_timesteps)
        for name in _TABLES:
            setattr(self, name, np.array(getattr(self._reference, name), dtype=np.float64))
        self.alphas = 1.0 - self.betas
        self.num_timesteps = int(self.betas.shape[0])

    def _scale_timesteps(self, t):
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t


class _SpacedBase(_Base):
    def __init__(self, use_timesteps, **kwargs):
        reference = _EagerSpaced(use_timesteps, **kwargs)
        self.use_timesteps = set(use_timesteps)
        self.timestep_map = list(reference.timestep_map)
        self.original_num_steps = len(kwargs["betas"])
        super().__init__(**{**kwargs, "betas": reference.betas}, _reference=reference)

    def _wrap_model(self, model):
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(model, self.timestep_map, self.rescale_timesteps,
                             self.original_num_steps)

    def _scale_timesteps(self, t):
        return t  # the wrapped model scales


def _with_methods(cls, names):
    for name in names:
        setattr(cls, name, _delegating(name))
    return cls


ImprovedGaussianDiffusion = _with_methods(
    type("GaussianDiffusion", (_Base,), {"__module__": "improved_diffusion.gaussian_diffusion"}),
    IMPROVED_METHODS)
ImprovedSpacedDiffusion = _with_methods(
    type("SpacedDiffusion", (_SpacedBase,), {"__module__": "improved_diffusion.respace"}),
    IMPROVED_METHODS)
GuidedGaussianDiffusion = _with_methods(
    type("GaussianDiffusion", (_Base,), {"__module__": "guided_diffusion.gaussian_diffusion"}),
    GUIDED_METHODS)
GuidedSpacedDiffusion = _with_methods(
    type("SpacedDiffusion", (_SpacedBase,), {"__module__": "guided_diffusion.respace"}),
    GUIDED_METHODS)

KINDS = {
    "improved": ImprovedGaussianDiffusion,
    "improved-spaced": ImprovedSpacedDiffusion,
    "guided": GuidedGaussianDiffusion,
    "guided-spaced": GuidedSpacedDiffusion,
}


def _importable(module_name, cls):
    """Each stand-in importable under its package's module name, as the real
    classes are (pickle finds a class by its module and name)."""
    import sys
    import types

    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    setattr(sys.modules[module_name], cls.__name__, cls)


for _cls in KINDS.values():
    _importable(_cls.__module__, _cls)
_importable(__name__, LossType)  # (the enums are this module's)
