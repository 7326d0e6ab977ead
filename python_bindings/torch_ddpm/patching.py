"""torch_ddpm.patch: make an existing improved-diffusion / guided-diffusion
GaussianDiffusion or SpacedDiffusion, or a denoising-diffusion-pytorch
GaussianDiffusion (torch_ddpm.lucidrains), run on the ddpm operators, in place.

Duck-typed: it reads the instance's own betas, num_timesteps, enums (by name)
and, for SpacedDiffusion, its _wrap_model and _scale_timesteps; it imports
neither package. Scripts keep calling the instance as before.
"""
import inspect

from ._bound import bind
from . import lucidrains
from .gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from .lucidrains import looks_like_lucidrains, patch_lucidrains
from .operators import mode_name

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
# the modes (enum members, by name) the swapped methods implement
_KNOWN_MODES = {
    "model_mean_type": {m.name.lower() for m in ModelMeanType},
    "model_var_type": {m.name.lower() for m in ModelVarType},
    "loss_type": {m.name.lower() for m in LossType},
}
# the classes whose methods patch() replaces: improved- and guided-diffusion's
# (copied into projects under any module name, so known by class name)
_IMPROVED_CLASSES = ("GaussianDiffusion", "SpacedDiffusion")
_LUCIDRAINS_MODULE = "denoising_diffusion_pytorch.denoising_diffusion_pytorch"
# lucidrains' methods whose formulas the swapped ones reproduce (p_sample calls
# the model itself, not model_predictions): an override of any of them would
# be bypassed without a word
_LUCIDRAINS_RELIED_ON = ("model_predictions", "p_mean_variance", "q_posterior",
                         "predict_start_from_noise", "predict_noise_from_start", "predict_v",
                         "predict_start_from_v")


def _refuse_what_patch_does_not_know(diffusion, replacements, relied_on, known_owner, knows):
    """Refuses, before anything is swapped, an instance whose class overrides a
    method patch() replaces or relies on (a subclass's own p_losses, a variant
    such as GaussianDiffusion1D), or whose method takes an argument its
    replacement does not: patching it would drop the override or break its
    callers, silently or at the first call."""
    cls = type(diffusion)
    for name in tuple(replacements) + tuple(relied_on):
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is not None and not known_owner(owner):
            raise TypeError(
                f"torch_ddpm.patch: {cls.__name__}.{name} is {owner.__module__}."
                f"{owner.__qualname__}'s, and patch() knows {knows} only: it would "
                f"{'replace' if name in replacements else 'bypass'} that method. Patch an "
                f"instance of the class it knows, or leave this one unpatched")
    for name, ours in replacements.items():
        theirs = getattr(cls, name, None)
        if theirs is None or not callable(theirs):
            continue
        accepted = inspect.signature(ours).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            continue
        unknown = [name for name, p in inspect.signature(theirs).parameters.items()
                   if name not in accepted and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                              inspect.Parameter.VAR_KEYWORD)]
        if unknown:
            raise TypeError(
                f"torch_ddpm.patch: {cls.__name__}.{name} takes {unknown}, which the "
                f"replacement does not ({knows}'s {name} has no such argument): its callers "
                f"would fail. Leave this instance unpatched")


def patch(diffusion):
    """Swap the diffusion's methods for operator-backed ones; returns the same object.

    Takes improved-diffusion's and guided-diffusion's GaussianDiffusion and
    SpacedDiffusion, and denoising-diffusion-pytorch's GaussianDiffusion
    (torch_ddpm.lucidrains says what is swapped there)."""
    if looks_like_lucidrains(diffusion):
        _refuse_what_patch_does_not_know(
            diffusion, {name: getattr(lucidrains, f"_{name}") for name in lucidrains.PATCHED_METHODS},
            _LUCIDRAINS_RELIED_ON,
            lambda owner: (owner.__module__, owner.__qualname__) == (_LUCIDRAINS_MODULE,
                                                                    "GaussianDiffusion"),
            "denoising-diffusion-pytorch's GaussianDiffusion")
        return patch_lucidrains(diffusion)
    missing = [name for name in _REQUIRED if not hasattr(diffusion, name)]
    if missing:
        raise TypeError(f"torch_ddpm.patch: {type(diffusion).__name__} lacks {missing}; "
                        "expected an improved/guided-diffusion GaussianDiffusion or SpacedDiffusion, "
                        "or a denoising-diffusion-pytorch GaussianDiffusion")
    for attribute, known in _KNOWN_MODES.items():
        mode = mode_name(getattr(diffusion, attribute))
        if mode not in known:
            raise TypeError(f"torch_ddpm.patch: {type(diffusion).__name__}.{attribute} is "
                            f"{mode.upper()}, which patch() does not implement (it knows "
                            f"{sorted(m.upper() for m in known)})")
    _refuse_what_patch_does_not_know(
        diffusion, {name: getattr(GaussianDiffusion, name) for name in PATCHED_METHODS}, (),
        lambda owner: owner.__name__ in _IMPROVED_CLASSES or owner.__module__.startswith(
            "torch_ddpm."),  # (ours: the eager formulas, the respacing)
        "improved/guided-diffusion's GaussianDiffusion and SpacedDiffusion")
    if not hasattr(diffusion, "_scale_timesteps"):
        bind(diffusion, "_scale_timesteps", GaussianDiffusion._scale_timesteps)
    if not hasattr(diffusion, "rescale_timesteps"):
        diffusion.rescale_timesteps = False
    diffusion._ddpm_cache = {}
    for name in PATCHED_METHODS:
        bind(diffusion, name, getattr(GaussianDiffusion, name))
    diffusion._ddpm_patched = True
    return diffusion
