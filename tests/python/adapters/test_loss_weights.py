"""torch_ddpm.loss_weights against the formulas users run today: diffusers'
training scripts (compute_snr), lucidrains' min_snr_loss_weight buffer, P2 and
truncated SNR as written in their papers, and zero terminal SNR."""
import pytest
import torch

import torch_ddpm
from torch_ddpm.schedules import DiffusionSchedule, get_named_beta_schedule, schedule_tables

GAMMA = 5.0


def diffusers_script_weights(abar, gamma, prediction):
    # what train_text_to_image.py etc. do per batch, here for every t
    snr = abar / (1 - abar)
    weights = torch.stack([snr, gamma * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    if prediction == "epsilon":
        return weights / snr
    if prediction == "v_prediction":
        return weights / (snr + 1)
    return weights


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_min_snr_is_diffusers_scripts_formula(prediction, schedule):
    betas = get_named_beta_schedule(schedule, 1000)
    tables = schedule_tables(betas)
    got = torch_ddpm.loss_weights(tables, "min_snr", GAMMA, prediction)
    assert got.dtype == torch.float64 and got.shape == (1000,)
    torch.testing.assert_close(got, diffusers_script_weights(tables["alphas_cumprod"], GAMMA,
                                                             prediction), rtol=1e-12, atol=0)
    # the same from betas, from a DiffusionSchedule, and from a diffusers scheduler
    torch.testing.assert_close(torch_ddpm.loss_weights(betas, "min_snr", GAMMA, prediction), got)
    torch.testing.assert_close(
        torch_ddpm.loss_weights(DiffusionSchedule(betas), "min_snr", GAMMA, prediction), got)


@pytest.mark.parametrize("objective", ["pred_noise", "pred_x0", "pred_v"])
def test_min_snr_is_lucidrains_loss_weight(objective):
    ddp = pytest.importorskip("denoising_diffusion_pytorch",
                              reason="needs denoising-diffusion-pytorch (PyPI, torch 2.x)")
    unet = ddp.Unet(dim=8, dim_mults=(1, 2), channels=3, flash_attn=False)
    diffusion = ddp.GaussianDiffusion(unet, image_size=8, timesteps=100, objective=objective,
                                      beta_schedule="cosine", min_snr_loss_weight=True,
                                      min_snr_gamma=GAMMA)
    got = torch_ddpm.loss_weights(diffusion, "min_snr", GAMMA, objective)
    # lucidrains forms them from its float64 abar, we from its float32 buffer:
    # 1 - abar near t = 0 cancels to about 1e-5 relative
    torch.testing.assert_close(got.float(), diffusion.loss_weight, rtol=3e-5, atol=0)


def test_p2_and_truncated_snr_as_in_their_papers():
    abar = schedule_tables(get_named_beta_schedule("linear", 1000))["alphas_cumprod"]
    snr = abar / (1 - abar)
    torch.testing.assert_close(torch_ddpm.loss_weights(_betas(abar),
                                                       "p2", 1.0, k=1.0),
                               1 / (1 + snr), rtol=1e-9, atol=0)
    x0_weight = torch.maximum(snr, torch.ones_like(snr))
    sched = {"alphas_cumprod": abar}
    torch.testing.assert_close(torch_ddpm.loss_weights(sched, "truncated_snr", prediction="x0"),
                               x0_weight)
    torch.testing.assert_close(torch_ddpm.loss_weights(sched, "truncated_snr"), x0_weight / snr)
    torch.testing.assert_close(torch_ddpm.loss_weights(sched, "truncated_snr", prediction="v"),
                               x0_weight / (snr + 1))
    assert torch.equal(torch_ddpm.loss_weights(sched, "none"), torch.ones(1000, dtype=torch.float64))


def _betas(abar):
    prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    return 1 - abar / prev


def test_zero_terminal_snr_has_no_nan_and_refuses_what_is_infinite():
    abar = schedule_tables(get_named_beta_schedule("linear", 1000))["alphas_cumprod"].clone()
    abar[-1] = 0.0  # rescale_betas_zero_snr's last step
    sched = {"alphas_cumprod": abar}
    for prediction in ("epsilon", "x0", "v"):
        for kind in ("min_snr", "p2", "none"):
            w = torch_ddpm.loss_weights(sched, kind, prediction=prediction)
            assert torch.isfinite(w).all(), (kind, prediction)
    assert torch_ddpm.loss_weights(sched, "min_snr")[-1] == 1.0  # the limit of min(SNR, g) / SNR
    assert torch_ddpm.loss_weights(sched, "min_snr", prediction="v")[-1] == 0.0
    assert torch.isfinite(torch_ddpm.loss_weights(sched, "truncated_snr", prediction="v")).all()
    with pytest.raises(ValueError, match="infinite at zero SNR \\(timestep 999\\)"):
        torch_ddpm.loss_weights(sched, "truncated_snr", prediction="epsilon")


def test_bad_arguments_are_named():
    tables = schedule_tables(get_named_beta_schedule("linear", 10 * 100))
    with pytest.raises(ValueError, match="kind must be one of"):
        torch_ddpm.loss_weights(tables, "snr")
    with pytest.raises(ValueError, match="prediction must be one of"):
        torch_ddpm.loss_weights(tables, "min_snr", prediction="score")
    with pytest.raises(ValueError, match="gamma > 0"):
        torch_ddpm.loss_weights(tables, "min_snr", gamma=0.0)
    with pytest.raises(ValueError, match="1-D betas"):
        torch_ddpm.loss_weights(torch.ones(2, 2), "min_snr")
