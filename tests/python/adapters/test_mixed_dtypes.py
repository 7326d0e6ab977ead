"""A model output of another dtype than the sample, as under autocast (a
16-bit output, a float32 sample): the eager formulas each adapter replaces
promote, so the adapters compute in the wider dtype (an exact cast) and
return it, with the same random numbers; before, every adapter's step raised
"expected model_output to have dtype Float like x_t". The raw operators keep
one dtype and name a mismatch (test_errors.py)."""

import pytest
import torch

from helpers import TinyModel, assert_close_to_diffusers

NARROW = [torch.float16, torch.bfloat16]


class Narrowed(torch.nn.Module):
    """The model's output rounded to a 16-bit dtype (what autocast returns), or
    that same rounded output widened back to float32 (the reference)."""

    def __init__(self, model, dtype, widen):
        super().__init__()
        self.model, self.dtype, self.widen = model, dtype, widen

    def forward(self, x, t, **kwargs):
        out = self.model(x, t, **kwargs).to(self.dtype)
        return out.float() if self.widen else out


@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop", "p_sample_loop_progressive"])
@pytest.mark.parametrize("var_type", ["FIXED_SMALL", "LEARNED_RANGE"])
def test_the_drop_in_samples_a_16_bit_output_as_its_float32_value(dtype, loop, var_type):
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType[var_type])
    model = TinyModel(learned=var_type != "FIXED_SMALL")
    results = []
    for widen in (False, True):
        torch.manual_seed(0)
        out = getattr(diffusion, loop)(Narrowed(model, dtype, widen), (2, 2, 8, 8),
                                       clip_denoised=True)
        if loop.endswith("progressive"):
            out = [step["sample"] for step in out][-1]
        results.append(out)
    assert results[0].dtype == torch.float32
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("dtype", NARROW)
def test_the_drop_in_loss_takes_a_16_bit_output(dtype):
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE)
    model = TinyModel(learned=True)
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([3, 20])
    losses = []
    for widen in (False, True):
        torch.manual_seed(1)
        losses.append(diffusion.training_losses(Narrowed(model, dtype, widen), x, t)["loss"])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_the_schedulers_promote_as_diffusers(scheduler, dtype):
    from torch_ddpm import fused_schedulers

    ours = getattr(fused_schedulers, scheduler)(thresholding=True)
    ours.set_timesteps(10)
    sample = torch.randn(2, 3, 8, 8) * 2
    out = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    kw = dict(eta=0.7) if scheduler == "DDIMScheduler" else {}
    t = int(ours.timesteps[2])
    got = ours.step(out, t, sample, generator=torch.Generator().manual_seed(4), **kw)
    # the noise diffusers draws: the model output's dtype, then promoted
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=dtype)
    if scheduler == "DDIMScheduler":
        want = ours.step(out.float(), t, sample, variance_noise=noise.float(), **kw)
    else:
        want = ours.step(out.float(), t, sample, noise=noise.float())
    assert got.prev_sample.dtype == got.pred_original_sample.dtype == torch.float32
    assert torch.equal(got.prev_sample, want.prev_sample)
    assert torch.equal(got.pred_original_sample, want.pred_original_sample)
    # add_noise and get_velocity: the wider of the two
    t2 = torch.tensor([1, 700])
    for method in (ours.add_noise, ours.get_velocity):
        mixed = method(sample.to(dtype), sample, t2)
        assert mixed.dtype == torch.float32
        assert torch.equal(mixed, method(sample.to(dtype).float(), sample, t2))


def diffusers_rounding_bound(scheduler, theirs, t, sample, out, noise, dtype):
    """How far diffusers' step with a 16-bit model output may be from the same
    step with that output widened, per element: (prev_sample, x_0) bounds.
    diffusers multiplies the 16-bit output, and the noise it draws in that
    dtype, by 0-d float32 coefficients, which keeps the product 16-bit (a 0-d
    tensor does not widen a tensor): ATen rounds the coefficient to the 16-bit
    dtype (on some paths) and the product to it, each by up to half a 16-bit
    ulp (eps / 2 relative), so each such product is off by up to eps
    (relative, to first order); x_0 divides its product's error by
    sqrt(abar_t), and the step scales x_0 by its coefficient (the clamp of x_0
    cannot widen a difference). Beside that, float32 arithmetic against
    float64 coefficients: a few float32 ulps of the terms' magnitudes.
    (epsilon prediction, the default.)"""
    u = torch.finfo(dtype).eps * (1 + torch.finfo(dtype).eps / 4)
    f32 = 8 * torch.finfo(torch.float32).eps
    ab = theirs.alphas_cumprod.double()
    x, eps, z = sample.double(), out.double(), noise.double()
    ab_t = ab[t]
    if scheduler == "DDIMScheduler":
        prev = t - theirs.config.num_train_timesteps // theirs.num_inference_steps
        ab_prev = ab[prev] if prev >= 0 else theirs.final_alpha_cumprod.double()
        sigma = ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()  # eta = 1
        coef_x0, direction = ab_prev.sqrt(), (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    else:
        prev = theirs.previous_timestep(t)
        ab_prev = ab[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        beta = 1 - ab_t / ab_prev
        coef_x0, direction = ab_prev.sqrt() * beta / (1 - ab_t), (1 - beta).sqrt() * x
        sigma = (beta * (1 - ab_prev) / (1 - ab_t)).clamp(min=1e-20).sqrt()
    x0_term = ((1 - ab_t).sqrt() * eps).abs()
    x0 = (u * x0_term + f32 * (x.abs() + x0_term)) / ab_t.sqrt()
    prev_sample = (coef_x0 * x0 + (u + f32) * (direction.abs() + (sigma * z).abs()))
    if scheduler == "DDPMScheduler":  # (its direction term is float32's: x_t)
        prev_sample = coef_x0 * x0 + f32 * direction.abs() + (u + f32) * (sigma * z).abs()
    return prev_sample, x0


@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_against_diffusers_with_a_16_bit_output(scheduler, dtype):
    # docs/adapters.md's statement: ours is the step of the 16-bit output widened, in
    # float32; diffusers' differs from it by its extra 16-bit roundings alone,
    # per element within diffusers_rounding_bound (and float32's rounding)
    diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI")
    import torch_ddpm.diffusers as ours_module

    theirs = getattr(diffusers, scheduler)()
    ours = getattr(ours_module, scheduler).from_config(theirs.config)
    for s in (theirs, ours):
        s.set_timesteps(10)
    sample = torch.randn(2, 3, 8, 8)
    out = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    kw = dict(eta=1.0) if scheduler == "DDIMScheduler" else {}
    for t in theirs.timesteps:
        a = theirs.step(out, t, sample, generator=torch.Generator().manual_seed(6), **kw)
        b = ours.step(out, t, sample, generator=torch.Generator().manual_seed(6), **kw)
        assert b.prev_sample.dtype == a.prev_sample.dtype == torch.float32
        # the same noise: drawn in the output's dtype, as diffusers draws it
        noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=dtype)
        bounds = diffusers_rounding_bound(scheduler, theirs, int(t), sample, out, noise, dtype)
        for mine, theirs_, bound in ((b.prev_sample, a.prev_sample, bounds[0]),
                                     (b.pred_original_sample, a.pred_original_sample, bounds[1])):
            diff = (mine.double() - theirs_.double()).abs()
            assert bool((diff <= bound).all()), (int(t), float((diff - bound).max()))
        sample = a.prev_sample
        if scheduler == "DDIMScheduler":  # the same noise given: promoted exactly
            noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6),
                                dtype=dtype).float()
            a = theirs.step(out.float(), t, sample, variance_noise=noise, **kw)
            b = ours.step(out, t, sample, variance_noise=noise, **kw)
            assert_close_to_diffusers(b.prev_sample, a.prev_sample)
    # add_noise / get_velocity of a 16-bit and a float32 tensor: float32, as
    # diffusers'; the values are the exact formula's (diffusers rounds alpha_bar
    # to the 16-bit dtype first, #9004, tested on its own)
    t2 = torch.tensor([1, 700])
    x16 = sample.to(dtype)
    abar = theirs.alphas_cumprod.double()[t2].view(-1, 1, 1, 1)
    exact = {"add_noise": abar.sqrt() * x16.double() + (1 - abar).sqrt() * sample.double(),
             "get_velocity": abar.sqrt() * sample.double() - (1 - abar).sqrt() * x16.double()}
    for method in ("add_noise", "get_velocity"):
        a = getattr(theirs, method)(x16, sample, t2)
        b = getattr(ours, method)(x16, sample, t2)
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(b.double(), exact[method], rtol=1e-6, atol=1e-6)


def test_lucidrains_samples_under_autocast():
    pytest.importorskip("denoising_diffusion_pytorch",
                        reason="needs denoising-diffusion-pytorch (PyPI, torch 2.x)")
    from adapter_cases import make_lucidrains as make

    original, patched = make("pred_v", "cosine")
    results = []
    for diffusion in (original, patched):
        for call in (lambda: diffusion.sample(batch_size=2),
                     lambda: diffusion.p_sample_loop((2, 3, 8, 8))):
            torch.manual_seed(0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                results.append(call())
    # The model runs in bfloat16 under autocast: where the patched chain's
    # float32 sample differs from the original's in its last bits (float64
    # coefficients here, float32 there), the model's bfloat16 output may round
    # the other way, by one bfloat16 ulp (2^-8 relative), and ATen's bfloat16
    # kernels round differently from one CPU to another. So the samples agree
    # to about a bfloat16 ulp, not to float32's.
    for got, want in zip(results[2:], results[:2]):
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=2**-7, atol=2**-7)
