"""torch_ddpm.diffusers' EulerDiscreteScheduler, EulerAncestralDiscreteScheduler
and DPMSolverMultistepScheduler against diffusers' own (0.42): random configs
with every option drawn at once, whole chains stepped side by side with one
generator each; pipelines with ours swapped in; configs and saved pipelines
both ways; one fused operator per step; what diffusers' own tests of these
classes ask (full loops, switching schedulers, a chain begun mid-way,
integer timesteps refused, 16-bit data), in our words; the options we refuse
by name. Seeded: the same configs every run (the seed is in the test id)."""
import json
import random

import pytest
import torch

from helpers import NoHostSync, saved_pipeline_config_without_us, tiny_unet

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
import torch_ddpm.diffusers as ours_module  # noqa: E402

def assert_close_to_diffusers(ours, theirs):
    # both form each step's coefficients from the same float32 sigmas (we in
    # float64, diffusers in float32) and round the result to float32: they
    # agree to a few float32 roundings of the step's terms
    scale = theirs.abs().max().item() if theirs.numel() else 0.0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * max(scale, 1.0))


KINDS = ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"]
SEEDS = range(16)


def scipy_available():
    try:
        import scipy  # noqa: F401  (beta sigmas need it)
        return True
    except ImportError:
        return False


def random_config(rng, kind):
    """Every option of diffusers' class that ours takes, drawn at once."""
    T = rng.choice([50, 100, 1000])
    config = dict(
        num_train_timesteps=T,
        beta_schedule=rng.choice(["linear", "scaled_linear", "squaredcos_cap_v2"]),
        beta_start=rng.choice([0.0001, 0.00085]), beta_end=rng.choice([0.012, 0.02]),
        prediction_type=rng.choice(["epsilon", "v_prediction"]
                                   + (["sample"] if kind != KINDS[1] else [])),
        timestep_spacing=rng.choice(["linspace", "leading", "trailing"]),
        steps_offset=rng.choice([0, 1]), rescale_betas_zero_snr=rng.random() < 0.2)
    if rng.random() < 0.15:
        config["trained_betas"] = [rng.uniform(1e-4, 0.03) for _ in range(T)]
    sigmas = ["plain", "karras", "exponential"] + (["beta"] if scipy_available() else [])
    if kind != KINDS[1]:
        schedule = rng.choice(sigmas)
        if schedule != "plain":
            config[f"use_{schedule}_sigmas"] = True
            config["timestep_spacing"] = "linspace"
    if kind == KINDS[0]:
        config.update(interpolation_type=rng.choice(["linear", "log_linear"]),
                      timestep_type=rng.choice(["discrete", "continuous"]),
                      final_sigmas_type=rng.choice(["zero", "sigma_min"]))
        if config["timestep_type"] == "continuous" and config["prediction_type"] != "v_prediction":
            config["timestep_type"] = "discrete"  # (diffusers: continuous is v-prediction's)
    if kind == KINDS[2]:
        config.update(solver_order=rng.choice([1, 2, 3]),
                      algorithm_type=rng.choice(["dpmsolver++", "sde-dpmsolver++"]),
                      solver_type=rng.choice(["midpoint", "heun"]),
                      lower_order_final=rng.random() < 0.7, euler_at_final=rng.random() < 0.3,
                      final_sigmas_type=rng.choice(["zero", "sigma_min"]),
                      thresholding=rng.random() < 0.3,
                      dynamic_thresholding_ratio=rng.choice([0.995, 0.9]),
                      sample_max_value=rng.choice([1.0, 1.5]),
                      variance_type=rng.choice([None, "learned_range"]))
        if config["prediction_type"] != "epsilon":
            config["variance_type"] = None  # (diffusers drops a variance half for epsilon only)
        if rng.random() < 0.2 and "use_karras_sigmas" not in config:
            config["use_lu_lambdas"] = True
            config.pop("use_exponential_sigmas", None)
            config.pop("use_beta_sigmas", None)
        if rng.random() < 0.2:
            config["lambda_min_clipped"] = -5.1
    return config


def float64_step(ours, model_output, sample, noise):
    """The step ours just took (its index is one back), its formulas (diffusers')
    in float64 from the same sigmas: tests/python/reference.py's.
    (prev_sample, pred_original_sample)."""
    import reference as ref

    i = ours.step_index - 1
    tables = {name: table.cpu() for name, table in ours._tables(sample.device).items()}
    t = torch.full((sample.shape[0],), i, dtype=torch.long)
    mean_type = {"epsilon": "epsilon", "v_prediction": "v", "sample": "start_x"}[
        ours.config.prediction_type]
    if isinstance(ours, ours_module.DPMSolverMultistepScheduler):
        raise NotImplementedError  # (not needed by any config drawn here)
    eta = 1.0 if isinstance(ours, ours_module.EulerAncestralDiscreteScheduler) else 0.0
    sample_, pred = ref.euler_sample(model_output, sample, t, noise, tables, eta, mean_type,
                                     "fixed_small", False)[:2]
    return sample_, pred


def run_chain(kind, config, seed, steps, dtype, begin=None):
    """Both schedulers over one chain, step by step, each step's model output
    and generator the same on both sides; yields (theirs, ours) step outputs,
    and what a float64 step needs."""
    theirs = getattr(diffusers, kind)(**config)
    ours = getattr(ours_module, kind).from_config(theirs.config)
    theirs.set_timesteps(steps)
    ours.set_timesteps(steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert torch.equal(ours.sigmas, theirs.sigmas)
    if begin is not None:
        theirs.set_begin_index(begin)
        ours.set_begin_index(begin)
    gen = torch.Generator().manual_seed(seed)
    learned = config.get("variance_type") == "learned_range"
    shape = (2, 3, 4, 4)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * theirs.init_noise_sigma).to(dtype)
    mine = x.clone()
    for i, t in enumerate(theirs.timesteps[begin or 0:].tolist()):
        t = theirs.timesteps[(begin or 0) + i]
        scaled = theirs.scale_model_input(x, t)
        assert torch.equal(ours.scale_model_input(mine, t), scaled)
        out = (0.5 * scaled.double() + 0.5 * torch.randn(shape, generator=gen,
                                                         dtype=torch.float64)).to(dtype)
        if learned:
            out = torch.cat([out, torch.rand(shape, generator=gen, dtype=dtype)], 1)
        try:
            want = theirs.step(out, t, x, generator=torch.Generator().manual_seed(100 + i))
        except IndexError:
            # diffusers 0.42's DPM-Solver with exponential or beta sigmas makes
            # more timesteps than sigmas and fails past the last: ours names
            # the step index it has no sigma for
            with pytest.raises(RuntimeError, match=r"expected every t in \[0, \d+\)"):
                ours.step(out, t, mine, generator=torch.Generator().manual_seed(100 + i))
            return
        got = ours.step(out, t, mine, generator=torch.Generator().manual_seed(100 + i))
        noise = (torch.randn(out.shape, generator=torch.Generator().manual_seed(100 + i),
                             dtype=out.dtype) if kind == KINDS[1] else out)
        yield want, got, (ours, out, mine, noise)
        # each side goes on from diffusers' sample, so that each step is compared alone
        x, mine = want.prev_sample, want.prev_sample.clone()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_configs_step_as_diffusers(kind, seed):
    rng = random.Random(seed * 7 + KINDS.index(kind))
    config = random_config(rng, kind)
    steps = rng.choice([1, 4, 12, 25])
    dtype = rng.choice([torch.float32, torch.float64])
    for want, got, step in run_chain(kind, config, seed, steps, dtype):
        for i, name in enumerate(("prev_sample", "pred_original_sample")):
            if not hasattr(want, name):
                continue
            mine, theirs = getattr(got, name), getattr(want, name)
            assert mine.shape == theirs.shape, (name, config)
            assert mine.dtype == theirs.dtype or name == "pred_original_sample", (name, config)
            try:
                assert_close_to_diffusers(mine.double(), theirs.double())
            except AssertionError:
                # further from diffusers than float32 rounding: then nearer the
                # float64 step (diffusers forms v's and the derivative's
                # coefficients in float32, where large sigmas round)
                exact = float64_step(*step)[i]
                assert (mine.double() - exact).abs().max() < (theirs.double() - exact).abs().max(), \
                    (name, config)


@pytest.mark.parametrize("kind", KINDS)
def test_a_chain_begun_mid_way_steps_as_diffusers(kind):
    # img2img: set_begin_index (DPM-Solver's first step there is first order)
    config = dict(solver_order=3) if kind == KINDS[2] else {}
    for want, got, _ in run_chain(kind, config, 0, 12, torch.float32, begin=5):
        assert_close_to_diffusers(got.prev_sample, want.prev_sample)


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_timestep_mid_chain_finds_its_place_on_the_host(kind):
    # no set_begin_index, a CPU timestep: found in the host copy, as diffusers
    # finds it (a repeated timestep: its second place)
    theirs, ours = getattr(diffusers, kind)(), getattr(ours_module, kind)()
    for s in (theirs, ours):
        s.set_timesteps(10)
    t = theirs.timesteps[4]
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    want = theirs.step(x * 0.3, t, x, generator=torch.Generator().manual_seed(0))
    got = ours.step(x * 0.3, t, x, generator=torch.Generator().manual_seed(0))
    assert ours.step_index == theirs.step_index == 5
    assert_close_to_diffusers(got.prev_sample, want.prev_sample)


def full_loop(scheduler, steps=10, dtype=torch.float32):
    scheduler.set_timesteps(steps)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 8, 8, generator=gen).to(dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        scaled = scheduler.scale_model_input(x, t)
        out = 0.1 * scaled + 0.05
        x = scheduler.step(out, t, x, generator=gen).prev_sample
    return x


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_full_loops_end_where_diffusers_ends(kind, prediction_type):
    want = full_loop(getattr(diffusers, kind)(prediction_type=prediction_type))
    got = full_loop(getattr(ours_module, kind)(prediction_type=prediction_type))
    assert torch.isfinite(got).all()
    assert_close_to_diffusers(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_16_bit_data_step_in_16_bit(kind):
    want = full_loop(getattr(diffusers, kind)(), dtype=torch.float16)
    got = full_loop(getattr(ours_module, kind)(), dtype=torch.float16)
    assert got.dtype == want.dtype == torch.float16
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)


def test_switching_between_the_schedulers_keeps_the_config():
    # diffusers' compatibles: a config moves between the three and DDPM/DDIM
    first = ours_module.DPMSolverMultistepScheduler(beta_schedule="scaled_linear")
    chain = [ours_module.EulerDiscreteScheduler, ours_module.EulerAncestralDiscreteScheduler,
             diffusers.DDIMScheduler, ours_module.DPMSolverMultistepScheduler]
    s = first
    for cls in chain:
        s = cls.from_config(s.config)
        assert type(s) is cls and s.config.beta_schedule == "scaled_linear"
    assert "EulerDiscreteScheduler" in first.compatibles[0].__name__ or any(
        c.__name__ == "EulerDiscreteScheduler" for c in first.compatibles)


@pytest.mark.parametrize("kind", KINDS[:2])
def test_euler_refuses_an_index_for_a_timestep_as_diffusers(kind):
    s = getattr(ours_module, kind)()
    s.set_timesteps(5)
    x = torch.zeros(1, 3, 2, 2)
    with pytest.raises(ValueError, match="integer indices"):
        s.step(x, 3, x)


def test_euler_with_churn_runs_diffusers_step():
    kw = dict(s_churn=0.5, s_tmin=0.0, s_tmax=1e9)
    theirs, ours = diffusers.EulerDiscreteScheduler(), ours_module.EulerDiscreteScheduler()
    for s in (theirs, ours):
        s.set_timesteps(8)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    for t in theirs.timesteps[:3]:
        want = theirs.step(x * 0.2, t, x, generator=torch.Generator().manual_seed(1), **kw)
        got = ours.step(x * 0.2, t, x, generator=torch.Generator().manual_seed(1), **kw)
        assert torch.equal(got.prev_sample, want.prev_sample)


@pytest.mark.parametrize("config,name", [
    (dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), "algorithm_type"),
    (dict(algorithm_type="sde-dpmsolver", final_sigmas_type="sigma_min"), "algorithm_type"),
    (dict(use_flow_sigmas=True, prediction_type="flow_prediction"), "flow"),
    (dict(use_flow_sigmas=True), "use_flow_sigmas"),
    (dict(use_dynamic_shifting=True), "use_dynamic_shifting"),
])
def test_dpm_solver_refuses_what_it_does_not_fuse_by_name(config, name):
    with pytest.raises(ValueError, match=name):
        ours_module.DPMSolverMultistepScheduler(**config)
    # diffusers' own class is the one to use there
    getattr(diffusers, "DPMSolverMultistepScheduler")(**config)


def test_dpm_solver_keeps_diffusers_history():
    # model_outputs holds the x_0 predictions, as diffusers' does: a step of
    # diffusers' own after ours goes on alike
    theirs, ours = (diffusers.DPMSolverMultistepScheduler(solver_order=3),
                    ours_module.DPMSolverMultistepScheduler(solver_order=3))
    for s in (theirs, ours):
        s.set_timesteps(10)
    x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for t in theirs.timesteps[:4]:
        a, b = theirs.step(x * 0.3, t, x).prev_sample, ours.step(x * 0.3, t, x).prev_sample
        assert_close_to_diffusers(b, a)
        x = a
    assert ours.lower_order_nums == theirs.lower_order_nums == 3
    for mine, theirs_ in zip(ours.model_outputs, theirs.model_outputs):
        assert_close_to_diffusers(mine, theirs_)


@pytest.mark.parametrize("kind", KINDS)
def test_configs_travel_both_ways(kind, tmp_path):
    theirs = getattr(diffusers, kind)(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                      timestep_spacing="trailing")
    ours = getattr(ours_module, kind).from_config(theirs.config)
    assert isinstance(ours, getattr(diffusers, kind))
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(ours.config) == public(theirs.config)
    ours.save_pretrained(tmp_path / "ours")
    back = getattr(diffusers, kind).from_pretrained(tmp_path / "ours")
    assert public(back.config) == public(theirs.config)
    again = getattr(ours_module, kind).from_pretrained(tmp_path / "ours")
    assert type(again) is getattr(ours_module, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_a_pipeline_gives_the_same_images_and_saves_for_plain_diffusers(kind, tmp_path):
    # DDPMPipeline's loop (no input scaling: a variance-preserving chain for
    # Euler too, compared side by side) with ours swapped in by one line
    pipe = diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=getattr(diffusers, kind)(
        num_train_timesteps=100, beta_schedule="scaled_linear"))
    pipe.set_progress_bar_config(disable=True)
    kw = dict(batch_size=2, num_inference_steps=8, output_type="np")
    want = pipe(generator=torch.Generator().manual_seed(3), **kw).images
    pipe.scheduler = getattr(ours_module, kind).from_config(pipe.scheduler.config)
    got = pipe(generator=torch.Generator().manual_seed(3), **kw).images
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=0, atol=2e-4)
    pipe.save_pretrained(tmp_path)
    config = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
    assert saved_pipeline_config_without_us(tmp_path, "DDPMPipeline", kind) == \
        json.loads(json.dumps(config))


@pytest.mark.parametrize("kind", KINDS)
def test_our_scheduler_pickles_as_ours(kind):
    import pickle

    cls = getattr(ours_module, kind)
    back = pickle.loads(pickle.dumps(cls(num_train_timesteps=50)))
    assert type(back) is cls and back.config.num_train_timesteps == 50


STEP_CONFIGS = [("EulerDiscreteScheduler", {}), ("EulerAncestralDiscreteScheduler", {}),
                ("DPMSolverMultistepScheduler", dict(solver_order=2)),
                ("DPMSolverMultistepScheduler", dict(solver_order=3,
                                                     algorithm_type="sde-dpmsolver++")),
                ("DPMSolverMultistepScheduler", dict(thresholding=True,
                                                     prediction_type="sample"))]


def dispatched(call):
    """The ddpm:: and aten:: operators a call dispatches (top level)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func._schema.name)
            return func(*args, **(kwargs or {}))

    with Mode():
        call()
    return seen


@pytest.mark.parametrize("kind,config", STEP_CONFIGS[:4])
def test_a_step_dispatches_one_fused_operator(kind, config):
    # the second chain of a pipeline: its step-index tensors made by the first
    s = getattr(ours_module, kind)(**config)
    x = torch.randn(2, 3, 4, 4)
    for chain in range(2):
        s.set_timesteps(10)
        for t in s.timesteps[:4]:  # (past DPM-Solver's first, lower-order steps)
            ops = dispatched(lambda: s.step(x, t, x, generator=torch.Generator().manual_seed(0)))
    fused = [op for op in ops if op.startswith("ddpm::")]
    assert len(fused) == 1, ops
    # the rest: only the noise the ancestral and SDE steps draw as diffusers does
    assert all(op == "aten::randn" for op in ops if not op.startswith("ddpm::")), ops


@pytest.mark.parametrize("kind,config", STEP_CONFIGS)
def test_no_host_sync_in_a_step(kind, config):
    from conftest import TORCH_2

    if config.get("thresholding") and not TORCH_2:
        pytest.skip("torch 1.13 has no meta kernel for kthvalue (thresholding's quantile)")
    meta = torch.device("meta")
    s = getattr(ours_module, kind)(**config)
    s.set_timesteps(10, device=meta)
    x = torch.empty(2, 3, 8, 8, device=meta)
    s.step(x, s.timesteps[0], x, generator=None)  # the warm-up: the tables go to the device
    for t in s.timesteps[1:4]:
        with NoHostSync():
            out = s.step(s.scale_model_input(x, t), t, x)
        assert out.prev_sample.device == meta and out.prev_sample.shape == x.shape


@pytest.mark.parametrize("kind", KINDS)
def test_denoising_loop_is_the_pipelines_loop(kind):
    # torch_ddpm.diffusers.denoising_loop with ours: a pipeline's loop
    # (scale_model_input, the model, step) with diffusers' own scheduler
    net = torch.nn.Conv2d(3, 3, 1)

    def model(x, t):
        return net(x) * 0.5

    theirs, ours = getattr(diffusers, kind)(), getattr(ours_module, kind)()
    for s in (theirs, ours):
        s.set_timesteps(7)
    latents = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    latents = latents * theirs.init_noise_sigma
    want = latents
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in theirs.timesteps:
            want = theirs.step(model(theirs.scale_model_input(want, t), t), t, want,
                               generator=gen).prev_sample
        got = [ours_module.denoising_loop(model, ours, latents,
                                          generator=torch.Generator().manual_seed(1))
               for _ in range(2)]  # (run again: the chain starts anew)
    assert_close_to_diffusers(got[0], want)
    assert torch.equal(got[0], got[1])


def test_dpm_solver_under_autograd_steps_and_differentiates_as_diffusers():
    # an earlier x_0 prediction that requires grad (a chain under autograd):
    # diffusers' own step, so the gradient reaches every step's model output
    config = dict(solver_order=3)
    theirs, ours = (diffusers.DPMSolverMultistepScheduler(**config),
                    ours_module.DPMSolverMultistepScheduler(**config))
    grads = []
    for s in (theirs, ours):
        s.set_timesteps(6)
        w = torch.tensor(0.3, requires_grad=True)
        x = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
        for t in s.timesteps:
            x = s.step(x * w, t, x).prev_sample
        x.sum().backward()
        grads.append((x.detach(), w.grad))
    assert_close_to_diffusers(grads[1][0], grads[0][0])
    assert_close_to_diffusers(grads[1][1], grads[0][1])


def test_dpm_solver_history_set_by_hand_and_a_chain_begun_at_step_5():
    # a caller may fill model_outputs itself (diffusers' own tests do) and
    # step from any timestep of the chain: found on the host, first order there
    r = 0.1 * torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    outs = []
    for s in (diffusers.DPMSolverMultistepScheduler(solver_order=3),
              ours_module.DPMSolverMultistepScheduler(solver_order=3)):
        s.set_timesteps(25)
        s.model_outputs = [r + 0.2, r + 0.15, r + 0.1]
        outs.append([s.step(r, s.timesteps[i], r * 10).prev_sample for i in (5, 6, 7)])
        assert s.step_index == 8
    for mine, theirs in zip(outs[1], outs[0]):
        assert_close_to_diffusers(mine, theirs)


def test_dpm_solver_16_bit_thresholding_and_custom_timesteps():
    s = ours_module.DPMSolverMultistepScheduler(thresholding=True, dynamic_thresholding_ratio=0)
    s.set_timesteps(10)
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).half()
    for t in s.timesteps:
        x = s.step(x * 0.5, t, x).prev_sample
    assert x.dtype == torch.float16 and torch.isfinite(x).all()
    # the same chain given as custom timesteps steps alike
    runs = []
    for custom in (False, True):
        s = ours_module.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
        s.set_timesteps(10)
        if custom:
            timesteps = s.timesteps
            s = ours_module.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
            s.set_timesteps(num_inference_steps=None, timesteps=timesteps)
        x, gen = torch.ones(1, 3, 4, 4), torch.Generator().manual_seed(0)
        for t in s.timesteps:
            x = s.step(x * 0.3, t, x, generator=gen).prev_sample
        runs.append(x)
    assert torch.equal(*runs)


@pytest.mark.parametrize("kind", KINDS)
def test_any_number_of_inference_steps(kind):
    # from one step to every training step: the first two steps as diffusers'
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for steps in (1, 2, 3, 5, 50, 999, 1000):
        theirs, ours = getattr(diffusers, kind)(), getattr(ours_module, kind)()
        for s in (theirs, ours):
            s.set_timesteps(steps)
        for t in theirs.timesteps[:2]:
            want = theirs.step(x * 0.1, t, x, generator=torch.Generator().manual_seed(0))
            got = ours.step(x * 0.1, t, x, generator=torch.Generator().manual_seed(0))
            assert_close_to_diffusers(got.prev_sample, want.prev_sample)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_a_16_bit_output_with_a_float32_sample_steps_to_diffusers_dtype(kind, prediction_type):
    # autocast: the model's output 16-bit, the sample float32. The result's
    # dtype is diffusers' (Euler: the output's; DPM-Solver: its x_0
    # prediction's, float32 but for the sample prediction), its values within
    # a 16-bit rounding of the output's terms
    if kind == KINDS[1] and prediction_type == "sample":
        pytest.skip("diffusers' EulerAncestral has no sample prediction")
    theirs = getattr(diffusers, kind)(prediction_type=prediction_type)
    ours = getattr(ours_module, kind)(prediction_type=prediction_type)
    for s in (theirs, ours):
        s.set_timesteps(8)
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * theirs.init_noise_sigma
    for i, t in enumerate(theirs.timesteps[:4]):
        out = (0.5 * theirs.scale_model_input(x, t)).half()
        want = theirs.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        got = ours.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-3, atol=2e-3 * x.abs().max())
        x = want.float()
