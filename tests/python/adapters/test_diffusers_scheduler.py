"""torch_ddpm's DDPMScheduler against the real diffusers package: same
inputs, same noise, same outputs, for every option it covers."""
import pytest
import torch

from helpers import assert_close_to_diffusers
from torch_ddpm.fused_schedulers import DDPMScheduler

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")

PREDICTIONS = ["epsilon", "sample", "v_prediction"]
VARIANCES = ["fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"]


def pair(**kw):
    return diffusers.DDPMScheduler(**kw), DDPMScheduler(**kw)


close = assert_close_to_diffusers


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("variance_type", VARIANCES)
@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("inference_steps", [None, 50])
def test_step_matches_diffusers(prediction_type, variance_type, clip_sample, inference_steps):
    kw = dict(prediction_type=prediction_type, variance_type=variance_type, clip_sample=clip_sample,
              beta_schedule="linear")
    theirs, ours = pair(**kw)
    if inference_steps:
        theirs.set_timesteps(inference_steps)
        ours.set_timesteps(inference_steps)
        assert torch.equal(theirs.timesteps, ours.timesteps)
    sample = torch.randn(2, 3, 8, 8)
    channels = 6 if variance_type in ("learned", "learned_range") else 3
    for t in [int(theirs.timesteps[0]), int(theirs.timesteps[len(theirs.timesteps) // 2]),
              int(theirs.timesteps[-2]), int(theirs.timesteps[-1])]:
        out = torch.randn(2, channels, 8, 8) * 1.5
        if variance_type == "learned_range":
            out[:, 3:].uniform_(-1, 1)
        if variance_type == "learned":  # a variance, as diffusers reads this half
            out[:, 3:].uniform_(0.0, 0.05)
        a = theirs.step(out, t, sample, generator=torch.Generator().manual_seed(t))
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(t))
        close(b.pred_original_sample, a.pred_original_sample)
        close(b.prev_sample, a.prev_sample)
        # a per-sample timestep tensor of equal values is the same step
        c = ours.step(out, torch.tensor([t, t]), sample, generator=torch.Generator().manual_seed(t),
                      return_dict=False)
        if t > 0:
            close(c[0], a.prev_sample)
        sample = a.prev_sample


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_per_sample_timesteps(schedule, spacing):
    theirs, ours = pair(beta_schedule=schedule, timestep_spacing=spacing)
    theirs.set_timesteps(20)
    ours.set_timesteps(20)
    ts = [int(theirs.timesteps[i]) for i in (0, 7, 13, 19)]
    sample = torch.randn(4, 3, 6, 6)
    out = torch.randn(4, 3, 6, 6)
    noises, expected = [], []
    for j, t in enumerate(ts):
        gen = torch.Generator().manual_seed(j)
        noises.append(torch.randn(1, 3, 6, 6, generator=torch.Generator().manual_seed(j)))
        expected.append(theirs.step(out[j:j + 1], t, sample[j:j + 1], generator=gen).prev_sample)
        if t == 0:
            noises[-1].zero_()
    got = ours.step(out, torch.tensor(ts), sample, noise=torch.cat(noises)).prev_sample
    close(got, torch.cat(expected))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_add_noise_is_the_float64_formula_rounded_once(dtype):
    # the coefficients stay float64 and the result is rounded once, so at small
    # t (1 - abar below the 16-bit resolution near 1) the noise is still added
    # (diffusers casts alphas_cumprod to the sample's dtype first and, in
    # bfloat16, returns the clean sample at t = 0: #9004; not asserted here)
    _, ours = pair()
    x = torch.randn(4, 3, 8, 8).to(dtype)
    noise = torch.randn(4, 3, 8, 8).to(dtype)
    t = torch.tensor([0, 1, 3, 500])
    abar = ours.alphas_cumprod.double()[t].view(-1, 1, 1, 1)
    want = abar.sqrt() * x.double() + (1 - abar).sqrt() * noise.double()
    got = ours.add_noise(x, noise, t)
    assert got.dtype == dtype
    ulp = torch.finfo(dtype).eps
    assert ((got.double() - want).abs() <= ulp * want.abs() + 1e-6).all()
    assert not torch.equal(got[0], x[0])


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_add_noise_and_velocity(schedule):
    theirs, ours = pair(beta_schedule=schedule)
    x = torch.randn(5, 3, 4, 4)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 1, 500, 998, 999])
    close(ours.add_noise(x, noise, t), theirs.add_noise(x, noise, t))
    close(ours.get_velocity(x, noise, t), theirs.get_velocity(x, noise, t))


def test_full_sampling_loop_matches():
    theirs, ours = pair(variance_type="fixed_small", prediction_type="epsilon")
    theirs.set_timesteps(25)
    ours.set_timesteps(25)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    x_a = x_b = torch.randn(2, 3, 8, 8)
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    with torch.no_grad():
        for t in theirs.timesteps:
            x_a = theirs.step(net(x_a), t, x_a, generator=gen_a).prev_sample
            x_b = ours.step(net(x_b), t, x_b, generator=gen_b).prev_sample
    close(x_b, x_a)


def test_fixed_large_log_is_fixed_large():
    # a noise of standard deviation exp(log(beta_t) / 2) (diffusers takes the
    # square root of log(beta_t) and steps to NaN, #14569: not asserted here)
    _, ours = pair(variance_type="fixed_large_log")
    _, large = pair(variance_type="fixed_large")
    sample, out = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    b = ours.step(out, 500, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    c = large.step(out, 500, sample, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.isfinite(b).all() and torch.equal(b, c)


def test_step_add_noise_and_velocity_never_read_a_device_value_on_the_host():
    # meta tensors have no values: any .item(), int() or branch on one raises, so
    # running on them shows what a CUDA run would do without a host sync
    with pytest.raises(Exception):
        int(torch.tensor(3, device="meta"))
    _, ours = pair(variance_type="learned_range", prediction_type="v_prediction")
    ours.set_timesteps(10)
    sample = torch.empty(2, 3, 8, 8, device="meta")
    out = torch.empty(2, 6, 8, 8, device="meta")
    for timestep in (torch.tensor(0, device="meta"), torch.tensor(500, device="meta"),
                     torch.tensor([0, 900], device="meta")):
        step = ours.step(out, timestep, sample)
        assert step.prev_sample.device.type == "meta"
        assert step.prev_sample.shape == sample.shape == step.pred_original_sample.shape
    t = torch.tensor([0, 900], device="meta")
    assert ours.add_noise(sample, sample, t).shape == sample.shape
    assert ours.get_velocity(sample, sample, t).shape == sample.shape


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("variance_type", ["fixed_small", "learned_range"])
def test_dynamic_thresholding_matches_diffusers(prediction_type, variance_type):
    kw = dict(prediction_type=prediction_type, variance_type=variance_type, thresholding=True,
              dynamic_thresholding_ratio=0.9, sample_max_value=1.5)
    theirs, ours = pair(**kw)
    clipper = diffusers.DDPMScheduler(prediction_type=prediction_type, variance_type=variance_type)
    for s in (theirs, ours, clipper):
        s.set_timesteps(20)
    channels = 6 if variance_type == "learned_range" else 3
    gen = torch.Generator().manual_seed(5)
    sample = torch.randn(3, 3, 8, 8, generator=gen) * 2
    thresholded = 0
    for t in theirs.timesteps[::4]:
        out = torch.randn(3, channels, 8, 8, generator=gen) * 2
        if variance_type == "learned_range":
            out[:, 3:].uniform_(-1, 1)
        a = theirs.step(out, t, sample, generator=torch.Generator().manual_seed(int(t)))
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(int(t)))
        close(b.pred_original_sample, a.pred_original_sample)
        close(b.prev_sample, a.prev_sample)
        # the threshold acted: pred_x0 rescaled by s > 1, not what clipping gives
        clipped = clipper.step(out, t, sample, generator=torch.Generator().manual_seed(int(t)))
        thresholded += not torch.allclose(clipped.pred_original_sample, a.pred_original_sample)
        sample = a.prev_sample
    assert thresholded > 0


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("clip_sample_range", [0.5, 2.0])
def test_other_clip_ranges_match_diffusers(prediction_type, clip_sample_range):
    theirs, ours = pair(prediction_type=prediction_type, clip_sample_range=clip_sample_range)
    theirs.set_timesteps(20)
    ours.set_timesteps(20)
    sample = torch.randn(2, 3, 8, 8) * 2
    for t in theirs.timesteps[::4]:
        out = torch.randn(2, 3, 8, 8) * 2
        a = theirs.step(out, t, sample, generator=torch.Generator().manual_seed(int(t)))
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(int(t)))
        close(b.pred_original_sample, a.pred_original_sample)
        close(b.prev_sample, a.prev_sample)
        assert b.pred_original_sample.abs().max() <= clip_sample_range
        sample = a.prev_sample


def test_unsupported_options_are_refused():
    with pytest.raises(ValueError, match="variance_type='learned' needs a model output of 6"):
        DDPMScheduler(variance_type="learned").step(torch.zeros(1, 3, 2, 2), 5,
                                                    torch.zeros(1, 3, 2, 2))
    with pytest.raises(NotImplementedError, match="does not cover"):
        DDPMScheduler(prediction_type="flow")


def test_another_variance_type_steps_as_fixed_small_as_in_diffusers():
    # diffusers' step falls through to the posterior variance for any other name
    theirs, ours = pair(variance_type="other")
    _, small = pair(variance_type="fixed_small")
    sample, out = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    a, b, c = (s.step(out, 500, sample, generator=torch.Generator().manual_seed(1)).prev_sample
               for s in (theirs, ours, small))
    assert torch.equal(b, c)
    close(b, a)



def test_the_former_module_path_still_imports():
    from torch_ddpm import diffusers_scheduler, fused_schedulers

    assert diffusers_scheduler.DDPMScheduler is fused_schedulers.DDPMScheduler
    assert diffusers_scheduler.DDIMScheduler is fused_schedulers.DDIMScheduler
