"""torch_ddpm.patch: make an existing improved-diffusion / guided-diffusion
GaussianDiffusion or SpacedDiffusion, or a denoising-diffusion-pytorch
GaussianDiffusion (torch_ddpm.lucidrains), run on the ddpm operators, in place.

Duck-typed: it reads the instance's own betas, num_timesteps, enums (by name)
and, for SpacedDiffusion, its _wrap_model and _scale_timesteps; it imports
neither package. Scripts keep calling the instance as before.
"""
import inspect
import types

from .gaussian_diffusion import GaussianDiffusion
from .lucidrains import looks_like_lucidrains, patch_lucidrains

# What a patched instance keeps of its own: a SpacedDiffusion's
# _scale_timesteps leaves the scaling to its _wrap_model (which
# GaussianDiffusion does not define, so it is kept too).
_KEPT = ("_scale_timesteps",)


def _swapped_methods():
    """Every method of GaussianDiffusion, its private helpers included, but
    __init__ and _KEPT: derived from the class, so that a method or helper
    added to it is swapped in too (a hand-kept list once missed the helpers
    the sampling loops gained, and every patched loop raised AttributeError)."""
    return tuple(name for name, _ in inspect.getmembers(GaussianDiffusion, inspect.isfunction)
                 if not name.startswith("__") and name not in _KEPT)


PATCHED_METHODS = _swapped_methods()

_REQUIRED = ("betas", "num_timesteps", "model_mean_type", "model_var_type", "loss_type")


def patch(diffusion):
    """Swap the diffusion's methods for operator-backed ones; returns the same object.

    Takes improved-diffusion's and guided-diffusion's GaussianDiffusion and
    SpacedDiffusion, and denoising-diffusion-pytorch's GaussianDiffusion
    (torch_ddpm.lucidrains says what is swapped there)."""
    if looks_like_lucidrains(diffusion):
        return patch_lucidrains(diffusion)
    missing = [name for name in _REQUIRED if not hasattr(diffusion, name)]
    if missing:
        raise TypeError(f"torch_ddpm.patch: {type(diffusion).__name__} lacks {missing}; "
                        "expected an improved/guided-diffusion GaussianDiffusion or SpacedDiffusion, "
                        "or a denoising-diffusion-pytorch GaussianDiffusion")
    if not hasattr(diffusion, "_scale_timesteps"):
        diffusion._scale_timesteps = types.MethodType(GaussianDiffusion._scale_timesteps, diffusion)
    if not hasattr(diffusion, "rescale_timesteps"):
        diffusion.rescale_timesteps = False
    diffusion._ddpm_cache = {}
    for name in PATCHED_METHODS:
        setattr(diffusion, name, types.MethodType(getattr(GaussianDiffusion, name), diffusion))
    diffusion._ddpm_patched = True
    return diffusion
