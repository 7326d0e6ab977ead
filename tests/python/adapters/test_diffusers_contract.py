"""What diffusers' own scheduler tests ask of a DDPM or DDIM scheduler
(diffusers' tests/schedulers: the common contract and the two schedulers'
files), asked of ours, and answered against diffusers' own scheduler rather
than against stored numbers: a config saved and loaded steps alike, the
outputs behave as diffusers' BaseOutput, one timestep broadcasts over a
batch, trained betas of any length, _get_variance, custom timesteps, full
loops. Where ours knowingly differs (a DDIM chain through alphas_cumprod = 0
with epsilon prediction is refused, where diffusers divides by zero), the
test asserts our documented behaviour."""
import warnings

import numpy as np
import pytest
import torch

from helpers import assert_close_to_diffusers

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
import torch_ddpm.diffusers as ours_module  # noqa: E402
from torch_ddpm import fused_schedulers as look_alike  # noqa: E402

KINDS = ["DDPMScheduler", "DDIMScheduler"]
BASE = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
            clip_sample=True)


def both(kind, **config):
    config = {**BASE, **config}
    if kind == "DDPMScheduler":
        config.setdefault("variance_type", "fixed_small")
    return getattr(diffusers, kind)(**config), getattr(ours_module, kind)(**config)


def sample_and_output(seed=0):
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, 0.1 * x


def step(scheduler, kind, t, x, out, steps=None, **kw):
    if steps is not None:
        scheduler.set_timesteps(steps)
    if kind == "DDIMScheduler":
        kw.setdefault("eta", 0.0)
    return scheduler.step(out, t, x, generator=torch.manual_seed(0), **kw)


# (kind, config, time_step, inference steps): the configs diffusers' files
# check one option at a time
CONFIGS = (
    [("DDPMScheduler", dict(num_train_timesteps=n), 0, None) for n in (1, 5, 100, 1000)]
    + [("DDIMScheduler", dict(num_train_timesteps=n), 0, 50) for n in (100, 500, 1000)]
    + [(k, dict(beta_start=a, beta_end=b), 0, s) for k, s in (("DDPMScheduler", None),
                                                              ("DDIMScheduler", 50))
       for a, b in ((0.0001, 0.002), (0.001, 0.02))]
    # (betas to 0.2 or 2: a DDIM chain through alphas_cumprod = 0 is refused below)
    + [("DDPMScheduler", dict(beta_start=a, beta_end=b), 0, None) for a, b in ((0.01, 0.2),
                                                                               (0.1, 2))]
    + [(k, dict(beta_schedule=b), 0, s) for k, s in (("DDPMScheduler", None),
                                                     ("DDIMScheduler", 50))
       for b in ("linear", "squaredcos_cap_v2")]
    + [("DDPMScheduler", dict(variance_type=v), 0, None)
       for v in ("fixed_small", "fixed_large", "other")]
    + [(k, dict(clip_sample=c), 0, s) for k, s in (("DDPMScheduler", None), ("DDIMScheduler", 50))
       for c in (True, False)]
    + [(k, dict(thresholding=True, prediction_type=p, sample_max_value=m), 0, s)
       for k, s, preds in (("DDPMScheduler", None, ("epsilon", "sample", "v_prediction")),
                           ("DDIMScheduler", 50, ("epsilon", "v_prediction")))
       for p in preds for m in (0.5, 1.0, 2.0)]
    + [("DDIMScheduler", dict(steps_offset=o), 0, 50) for o in (0, 1)]
    + [("DDIMScheduler", dict(timestep_spacing=sp), 0, 50) for sp in ("trailing", "leading")]
    + [("DDIMScheduler", dict(rescale_betas_zero_snr=r), 0, 50) for r in (True, False)]
    + [("DDPMScheduler", {}, t, None) for t in (0, 500, 999)]
    + [("DDIMScheduler", {}, t, n) for t, n in ((1, 50), (10, 50), (49, 50), (1, 10),
                                                (10, 50), (50, 500))]
)


@pytest.mark.parametrize("kind,config,time_step,steps", CONFIGS,
                         ids=[f"{k[:4]}-{c}-t{t}-{s}" for k, c, t, s in CONFIGS])
def test_a_saved_config_steps_alike_and_as_diffusers(kind, config, time_step, steps, tmp_path):
    theirs, ours = both(kind, **config)
    ours.save_config(tmp_path)
    again = getattr(ours_module, kind).from_pretrained(tmp_path)
    x, out = sample_and_output()
    a = step(theirs, kind, time_step, x, out, steps)
    b = step(ours, kind, time_step, x, out, steps)
    c = step(again, kind, time_step, x, out, steps)
    assert b.prev_sample.shape == x.shape
    assert torch.equal(b.prev_sample, c.prev_sample)
    assert_close_to_diffusers(b.prev_sample, a.prev_sample)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_eta_steps_as_diffusers(eta):
    theirs, ours = both("DDIMScheduler")
    x, out = sample_and_output()
    for t in (1, 10, 49):
        a = step(theirs, "DDIMScheduler", t, x, out, 50, eta=eta)
        b = step(ours, "DDIMScheduler", t, x, out, 50, eta=eta)
        assert_close_to_diffusers(b.prev_sample, a.prev_sample)


def test_ddim_through_zero_alphas_cumprod_with_epsilon_is_refused():
    # betas up to 0.2 or 2 (diffusers' test_betas): alphas_cumprod underflows to 0
    # (e^-100 is below float32's least value), where
    # epsilon prediction divides by sqrt(alphas_cumprod) = 0; ours says so at
    # set_timesteps (a DDPM step of the same schedule is fine at t = 0)
    for end in (0.2, 2):
        _, ours = both("DDIMScheduler", beta_start=end / 20, beta_end=end)
        with pytest.raises(ValueError, match=r"epsilon prediction has no x_0 where alphas_cumprod "
                                             rf"is 0.*betas reach {end}: products of 1 - beta "
                                             "underflow"):
            ours.set_timesteps(50)
    _, v = both("DDIMScheduler", beta_start=0.1, beta_end=2, prediction_type="v_prediction")
    v.set_timesteps(50)


@pytest.mark.parametrize("module", [ours_module, look_alike], ids=["diffusers", "look-alike"])
@pytest.mark.parametrize("kind", KINDS)
def test_step_outputs_behave_as_base_output(module, kind):
    sched = getattr(module, kind)()
    if kind == "DDIMScheduler":
        sched.set_timesteps(50)
    x, out = sample_and_output()
    result = sched.step(out, 1, x, generator=torch.manual_seed(0))
    plain = sched.step(out, 1, x, generator=torch.manual_seed(0), return_dict=False)
    assert isinstance(plain, tuple) and len(plain) == 2
    fields = ("prev_sample", "pred_original_sample")
    assert list(result.keys()) == list(fields)
    for i, name in enumerate(fields):
        for got in (result[i], result[name], getattr(result, name), result.to_tuple()[i],
                    list(result.values())[i]):
            assert torch.equal(got, plain[i])
    assert list(result) == list(fields)  # a dict: its field names
    if module is ours_module:
        assert isinstance(result, diffusers.utils.BaseOutput)
    else:
        import pickle
        back = pickle.loads(pickle.dumps(result))
        assert type(back) is type(result) and torch.equal(back.prev_sample, plain[0])


@pytest.mark.parametrize("cls", [diffusers.schedulers.scheduling_ddpm.DDPMSchedulerOutput,
                                 diffusers.schedulers.scheduling_ddim.DDIMSchedulerOutput,
                                 look_alike.DDPMSchedulerOutput])
def test_a_step_output_filled_directly_is_what_its_class_builds(cls):
    # the steps fill diffusers' output object directly (its dataclass
    # construction costs as much as the step): the same object in every way a
    # caller can see, pickling and equality included
    import pickle

    a, b = torch.ones(2), torch.zeros(2)
    built = cls(prev_sample=a, pred_original_sample=b)
    filled = look_alike._step_output(cls, a, b)
    assert type(filled) is type(built)
    assert list(filled.items()) == list(built.items())
    assert vars(filled) == vars(built)
    assert filled.to_tuple() == built.to_tuple() and filled[1] is b and filled.prev_sample is a
    assert filled == built
    back = pickle.loads(pickle.dumps(filled))
    assert type(back) is cls and list(back.keys()) == list(built.keys())
    assert torch.equal(back.pred_original_sample, b) and torch.equal(back[0], a)


@pytest.mark.parametrize("module", [ours_module, look_alike], ids=["diffusers", "look-alike"])
@pytest.mark.parametrize("kind", KINDS)
def test_one_timestep_of_shape_1_broadcasts_over_the_batch(module, kind):
    sched = getattr(module, kind)()
    sched.set_timesteps(100)
    x = torch.rand(4, 3, 8, 8)
    noise = torch.randn_like(x)
    t = sched.timesteps[5][None]
    want = sched.add_noise(x, noise, torch.full((4,), int(t)))
    assert torch.equal(sched.add_noise(x, noise, t), want)
    assert torch.equal(sched.get_velocity(x, noise, t),
                       sched.get_velocity(x, noise, torch.full((4,), int(t))))
    with pytest.raises(ValueError, match=r"one timestep or one per sample \(4\)"):
        sched.add_noise(x, noise, t.repeat(3))


@pytest.mark.parametrize("kind", KINDS)
def test_full_loop_with_noise_from_one_timestep_matches_diffusers(kind):
    theirs, ours = both(kind)
    x = torch.arange(4 * 3 * 8 * 8).reshape(3, 8, 8, 4).permute(3, 0, 1, 2) / (4 * 3 * 8 * 8)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    samples = []
    for sched in (theirs, ours):
        if kind == "DDIMScheduler":
            sched.set_timesteps(10)
        timesteps = sched.timesteps[8 if kind == "DDIMScheduler" else len(sched) - 2:]
        sample = sched.add_noise(x, noise, timesteps[:1])
        generator = torch.manual_seed(0)
        for t in timesteps:
            residual = sample * t / (t + 1)
            sample = (sched.step(residual, t, sample, 0.0) if kind == "DDIMScheduler" else
                      sched.step(residual, t, sample, generator=generator)).prev_sample
        samples.append(sample)
    assert_close_to_diffusers(samples[1], samples[0])


@pytest.mark.parametrize("config", [{}, dict(prediction_type="v_prediction"),
                                    dict(set_alpha_to_one=True, beta_start=0.01),
                                    dict(set_alpha_to_one=False, beta_start=0.01)],
                         ids=["epsilon", "v", "alpha-to-one", "no-alpha-to-one"])
def test_ddim_full_loops_match_diffusers(config):
    theirs, ours = both("DDIMScheduler", **config)
    x = torch.arange(4 * 3 * 8 * 8).reshape(3, 8, 8, 4).permute(3, 0, 1, 2) / (4 * 3 * 8 * 8)
    results = []
    for sched in (theirs, ours):
        sched.set_timesteps(10)
        sample = x
        for t in sched.timesteps:
            sample = sched.step(sample * t / (t + 1), t, sample, 0.0).prev_sample
        results.append(sample)
    assert_close_to_diffusers(results[1], results[0])


@pytest.mark.parametrize("config", [{}, dict(prediction_type="v_prediction")], ids=["eps", "v"])
def test_ddpm_full_loop_over_every_training_step_matches_diffusers(config):
    theirs, ours = both("DDPMScheduler", **config)
    x = torch.arange(4 * 3 * 8 * 8).reshape(3, 8, 8, 4).permute(3, 0, 1, 2) / (4 * 3 * 8 * 8)
    results = []
    for sched in (theirs, ours):
        sample, generator = x, torch.manual_seed(0)
        for t in reversed(range(len(sched))):
            sample = sched.step(sample * t / (t + 1), t, sample, generator=generator).prev_sample
        results.append(sample)
    assert_close_to_diffusers(results[1], results[0])


@pytest.mark.parametrize("kind", KINDS)
def test_trained_betas_of_any_length_are_kept(kind, tmp_path):
    _, ours = both(kind, trained_betas=np.array([0.1, 0.3]))
    ours.save_pretrained(tmp_path)
    again = getattr(ours_module, kind).from_pretrained(tmp_path)
    assert ours.betas.tolist() == again.betas.tolist() == pytest.approx([0.1, 0.3])
    # a step inside the two trained steps runs; one beyond them is refused by name
    x, out = sample_and_output()
    if kind == "DDPMScheduler":
        step(ours, kind, 1, x, out)
        with pytest.raises(RuntimeError, match=r"expected every t in \[0, 2\) \(the schedule length\), got t\[0\] = 5"):
            step(ours, kind, 5, x, out)


def test_get_variance_is_diffusers():
    for kind, calls in (("DDPMScheduler", [(0,), (487,), (999,)]),
                        ("DDIMScheduler", [(0, 0), (420, 400), (980, 960), (487, 486),
                                           (999, 998)])):
        theirs, ours = both(kind)
        for args in calls:
            torch.testing.assert_close(ours._get_variance(*args), theirs._get_variance(*args),
                                       rtol=0, atol=1e-7)
    theirs, ours = both("DDPMScheduler")
    pv = torch.rand(2, 3)
    for variance_type in ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log",
                          "learned_range"):
        torch.testing.assert_close(ours._get_variance(300, pv, variance_type),
                                   theirs._get_variance(300, pv, variance_type))


def test_a_variance_type_registered_after_construction_is_the_one_stepped():
    theirs, ours = both("DDPMScheduler")
    for sched in (theirs, ours):
        sched.register_to_config(variance_type="fixed_large")
    x, out = sample_and_output()
    a, b = (step(s, "DDPMScheduler", 500, x, out).prev_sample for s in (theirs, ours))
    _, large = both("DDPMScheduler", variance_type="fixed_large")
    assert torch.equal(b, step(large, "DDPMScheduler", 500, x, out).prev_sample)
    assert_close_to_diffusers(b, a)


@pytest.mark.parametrize("kind", KINDS)
def test_clip_settings_changed_between_steps_are_the_ones_stepped(kind):
    # the step forms its clip settings once per setting: a change after a step
    # (register_to_config, or the look-alike's config written) takes effect
    theirs, ours = both(kind)
    plain = look_alike.DDPMScheduler() if kind == "DDPMScheduler" else look_alike.DDIMScheduler()
    x, out = sample_and_output()
    out = out * 40  # an x_0 the clip limits
    for setting in (dict(clip_sample=True), dict(clip_sample=False),
                    dict(clip_sample=True, clip_sample_range=0.5), dict(clip_sample=True)):
        for sched in (theirs, ours):
            sched.register_to_config(**{"clip_sample_range": 1.0, **setting})
        plain.config.update({"clip_sample_range": 1.0, **setting})
        want = step(theirs, kind, 500, x, out, steps=10).prev_sample
        for sched in (ours, plain):
            assert_close_to_diffusers(step(sched, kind, 500, x, out, steps=10).prev_sample, want)


def test_custom_timesteps_as_diffusers():
    _, ours = both("DDPMScheduler")
    ours.set_timesteps(timesteps=[100, 87, 50, 1, 0])
    assert [int(ours.previous_timestep(t)) for t in ours.timesteps] == [87, 50, 1, 0, -1]
    for kw, message in ((dict(timesteps=[100, 87, 50, 51, 0]), "descending"),
                        (dict(timesteps=[100, 87, 50, 1, 0], num_inference_steps=5),
                         "Can only pass one"),
                        (dict(timesteps=[1000]), "must start before")):
        with pytest.raises(ValueError, match=message):
            ours.set_timesteps(**kw)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", [0, -3])
def test_no_inference_steps_is_refused(kind, steps):
    _, ours = both(kind)
    with pytest.raises(ValueError, match="must be a positive integer"):
        ours.set_timesteps(steps)


@pytest.mark.parametrize("kind", KINDS)
def test_public_api_config_and_attributes_as_diffusers(kind, tmp_path):
    theirs, ours = both(kind)
    assert ours.init_noise_sigma == theirs.init_noise_sigma
    x = torch.rand(4, 3, 8, 8)
    assert ours.scale_model_input(x, 0.0) is x
    ours.save_pretrained(tmp_path)
    again = getattr(ours_module, kind).from_pretrained(tmp_path)
    config = dict(ours.config)
    del config["_use_default_values"]
    assert config == again.config
    assert ours._deprecated_kwargs == theirs._deprecated_kwargs
    ours.dummy_attribute = 5
    assert ours.dummy_attribute == 5
    ours.register_to_config(test_attribute=5)
    with pytest.warns(FutureWarning):
        assert ours.test_attribute == 5
    with pytest.raises(AttributeError, match=f"'{kind}' object has no attribute 'does_not_exist'"):
        ours.does_not_exist  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ours.save_pretrained == getattr(ours, "save_pretrained")
