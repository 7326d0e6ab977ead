"""Offset noise in one pass: q_sample's and diffusion_mse's noise_offset
([B, C]: the noise is noise + noise_offset[b, c]) against the float64
formula, against the two-step form (the offset added to the noise first,
as lucidrains' p_losses and diffusers' scripts do), with gradients, in place
and with errors by name."""
import pytest
import torch

import reference as ref
from conftest import DEVICES
from helpers import DTYPES, assert_within_rounding

T = 30
SHAPES = [(3, 4, 5, 7), (2, 3, 17), (4, 1, 8, 8)]  # a channel not a multiple of any vector


def tables(device):
    return ref.make_tables(T, "cosine", device)


def data(shape, dtype, device, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device=device, dtype=dtype)


def offset_like(x, seed=9):
    g = torch.Generator().manual_seed(seed)
    return (0.1 * torch.randn(x.shape[:2], generator=g)).to(device=x.device, dtype=x.dtype)


def with_offset(noise, offset):
    """noise + offset[b, c] in float64, broadcast over the channel."""
    return noise.double() + offset.double().view(*offset.shape, *([1] * (noise.dim() - 2)))


def timesteps(batch, device):
    return torch.tensor([0, T - 1, 7, 13][:batch], device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_q_sample_adds_the_offset_to_the_noise(device, dtype, shape):
    tab = tables(device)
    x0, noise = data(shape, dtype, device, 1), data(shape, dtype, device, 2)
    offset = offset_like(x0)
    t = timesteps(shape[0], device)
    got = torch.ops.ddpm.q_sample(x0, t, noise, tab["sqrt_alphas_cumprod"],
                                  tab["sqrt_one_minus_alphas_cumprod"], offset)
    shifted = with_offset(noise, offset)
    want, mag = ref.q_sample(x0, t, shifted, tab)
    assert_within_rounding(got, want, mag + ref.q_sample(x0.abs(), t, noise.abs() + 1, tab)[1],
                           dtype, "x_t")
    if dtype == torch.float32:  # the two-step form rounds the shifted noise once, as here
        shifted_noise = noise + offset.view(*shape[:2], *([1] * (len(shape) - 2)))
        two_step = torch.ops.ddpm.q_sample(x0, t, shifted_noise, tab["sqrt_alphas_cumprod"],
                                           tab["sqrt_one_minus_alphas_cumprod"])
        assert torch.equal(got, two_step)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", ["epsilon", "start_x", "v"])
def test_the_loss_target_takes_the_offset_noise(device, dtype, target):
    tab = tables(device)
    shape = (3, 4, 5, 7)
    out, x0, noise = (data(shape, dtype, device, s) for s in (3, 1, 2))
    offset = offset_like(x0)
    t = timesteps(3, device)
    weight = torch.linspace(0.5, 1.5, T, dtype=torch.float64, device=device)
    got = torch.ops.ddpm.diffusion_mse(out, x0, noise, t, tab["sqrt_alphas_cumprod"],
                                       tab["sqrt_one_minus_alphas_cumprod"], weight, target,
                                       offset)
    want, mag = ref.diffusion_mse(out, x0, with_offset(noise, offset), t, tab, weight, target)
    out_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    assert_within_rounding(got, want, 2 * mag, out_dtype, "loss")


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_with_an_offset(device):
    tab = tables(device)
    shape = (3, 2, 4)
    out, x0, noise = (data(shape, torch.float64, device, s).requires_grad_() for s in (3, 1, 2))
    offset = offset_like(x0.detach())
    t = timesteps(3, device)
    a, b = tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]
    assert torch.autograd.gradcheck(
        lambda x, n: torch.ops.ddpm.q_sample(x, t, n, a, b, offset), (x0, noise))
    assert torch.autograd.gradcheck(
        lambda o, x, n: torch.ops.ddpm.diffusion_mse(o, x, n, t, a, b, None, "v", offset),
        (out, x0, noise))


@pytest.mark.parametrize("device", DEVICES)
def test_in_place_with_an_offset(device):
    tab = tables(device)
    x0, noise = data((3, 4, 6), torch.float32, device, 1), data((3, 4, 6), torch.float32, device, 2)
    offset = offset_like(x0)
    t = timesteps(3, device)
    args = (t, noise, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"], offset)
    want = torch.ops.ddpm.q_sample(x0, *args)
    torch.ops.ddpm.q_sample.out(x0, *args, out=x0)
    assert torch.equal(x0, want)


def test_errors_name_the_offset():
    tab = tables("cpu")
    x0, noise = data((3, 4, 6), torch.float32, "cpu", 1), data((3, 4, 6), torch.float32, "cpu", 2)
    t = timesteps(3, "cpu")
    a, b = tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]
    with pytest.raises(RuntimeError, match=r"ddpm\.q_sample: expected noise_offset to have shape "
                                           r"\[3, 4\] \(one value per sample and channel\)"):
        torch.ops.ddpm.q_sample(x0, t, noise, a, b, torch.zeros(3, 4, 1))
    with pytest.raises(RuntimeError, match=r"expected noise_offset to have dtype Float"):
        torch.ops.ddpm.q_sample(x0, t, noise, a, b, torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"ddpm\.diffusion_mse: expected x_start to have shape "
                                           r"\[B, C, \.\.\.\] with a noise_offset"):
        torch.ops.ddpm.diffusion_mse(x0[:, 0, 0], x0[:, 0, 0], noise[:, 0, 0], t, a, b, None,
                                     "epsilon", torch.zeros(3, 1))
    with pytest.raises(RuntimeError, match=r"ddpm\.q_sample: noise_offset requires grad"):
        torch.ops.ddpm.q_sample(x0.requires_grad_(), t, noise, a, b,
                                torch.zeros(3, 4, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"ddpm\.diffusion_mse: noise_offset requires grad"):
        torch.ops.ddpm.diffusion_mse(x0, x0, noise, t, a, b, None, "epsilon",
                                     torch.zeros(3, 4, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"ddpm\.q_sample\.out: .*overlap|noise_offset"):
        out = torch.zeros(3, 4, 6)
        torch.ops.ddpm.q_sample.out(x0.detach(), t, noise, a, b, out[:, :, 0], out=out)


def test_the_diffusers_style_scheduler_takes_the_scripts_noise_offset():
    # train_text_to_image.py --noise_offset: noise += s * randn(B, C, 1, 1)
    from torch_ddpm.fused_schedulers import DDPMScheduler

    sched = DDPMScheduler(prediction_type="v_prediction")
    latents, noise, pred = (data((2, 4, 8, 8), torch.float32, "cpu", s) for s in (1, 2, 3))
    offset = 0.05 * data((2, 4, 1, 1), torch.float32, "cpu", 4)
    timesteps = torch.tensor([3, 700])
    shifted = noise + offset
    assert torch.equal(sched.add_noise(latents, noise, timesteps, noise_offset=offset),
                       sched.add_noise(latents, shifted, timesteps))
    torch.testing.assert_close(
        sched.training_loss(pred, latents, noise, timesteps, noise_offset=offset),
        sched.training_loss(pred, latents, shifted, timesteps), rtol=1e-6, atol=0)
