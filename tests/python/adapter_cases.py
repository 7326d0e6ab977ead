"""The adapters' test cases that several test files build: improved-diffusion's
classes (ours, or the eager formulas they replace) and lucidrains'
GaussianDiffusion with its patched copy."""
import copy

import torch

import torch_ddpm
from helpers import TinyModel
from torch_ddpm.eager import EagerGaussianDiffusion
from torch_ddpm.gaussian_diffusion import (GaussianDiffusion, LossType, ModelVarType,
                                           get_named_beta_schedule)
from torch_ddpm.respace import SpacedDiffusion, space_timesteps

# the drop-in's cases: T steps of the cosine schedule
DROPIN_T = 40


def make_dropin(cls, mean_type, var_type, loss_type=LossType.MSE, rescale=False, spacing=None):
    """cls (GaussianDiffusion or EagerGaussianDiffusion), respaced to `spacing`
    steps if given."""
    kwargs = dict(betas=get_named_beta_schedule("cosine", DROPIN_T), model_mean_type=mean_type,
                  model_var_type=var_type, loss_type=loss_type, rescale_timesteps=rescale)
    if spacing is None:
        return cls(**kwargs)
    spaced = type("Spaced" + cls.__name__, (SpacedDiffusion, cls), {})
    return spaced(space_timesteps(DROPIN_T, spacing), **kwargs)


def run_both(fn, mean_type, var_type, seed=0, **kw):
    """fn(diffusion, model) on ours and on the eager formulas, from one seed;
    each with the generator's next draw after it (the same random numbers
    consumed)."""
    learned = var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)
    torch.manual_seed(123)
    model = TinyModel(learned=learned)
    results = []
    for cls in (GaussianDiffusion, EagerGaussianDiffusion):
        diffusion = make_dropin(cls, mean_type, var_type, **kw)
        torch.manual_seed(seed)
        out = fn(diffusion, model)
        after = torch.randn(4)  # the generator must have advanced equally
        results.append((out, after))
    return results


def assert_same(a, b, atol=2e-5):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k], atol)
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol)


# lucidrains' cases: 24 steps (its linear schedule scales its betas by 1000/T,
# which reach 1, zero terminal SNR where epsilon prediction has no x_0, at
# T = 20), 6 sampling steps, 8x8 images
LUCIDRAINS_T, LUCIDRAINS_SAMPLING_T, LUCIDRAINS_SIZE = 24, 6, 8


def make_lucidrains(objective="pred_v", beta_schedule="sigmoid", self_condition=False,
                    **settings):
    """(lucidrains' GaussianDiffusion, its patched copy) over a small Unet."""
    import denoising_diffusion_pytorch as ddp

    torch.manual_seed(1)
    unet = ddp.Unet(dim=8, dim_mults=(1, 2), channels=3, self_condition=self_condition,
                    flash_attn=False)
    settings.setdefault("ddim_sampling_eta", 0.5)
    original = ddp.GaussianDiffusion(unet, image_size=LUCIDRAINS_SIZE, timesteps=LUCIDRAINS_T,
                                     sampling_timesteps=LUCIDRAINS_SAMPLING_T,
                                     objective=objective, beta_schedule=beta_schedule, **settings)
    return original, torch_ddpm.patch(copy.deepcopy(original))
