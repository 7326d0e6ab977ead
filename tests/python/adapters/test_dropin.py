"""torch_ddpm.GaussianDiffusion / SpacedDiffusion / patch() against the eager
improved-diffusion formulas (torch_ddpm.eager): same seed, same samples,
losses and gradients, same random numbers consumed."""
import pytest
import torch

import torch_ddpm
from foreign_diffusion import LossType as ForeignLoss
from foreign_diffusion import ModelMeanType as ForeignMean
from foreign_diffusion import ModelVarType as ForeignVar
from adapter_cases import DROPIN_T, assert_same, make_dropin, run_both
from helpers import TinyModel
from torch_ddpm.eager import EagerGaussianDiffusion
from torch_ddpm.gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
from torch_ddpm.respace import space_timesteps

T = DROPIN_T
make = make_dropin


MODES = [(m, v) for m in ModelMeanType for v in ModelVarType]


@pytest.mark.parametrize("mean_type,var_type", MODES)
@pytest.mark.parametrize("clip", [True, False])
def test_p_sample_loop_same_samples(mean_type, var_type, clip):
    shape = (3, 2, 5, 5)
    (ours, r1), (eager, r2) = run_both(
        lambda d, m: d.p_sample_loop(m, shape, clip_denoised=clip, device="cpu"), mean_type, var_type)
    assert_same(ours, eager, atol=1e-4)
    assert torch.equal(r1, r2)


@pytest.mark.parametrize("mean_type,var_type", MODES)
def test_p_mean_variance_and_posterior(mean_type, var_type):
    x = torch.randn(4, 2, 5, 5)
    t = torch.tensor([0, 1, T // 2, T - 1])

    def fn(d, m):
        out = d.p_mean_variance(m, x, t, clip_denoised=True)
        post = d.q_posterior_mean_variance(out["pred_xstart"], x, t)
        q = d.q_mean_variance(x, t)
        return {**out, "post_mean": post[0], "post_var": post[1], "post_log_var": post[2],
                "q_mean": q[0], "q_var": q[1], "q_log_var": q[2]}

    (ours, _), (eager, _) = run_both(fn, mean_type, var_type)
    assert_same(ours, eager)


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("mean_type,var_type", [(ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL),
                                                (ModelMeanType.START_X, ModelVarType.LEARNED_RANGE),
                                                (ModelMeanType.V, ModelVarType.FIXED_LARGE),
                                                (ModelMeanType.PREVIOUS_X, ModelVarType.LEARNED)])
def test_ddim_loop_and_reverse(eta, mean_type, var_type):
    shape = (3, 2, 5, 5)
    (ours, r1), (eager, r2) = run_both(
        lambda d, m: d.ddim_sample_loop(m, shape, device="cpu", eta=eta), mean_type, var_type)
    assert_same(ours, eager, atol=1e-4)
    assert torch.equal(r1, r2)
    x = torch.randn(shape)
    t = torch.tensor([0, 5, T - 2])
    (ours, _), (eager, _) = run_both(lambda d, m: d.ddim_reverse_sample(m, x, t), mean_type, var_type)
    assert_same(ours, eager)


@pytest.mark.parametrize("loss_type", list(LossType))
@pytest.mark.parametrize("mean_type,var_type", [(ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL),
                                                (ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE),
                                                (ModelMeanType.START_X, ModelVarType.LEARNED),
                                                (ModelMeanType.PREVIOUS_X, ModelVarType.FIXED_LARGE),
                                                (ModelMeanType.V, ModelVarType.LEARNED_RANGE)])
def test_training_losses_and_gradients(loss_type, mean_type, var_type):
    x0 = torch.rand(4, 2, 5, 5) * 2 - 1
    t = torch.tensor([0, 1, T // 2, T - 1])

    def fn(d, m):
        m.zero_grad()
        terms = d.training_losses(m, x0, t)
        terms["loss"].mean().backward()
        return {**{k: v.detach() for k, v in terms.items()},
                **{f"grad_{n}": p.grad.clone() for n, p in m.named_parameters()}}

    (ours, r1), (eager, r2) = run_both(fn, mean_type, var_type, loss_type=loss_type)
    assert_same(ours, eager, atol=1e-4)
    assert torch.equal(r1, r2)


def test_calc_bpd_loop():
    x0 = torch.rand(2, 2, 4, 4) * 2 - 1
    (ours, _), (eager, _) = run_both(lambda d, m: d.calc_bpd_loop(m, x0),
                                     ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE)
    assert_same(ours, eager, atol=1e-4)


@pytest.mark.parametrize("spacing", ["ddim8", "10,5", [4, 3, 2]])
@pytest.mark.parametrize("rescale", [False, True])
def test_spaced_diffusion(spacing, rescale):
    shape = (2, 2, 4, 4)
    def fn(d, m):
        m.seen_t.clear()
        return (d.p_sample_loop(m, shape, device="cpu"), d.ddim_sample_loop(m, shape, device="cpu"),
                torch.stack(m.seen_t))

    (ours, r1), (eager, r2) = run_both(fn,
        ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE, rescale=rescale, spacing=spacing)
    assert_same(ours[0], eager[0], atol=1e-4)
    assert_same(ours[1], eager[1], atol=1e-4)
    assert torch.equal(ours[2], eager[2])  # the model saw the original timesteps
    assert torch.equal(r1, r2)


def test_space_timesteps():
    assert space_timesteps(1000, "ddim50") == set(range(0, 1000, 20))
    steps = sorted(space_timesteps(100, "10,5"))
    assert len(steps) == 15 and steps[0] == 0 and steps[9] == 49 and steps[10] == 50 and steps[-1] == 99
    with pytest.raises(ValueError):
        space_timesteps(10, "ddim7")


def test_denoised_fn_and_cond_fn_paths():
    shape = (2, 2, 4, 4)
    denoised = lambda x: 0.9 * x  # noqa: E731

    def cond_fn(x, t, **kw):
        return -0.1 * x

    (ours, r1), (eager, r2) = run_both(
        lambda d, m: (d.p_sample_loop(m, shape, denoised_fn=denoised, device="cpu"),
                      d.p_sample_loop(m, shape, cond_fn=cond_fn, device="cpu"),
                      d.ddim_sample_loop(m, shape, cond_fn=cond_fn, device="cpu", eta=0.3)),
        ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL)
    for a, b in zip(ours, eager):
        assert_same(a, b, atol=1e-4)
    assert torch.equal(r1, r2)


def test_progress_bar(capsys):
    model = TinyModel()
    d = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL)
    d.p_sample_loop(model, (1, 2, 4, 4), device="cpu", progress=True)
    err = capsys.readouterr().err
    assert f"{T}/{T}" in err or "it/s" in err


@pytest.mark.parametrize("spacing", [None, "ddim10"])
def test_patch_existing_instance(spacing):
    def fresh():
        return make(EagerGaussianDiffusion, ForeignMean.EPSILON, ForeignVar.LEARNED_RANGE,
                    loss_type=ForeignLoss.RESCALED_MSE, spacing=spacing)

    torch.manual_seed(0)
    model = TinyModel(learned=True)
    x0 = torch.rand(3, 2, 4, 4) * 2 - 1
    t = torch.tensor([0, 3, 7])
    results = []
    for patch in (False, True):
        d = fresh()
        if patch:
            assert torch_ddpm.patch(d) is d
            assert d.p_sample.__func__ is GaussianDiffusion.p_sample
        torch.manual_seed(1)
        losses = d.training_losses(model, x0, t)["loss"].detach()
        sample = d.p_sample_loop(model, (3, 2, 4, 4), device="cpu")
        results.append((losses, sample, torch.randn(3)))
    assert_same(results[0][0], results[1][0], atol=1e-4)
    assert_same(results[0][1], results[1][1], atol=1e-4)
    assert torch.equal(results[0][2], results[1][2])


def test_patch_rejects_other_objects():
    with pytest.raises(TypeError, match="lacks"):
        torch_ddpm.patch(object())


@pytest.mark.parametrize("spacing", [None, "10"])
@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
@pytest.mark.parametrize("var_type", [ModelVarType.FIXED_SMALL, ModelVarType.LEARNED_RANGE])
def test_sampling_loop_writes_in_place_with_the_progressive_result(var_type, loop, spacing):
    """p_sample_loop / ddim_sample_loop step with the sample_out overloads (x_{t-1} over
    x_t, no pred_xstart): the same bits and random numbers as the last result of the
    *_progressive generator, and the caller's x_T is left alone."""
    torch.manual_seed(1)
    model = TinyModel(learned=var_type == ModelVarType.LEARNED_RANGE)
    d = make(GaussianDiffusion, ModelMeanType.EPSILON, var_type, spacing=spacing)
    kwargs = {"eta": 0.5} if loop.startswith("ddim") else {}
    shape = (3, 2, 5, 5)
    x_T = torch.randn(shape)
    x_T_before = x_T.clone()
    for noise in (x_T, None):
        torch.manual_seed(2)
        got = getattr(d, loop)(model, shape, noise=noise, device="cpu", **kwargs)
        after_got = torch.rand(3)
        torch.manual_seed(2)
        *_, last = getattr(d, loop + "_progressive")(model, shape, noise=noise, device="cpu",
                                                     **kwargs)
        after_expected = torch.rand(3)
        assert torch.equal(got, last["sample"])
        assert torch.equal(after_got, after_expected)
    assert torch.equal(x_T, x_T_before)


def test_sampling_loop_keeps_an_overridden_step():
    """A subclass's own p_sample is what p_sample_loop runs."""
    class Shifted(GaussianDiffusion):
        def p_sample(self, *args, **kwargs):
            out = super().p_sample(*args, **kwargs)
            return {**out, "sample": out["sample"] + 1.0}

    model = TinyModel()
    plain = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL)
    shifted = make(Shifted, ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL)
    x_T = torch.randn(2, 2, 4, 4)
    torch.manual_seed(3)
    a = plain.p_sample_loop(model, x_T.shape, noise=x_T, device="cpu")
    torch.manual_seed(3)
    b = shifted.p_sample_loop(model, x_T.shape, noise=x_T, device="cpu")
    assert not torch.allclose(a, b)
