"""torch_ddpm.diffusers.DDIMScheduler against diffusers' (0.42): the config
matrix step by step with the same generator (prediction types, clipping,
thresholding, spacings, set_alpha_to_one, zero terminal SNR, eta,
use_clipped_model_output, variance_noise), DDIMPipeline with it swapped in by
one line, configs both ways; and where it goes beyond diffusers (per-sample
timesteps, no host read of a device timestep, the zero-SNR epsilon step
refused rather than NaN)."""
import pytest
import torch

from conftest import requires_cuda
from helpers import assert_close_to_diffusers, tiny_unet

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
from torch_ddpm.diffusers import DDIMScheduler  # noqa: E402
from torch_ddpm.fused_schedulers import DDIMScheduler as LookAlike  # noqa: E402

CONFIGS = [
    {},
    {"clip_sample": False, "prediction_type": "sample"},
    {"prediction_type": "v_prediction", "beta_schedule": "scaled_linear", "clip_sample": False,
     "timestep_spacing": "trailing"},
    {"thresholding": True, "beta_schedule": "squaredcos_cap_v2"},
    {"set_alpha_to_one": False, "timestep_spacing": "linspace", "steps_offset": 1},
    {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
     "timestep_spacing": "trailing", "clip_sample": False},
    {"prediction_type": "v_prediction", "thresholding": True, "sample_max_value": 2.0},
    {"clip_sample_range": 0.8},
]


def run_chain(scheduler, steps, eta, use_clipped, seed=0):
    """Every step from diffusers' own trajectory (so the comparison is per step),
    with a model output that depends on the sample; returns the outputs."""
    outs = []
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 6, generator=gen)
    for i, t in enumerate(steps):
        model_output = 0.7 * x + 0.5 * torch.randn(2, 3, 6, 6, generator=torch.Generator()
                                                   .manual_seed(100 + i))
        step = scheduler.step(model_output, t, x, eta=eta, use_clipped_model_output=use_clipped,
                              generator=torch.Generator().manual_seed(200 + i))
        outs.append((step.prev_sample, step.pred_original_sample))
        x = step.prev_sample
    return outs


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
                         or "default")
@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("use_clipped", [False, True])
def test_steps_match_diffusers(config, eta, use_clipped):
    theirs = diffusers.DDIMScheduler(num_train_timesteps=1000, **config)
    ours = DDIMScheduler.from_config(theirs.config)
    for s in (theirs, ours):
        s.set_timesteps(12)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    want = run_chain(theirs, theirs.timesteps, eta, use_clipped)
    got = run_chain(ours, theirs.timesteps, eta, use_clipped)
    for i, ((gs, gp), (ws, wp)) in enumerate(zip(got, want)):
        assert_close_to_diffusers(gp, wp)
        assert_close_to_diffusers(gs, ws)


def test_variance_noise_and_the_generator_are_used_as_diffusers_uses_them():
    theirs = diffusers.DDIMScheduler()
    ours = DDIMScheduler.from_config(theirs.config)
    for s in (theirs, ours):
        s.set_timesteps(10)
    x, out, noise = (torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(i))
                     for i in range(3))
    t = theirs.timesteps[3]
    for kw in (lambda: {"variance_noise": noise},
               lambda: {"generator": torch.Generator().manual_seed(5)}):
        assert_close_to_diffusers(ours.step(out, t, x, eta=1.0, **kw()).prev_sample,
                                  theirs.step(out, t, x, eta=1.0, **kw()).prev_sample)
    with pytest.raises(ValueError, match="Cannot pass both generator and variance_noise"):
        ours.step(out, t, x, eta=1.0, variance_noise=noise, generator=torch.Generator())
    # eta = 0 draws nothing: the global generator is where it was
    torch.manual_seed(9)
    ours.step(out, t, x)
    after = torch.rand(3)
    torch.manual_seed(9)
    assert torch.equal(torch.rand(3), after)


def test_one_line_swap_in_ddim_pipeline_gives_the_same_images():
    unet = tiny_unet()
    pipe = diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler(
        num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    for eta in (0.0, 0.5):
        kw = dict(batch_size=2, num_inference_steps=10, eta=eta, output_type="np")
        pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
        want = pipe(generator=torch.Generator().manual_seed(3), **kw).images
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        assert isinstance(pipe.scheduler, DDIMScheduler)
        got = pipe(generator=torch.Generator().manual_seed(3), **kw).images
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=0,
                                   atol=2e-4)


def test_configs_travel_both_ways(tmp_path):
    theirs = diffusers.DDIMScheduler(beta_schedule="scaled_linear", set_alpha_to_one=False,
                                     prediction_type="v_prediction", timestep_spacing="trailing")
    ours = DDIMScheduler.from_config(theirs.config)
    assert isinstance(ours, diffusers.SchedulerMixin)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(ours.config) == public(theirs.config)
    ours.save_pretrained(tmp_path / "ours")
    back = diffusers.DDIMScheduler.from_pretrained(tmp_path / "ours")
    assert back.config.set_alpha_to_one is False
    theirs.save_pretrained(tmp_path / "theirs")
    again = DDIMScheduler.from_pretrained(tmp_path / "theirs")
    assert type(again) is DDIMScheduler and torch.equal(again.alphas_cumprod, theirs.alphas_cumprod)
    # a DDPM model's config (a pipeline switching samplers) loads too
    assert DDIMScheduler.from_config(diffusers.DDPMScheduler().config).config.clip_sample


def test_zero_snr_epsilon_is_refused():
    # epsilon prediction divides by sqrt(alpha_bar_t) = 0 at t = 999 (diffusers
    # steps to NaN there, #3851); ours refuses the chain that reaches it
    theirs = diffusers.DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    ours = DDIMScheduler.from_config(theirs.config)
    with pytest.raises(ValueError, match=r"epsilon prediction has no x_0 where alphas_cumprod is 0, .* steps from t = \[999\] .*rescale_betas_zero_snr=True sets the last one to 0"):
        ours.set_timesteps(10)
    # a spacing that does not reach t = 999 is fine
    DDIMScheduler.from_config(theirs.config, timestep_spacing="leading").set_timesteps(10)


def test_zero_snr_at_eta_one_is_finite():
    # At eta = 1 and alpha_bar_t = 0, 1 - alpha_bar_prev - sigma^2 is 0 in exact
    # arithmetic; rounded, it may land on either side of 0 (diffusers' float32
    # does, on some CPUs, and returns NaN: #5969). Here the direction term is
    # exactly 0 there: the step is sqrt(alpha_bar_prev) x_0 + sigma noise, with
    # x_0 = -v at zero SNR. (At 4 steps float64 rounds it below 0: the kernel's
    # clamp is what keeps it.) What diffusers returns is not asserted.
    config = dict(rescale_betas_zero_snr=True, prediction_type="v_prediction",
                  timestep_spacing="trailing", clip_sample=False)
    theirs = diffusers.DDIMScheduler(**config)
    ours = DDIMScheduler.from_config(theirs.config)
    for s in (theirs, ours):
        s.set_timesteps(4)
    t, prev = int(theirs.timesteps[0]), int(theirs.timesteps[1])
    assert float(theirs.alphas_cumprod[t]) == 0.0
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    v = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    b = ours.step(v, t, x, eta=1.0, variance_noise=noise)
    abar_prev = theirs.alphas_cumprod[prev].double()
    want = abar_prev.sqrt() * -v.double() + (1 - abar_prev).sqrt() * noise.double()
    assert torch.isfinite(b.prev_sample).all()
    torch.testing.assert_close(b.prev_sample.double(), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.pred_original_sample, -v)


def test_per_sample_timesteps_and_no_host_read():
    ours = LookAlike(prediction_type="v_prediction", clip_sample=False)
    ours.set_timesteps(20)
    x, out, noise = (torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(i))
                     for i in range(3))
    ts = ours.timesteps[[0, 7, 19]]
    batched = ours.step(out, ts, x, eta=0.5, variance_noise=noise).prev_sample
    for b in range(3):
        one = ours.step(out[b:b + 1], ts[b], x[b:b + 1], eta=0.5,
                        variance_noise=noise[b:b + 1]).prev_sample
        torch.testing.assert_close(batched[b:b + 1], one, rtol=0, atol=0)
    # meta tensors have no values: a host read of the timestep would raise
    meta = torch.empty(2, 3, 8, 8, device="meta")
    for t in (torch.tensor(500, device="meta"), torch.tensor([0, 900], device="meta")):
        step = ours.step(meta, t, meta, eta=0.5)
        assert step.prev_sample.device.type == "meta"
        assert step.prev_sample.shape == meta.shape


def test_the_look_alike_is_the_same_scheduler():
    theirs = diffusers.DDIMScheduler(thresholding=True)
    ours = LookAlike(thresholding=True)
    for s in (theirs, ours):
        s.set_timesteps(8)
    for (gs, gp), (ws, wp) in zip(run_chain(ours, theirs.timesteps, 0.3, False),
                                  run_chain(theirs, theirs.timesteps, 0.3, False)):
        assert_close_to_diffusers(gs, ws)
        assert_close_to_diffusers(gp, wp)


@requires_cuda
@pytest.mark.parametrize("config", [dict(clip_sample=True),
                                    dict(thresholding=True, sample_max_value=1.5)],
                         ids=["clip", "thresholding"])
def test_cuda_graph_of_a_unet_and_ddim_steps_replays_the_eager_loop(config):
    # no host sync in the step: the whole loop, model and scheduler, is one
    # CUDA graph, replayed for new inputs with the eager loop's images
    unet = tiny_unet().cuda().eval()
    sched = DDIMScheduler(num_train_timesteps=100, **config)
    sched.set_timesteps(8, device="cuda")

    def loop(x):
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x).prev_sample
        return x

    gen = torch.Generator(device="cuda").manual_seed(0)
    inputs = [torch.randn(2, 3, 8, 8, device="cuda", generator=gen) for _ in range(2)]
    with torch.no_grad():
        static_x = inputs[0].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (tables to the GPU) off the default stream
            loop(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = loop(static_x)
        for x in inputs:
            static_x.copy_(x)
            graph.replay()
            torch.testing.assert_close(static_out, loop(x), rtol=1e-5, atol=1e-5)
