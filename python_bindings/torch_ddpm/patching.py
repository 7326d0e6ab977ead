"""torch_ddpm.patch: make an existing improved-diffusion / guided-diffusion
GaussianDiffusion or SpacedDiffusion run on the ddpm operators, in place.

Duck-typed: it reads the instance's own betas, num_timesteps, enums (by name)
and, for SpacedDiffusion, its _wrap_model and _scale_timesteps; it imports
neither package. Scripts keep calling the instance as before.
"""
import types

from .gaussian_diffusion import GaussianDiffusion

# Methods swapped for operator-backed ones. The loops (p_sample_loop, ...) are
# replaced too, so they also accept guided-diffusion's cond_fn.
PATCHED_METHODS = (
    "_ddpm_tables", "_extract", "_step_tables", "_modes", "_model_output", "_fused_step",
    "_fused_ddim", "_variance", "_mean_variance_from_output",
    "q_mean_variance", "q_sample", "q_posterior_mean_variance", "p_mean_variance",
    "_predict_xstart_from_eps", "_predict_xstart_from_xprev", "_predict_eps_from_xstart",
    "condition_mean", "condition_score", "p_sample", "p_sample_loop",
    "p_sample_loop_progressive", "_progressive", "ddim_sample", "ddim_reverse_sample", "ddim_sample_loop",
    "ddim_sample_loop_progressive", "_vb_terms_bpd", "training_losses", "_prior_bpd",
    "calc_bpd_loop",
)

_REQUIRED = ("betas", "num_timesteps", "model_mean_type", "model_var_type", "loss_type")


def patch(diffusion):
    """Swap the diffusion's methods for operator-backed ones; returns the same object."""
    missing = [name for name in _REQUIRED if not hasattr(diffusion, name)]
    if missing:
        raise TypeError(f"torch_ddpm.patch: {type(diffusion).__name__} lacks {missing}; "
                        "expected an improved/guided-diffusion GaussianDiffusion or SpacedDiffusion")
    if not hasattr(diffusion, "_scale_timesteps"):
        diffusion._scale_timesteps = types.MethodType(GaussianDiffusion._scale_timesteps, diffusion)
    if not hasattr(diffusion, "rescale_timesteps"):
        diffusion.rescale_timesteps = False
    diffusion._ddpm_cache = {}
    for name in PATCHED_METHODS:
        setattr(diffusion, name, types.MethodType(getattr(GaussianDiffusion, name), diffusion))
    diffusion._ddpm_patched = True
    return diffusion
