"""torch_ddpm.diffusers' DDPM and DDIM schedulers against diffusers' (0.42) over
random configs: every option drawn at once (schedule, trained betas, variance
type, clipping and its range, thresholding, spacing, offset, zero-SNR
rescaling, set_alpha_to_one, eta, use_clipped_model_output), float32 and
float64 samples, the first steps of each chain compared step by step with the
same generator, and add_noise / get_velocity at random timesteps. The
hand-picked matrices of test_diffusers_scheduler.py / test_diffusers_ddim.py
hold each option in turn; this holds them together. Seeded: the same configs
every run (the seed is in the test id)."""
import random

import pytest
import torch

from helpers import assert_close_to_diffusers

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
from torch_ddpm.diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402

SEEDS = range(24)


def random_config(rng, ddim):
    T = rng.choice([10, 37, 100, 1000])
    config = dict(
        num_train_timesteps=T,
        # (diffusers' DDIM has the first three)
        beta_schedule=rng.choice(["linear", "scaled_linear", "squaredcos_cap_v2"]
                                 + ([] if ddim else ["sigmoid", "laplace"])),
        beta_start=rng.choice([0.0001, 0.00085]), beta_end=rng.choice([0.012, 0.02, 0.05]),
        clip_sample=rng.random() < 0.5, clip_sample_range=rng.choice([1.0, 0.8, 2.0]),
        prediction_type=rng.choice(["epsilon", "sample", "v_prediction"]),
        thresholding=rng.random() < 0.3, dynamic_thresholding_ratio=rng.choice([0.995, 0.9]),
        sample_max_value=rng.choice([1.0, 1.5]),
        timestep_spacing=rng.choice(["linspace", "leading", "trailing"]),
        steps_offset=rng.choice([0, 1]), rescale_betas_zero_snr=rng.random() < 0.25)
    if rng.random() < 0.15:
        config["trained_betas"] = [rng.uniform(1e-4, 0.05) for _ in range(T)]
    if ddim:
        config["set_alpha_to_one"] = rng.random() < 0.5
    else:
        config["variance_type"] = rng.choice(["fixed_small", "fixed_small_log", "fixed_large",
                                              "learned", "learned_range"])
    if config["rescale_betas_zero_snr"] and config["prediction_type"] == "epsilon":
        # no x_0 at zero SNR: diffusers returns NaN, ours refuses (tested on its own)
        config["prediction_type"] = "v_prediction"
    return config


def compare_chains(seed, ddim):
    rng = random.Random(seed)
    config = random_config(rng, ddim)
    theirs = (diffusers.DDIMScheduler if ddim else diffusers.DDPMScheduler)(**config)
    ours = (DDIMScheduler if ddim else DDPMScheduler).from_config(theirs.config)
    T = config["num_train_timesteps"]
    steps = rng.choice([1, 3, 7, min(T, 20)] + ([] if ddim else [None]))
    if steps is not None:
        theirs.set_timesteps(steps)
        ours.set_timesteps(steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    dtype = rng.choice([torch.float32, torch.float64])
    shape = (rng.choice([1, 3]), 3, 5, 4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    learned = config.get("variance_type") in ("learned", "learned_range")
    # eta = 1 at zero SNR: diffusers' rounding there is its own (#5969, tested apart)
    eta = rng.choice([0.0, 0.5] + ([] if config["rescale_betas_zero_snr"] else [1.0]))
    options = dict(eta=eta, use_clipped_model_output=rng.random() < 0.5) if ddim else {}
    for i, t in enumerate(theirs.timesteps[:5].tolist()):
        out = 0.7 * x + 0.6 * torch.randn(shape, generator=gen, dtype=dtype)
        if learned:  # diffusers' learned reads a variance, learned_range a [-1, 1] fraction
            half = torch.rand(shape, generator=gen, dtype=dtype)
            out = torch.cat([out, half * 0.05 if config["variance_type"] == "learned"
                             else half * 2 - 1], 1)
        want = theirs.step(out, t, x, generator=torch.Generator().manual_seed(i), **options)
        got = ours.step(out, t, x, generator=torch.Generator().manual_seed(i), **options)
        for name in ("prev_sample", "pred_original_sample"):
            mine, theirs_ = getattr(got, name), getattr(want, name)
            assert mine.dtype == theirs_.dtype and mine.shape == theirs_.shape, name
            assert_close_to_diffusers(mine, theirs_)
        x = want.prev_sample
    timesteps = torch.randint(0, T, shape[:1], generator=gen)
    x0, noise = (torch.randn(shape, generator=gen, dtype=dtype) for _ in range(2))
    for method in ("add_noise", "get_velocity"):
        torch.testing.assert_close(getattr(ours, method)(x0, noise, timesteps),
                                   getattr(theirs, method)(x0, noise, timesteps),
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_ddpm_configs_match_diffusers(seed):
    compare_chains(seed, ddim=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_ddim_configs_match_diffusers(seed):
    compare_chains(seed, ddim=True)
