"""torch_ddpm.patch() on classes that are not torch_ddpm's: stand-ins with
exactly what improved-diffusion's and guided-diffusion's GaussianDiffusion and
SpacedDiffusion have (foreign_diffusion.py). Every public method, the sampling
loops included, gives what the unpatched instance gives, with the same random
numbers consumed."""
import pytest
import torch

import torch_ddpm
from conftest import TORCH_2
from helpers import TinyModel
from foreign_diffusion import GUIDED_METHODS, IMPROVED_METHODS, KINDS, LossType, ModelMeanType, ModelVarType
from torch_ddpm.gaussian_diffusion import GaussianDiffusion
from torch_ddpm.patching import PATCHED_METHODS
from torch_ddpm.schedules import get_named_beta_schedule

T = 24
SHAPE = (3, 2, 4, 4)


def make(kind, mean_type, var_type, loss_type, rescale):
    kwargs = dict(betas=get_named_beta_schedule("cosine", T), model_mean_type=mean_type,
                  model_var_type=var_type, loss_type=loss_type, rescale_timesteps=rescale)
    cls = KINDS[kind]
    if kind.endswith("spaced"):
        return cls({0, 2, 3, 7, 11, 16, 23}, **kwargs)
    return cls(**kwargs)


def every_method(d, model, guided):
    """Calls every public method (the loops with and without their callbacks),
    seeding before each so that both instances draw the same numbers."""
    torch.manual_seed(5)
    x0 = torch.rand(SHAPE) * 2 - 1
    x = torch.randn(SHAPE)
    t = torch.tensor([0, 1, d.num_timesteps - 1])
    kw = dict(device="cpu")
    results = {}

    def run(name, fn):
        torch.manual_seed(7)
        value = fn()
        results[name] = (value, torch.randn(2))  # the generator advanced equally

    run("q_mean_variance", lambda: d.q_mean_variance(x0, t))
    run("q_sample", lambda: d.q_sample(x0, t))
    run("q_posterior_mean_variance", lambda: d.q_posterior_mean_variance(x0, x, t))
    run("p_mean_variance", lambda: d.p_mean_variance(model, x, t))
    run("p_sample", lambda: d.p_sample(model, x, t))
    run("p_sample_loop", lambda: d.p_sample_loop(model, SHAPE, **kw))
    run("p_sample_loop_x_T", lambda: d.p_sample_loop(model, SHAPE, noise=x, clip_denoised=False, **kw))
    run("p_sample_loop_progressive",
        lambda: [o["sample"] for o in d.p_sample_loop_progressive(model, SHAPE, **kw)])
    run("p_sample_loop_denoised_fn",
        lambda: d.p_sample_loop(model, SHAPE, denoised_fn=lambda v: 0.9 * v, **kw))
    run("ddim_sample", lambda: d.ddim_sample(model, x, t, eta=0.5))
    run("ddim_reverse_sample", lambda: d.ddim_reverse_sample(model, x, t))
    run("ddim_sample_loop", lambda: d.ddim_sample_loop(model, SHAPE, eta=0.3, **kw))
    run("ddim_sample_loop_progressive",
        lambda: [o["pred_xstart"] for o in d.ddim_sample_loop_progressive(model, SHAPE, **kw)])
    run("training_losses", lambda: d.training_losses(model, x0, t))
    run("calc_bpd_loop", lambda: d.calc_bpd_loop(model, x0[:1]))
    run("_predict_xstart_from_eps", lambda: d._predict_xstart_from_eps(x, t, x0))
    run("_predict_eps_from_xstart", lambda: d._predict_eps_from_xstart(x, t, x0))
    run("_prior_bpd", lambda: d._prior_bpd(x0))
    if guided:
        def cond_fn(x_in, ts, **kwargs):
            cond_fn.seen_t.append(ts.detach().clone())
            return -0.1 * x_in
        cond_fn.seen_t = []
        run("p_sample_loop_cond_fn", lambda: d.p_sample_loop(model, SHAPE, cond_fn=cond_fn, **kw))
        run("ddim_sample_loop_cond_fn",
            lambda: d.ddim_sample_loop(model, SHAPE, cond_fn=cond_fn, eta=0.2, **kw))
        results["cond_fn_saw"] = torch.cat(cond_fn.seen_t)
    return results


def assert_same(a, b, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    elif torch.is_tensor(a) and not a.is_floating_point():
        assert torch.equal(a, b), path
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m: f"{path}: {m}")


MODES = [
    (ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE, LossType.RESCALED_MSE),
    (ModelMeanType.START_X, ModelVarType.FIXED_LARGE, LossType.MSE),
    (ModelMeanType.PREVIOUS_X, ModelVarType.LEARNED, LossType.KL),
    (ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL, LossType.RESCALED_KL),
]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mean_type,var_type,loss_type", MODES)
@pytest.mark.parametrize("rescale", [False, True])
def test_patched_instance_matches_the_original(kind, mean_type, var_type, loss_type, rescale):
    guided = kind.startswith("guided")
    learned = var_type in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)
    torch.manual_seed(0)
    model = TinyModel(SHAPE[1], learned)
    results = []
    for patch in (False, True):
        d = make(kind, mean_type, var_type, loss_type, rescale)
        if patch:
            assert torch_ddpm.patch(d) is d
            del d._reference  # nothing patched may reach the unpatched implementation
            for name in GUIDED_METHODS if guided else IMPROVED_METHODS:
                assert getattr(d, name).__func__ is getattr(GaussianDiffusion, name), name
        model.seen_t.clear()
        out = every_method(d, model, guided)
        out["model_saw"] = torch.cat(model.seen_t)
        results.append(out)
    assert_same(results[0], results[1])
    if kind.endswith("spaced"):
        # the model and cond_fn see the original timesteps (scaled when asked), not 0..6
        saw = torch.cat([results[1]["model_saw"]] + ([results[1]["cond_fn_saw"]] if guided else []))
        original = torch.tensor([0, 2, 3, 7, 11, 16, 23])
        if rescale:  # as the wrapped model scales them
            original = original.float() * (1000.0 / T)
        assert bool(torch.isin(saw.to(original.dtype), original).all())
        assert saw.max() == original.max()


def test_the_sampling_loops_take_the_fused_chain_on_a_patched_instance():
    """A patched loop steps with the sample_out overloads, as an instance of
    torch_ddpm's own class does (the instance's methods are ours)."""
    d = make("improved", ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL, LossType.MSE, False)
    torch_ddpm.patch(d)
    assert d._plain_chain("p_sample", None, None)
    assert d._plain_chain("ddim_sample", None, None)
    assert not d._plain_chain("p_sample", lambda v: v, None)


def test_every_method_of_gaussian_diffusion_is_swapped_in():
    """The swapped set is derived from the class: whatever it gains comes along."""
    own = {name for name, value in vars(GaussianDiffusion).items()
           if callable(value) and not name.startswith("__")}
    assert own - {"_scale_timesteps"} == set(PATCHED_METHODS)
    assert {"_plain_chain", "_sample_chain", "_x_T", "_progressive"} <= set(PATCHED_METHODS)


def test_patch_refuses_other_objects():
    with pytest.raises(TypeError, match="lacks"):
        torch_ddpm.patch(object())


def test_patch_refuses_up_front_what_it_does_not_know():
    # a subclass's own override of a method patch() replaces would be dropped
    base = KINDS["improved"]
    kw = dict(mean_type=ModelMeanType.EPSILON, var_type=ModelVarType.FIXED_SMALL,
              loss_type=LossType.MSE, rescale=False)
    Custom = type("ConditionalDiffusion", (base,), {
        "training_losses": lambda self, model, x_start, t, **k: {"loss": x_start.sum()}})
    d = Custom(betas=get_named_beta_schedule("cosine", T), model_mean_type=kw["mean_type"],
               model_var_type=kw["var_type"], loss_type=kw["loss_type"])
    with pytest.raises(TypeError, match=r"ConditionalDiffusion.training_losses .* replace"):
        torch_ddpm.patch(d)
    assert "training_losses" not in vars(d)  # refused before anything was swapped
    # a method taking an argument the replacement does not
    Wider = type("GaussianDiffusion", (base,), {
        "p_sample": lambda self, model, x, t, guidance_scale=1.0: None})
    with pytest.raises(TypeError, match=r"p_sample takes \['guidance_scale'\]"):
        torch_ddpm.patch(Wider(betas=get_named_beta_schedule("cosine", T),
                               model_mean_type=kw["mean_type"], model_var_type=kw["var_type"],
                               loss_type=kw["loss_type"]))
    # a mode it does not implement
    import enum
    Odd = enum.Enum("ModelVarType", ["FIXED_MEDIUM"])
    d = make("improved", **kw)
    d.model_var_type = Odd.FIXED_MEDIUM
    with pytest.raises(TypeError, match=r"model_var_type is FIXED_MEDIUM"):
        torch_ddpm.patch(d)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_patched_instance_pickles_and_stays_patched(kind, tmp_path):
    # pickle, torch.save and spawn-based workers (DataLoader, torch.multiprocessing)
    # all pickle the diffusion
    import pickle

    mean_type, var_type, loss_type = MODES[0]
    torch.manual_seed(0)
    model = TinyModel(SHAPE[1], True)
    d = torch_ddpm.patch(make(kind, mean_type, var_type, loss_type, False))
    torch.save(d, tmp_path / "d.pt")
    for back in (pickle.loads(pickle.dumps(d)),
                 torch.load(tmp_path / "d.pt", weights_only=False) if TORCH_2 else
                 torch.load(tmp_path / "d.pt")):
        assert type(back) is type(d)
        assert back.p_sample.__func__ is GaussianDiffusion.p_sample
        assert back.p_sample.__self__ is back
        del back._reference  # the patched methods alone
        x = torch.randn(SHAPE)
        t = torch.tensor([0, 1, 2])
        for fn in (lambda e: e.p_sample_loop(model, SHAPE, device="cpu"),
                   lambda e: e.training_losses(model, x, t)["loss"]):
            torch.manual_seed(3)
            want = fn(d)
            torch.manual_seed(3)
            assert torch.equal(fn(back), want)
