"""torch_ddpm.diffusers.DDPMScheduler is a diffusers scheduler: from_config and
save/load both ways with diffusers' own, swapped into DDPMPipeline with one line
(the same images), and its schedules (laplace, sigmoid, zero terminal SNR)
step for step against diffusers."""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import assert_close_to_diffusers, saved_pipeline_config_without_us, tiny_unet

diffusers = pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
from torch_ddpm.diffusers import DDPMScheduler  # noqa: E402


def close(a, b):
    # zero terminal SNR: both sides NaN at the same places
    assert_close_to_diffusers(a, b, equal_nan=True)


def test_configs_travel_both_ways(tmp_path):
    theirs = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                                     variance_type="fixed_small_log", timestep_spacing="trailing")
    ours = DDPMScheduler.from_config(theirs.config)
    assert isinstance(ours, diffusers.SchedulerMixin)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(ours.config) == public(theirs.config)
    ours.save_pretrained(tmp_path / "ours")
    back = diffusers.DDPMScheduler.from_pretrained(tmp_path / "ours")
    assert back.config.prediction_type == "v_prediction"
    assert back.config.timestep_spacing == "trailing"
    theirs.save_pretrained(tmp_path / "theirs")
    again = DDPMScheduler.from_pretrained(tmp_path / "theirs")
    assert type(again) is DDPMScheduler and again.config.variance_type == "fixed_small_log"
    assert torch.equal(again.alphas_cumprod, theirs.alphas_cumprod)
    # a DDIM config (extra keys) loads too, as into diffusers' own
    ddim = diffusers.DDIMScheduler(beta_schedule="scaled_linear")
    assert DDPMScheduler.from_config(ddim.config).config.beta_schedule == "scaled_linear"


def test_one_line_swap_in_ddpm_pipeline_gives_the_same_images():
    unet = tiny_unet()
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(
        num_train_timesteps=100, variance_type="fixed_small"))
    pipe.set_progress_bar_config(disable=True)
    want = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=12,
                output_type="np").images
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, DDPMScheduler)
    got = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=12,
               output_type="np").images
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), rtol=0, atol=2e-4)


@pytest.mark.parametrize("pipeline", ["DDPMPipeline", "DDIMPipeline"])
def test_a_list_of_generators_gives_the_same_images(pipeline):
    # pipe(generator=[one per image]): the scheduler draws each image's noise
    # from its own generator, as diffusers' randn_tensor does
    from torch_ddpm.diffusers import DDIMScheduler

    ours = {"DDPMPipeline": DDPMScheduler, "DDIMPipeline": DDIMScheduler}[pipeline]
    pipe = getattr(diffusers, pipeline)(unet=tiny_unet(), scheduler=getattr(
        diffusers, ours.__name__)(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    kw = dict(eta=1.0) if pipeline == "DDIMPipeline" else {}

    def images():
        gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
        return torch.from_numpy(pipe(batch_size=3, generator=gens, num_inference_steps=6,
                                     output_type="np", **kw).images)

    want = images()
    pipe.scheduler = ours.from_config(pipe.scheduler.config)
    torch.testing.assert_close(images(), want, rtol=0, atol=2e-4)


@pytest.mark.parametrize("kw", [
    dict(beta_schedule="laplace"),
    dict(beta_schedule="sigmoid"),
    dict(beta_schedule="scaled_linear", rescale_betas_zero_snr=True, prediction_type="v_prediction"),
    dict(beta_schedule="linear", rescale_betas_zero_snr=True, prediction_type="sample",
         timestep_spacing="trailing"),
], ids=["laplace", "sigmoid", "zero-snr-v", "zero-snr-sample-trailing"])
def test_schedules_step_for_step(kw):
    theirs, ours = diffusers.DDPMScheduler(**kw), DDPMScheduler(**kw)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    theirs.set_timesteps(10)
    ours.set_timesteps(10)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)
    x_a = x_b = torch.randn(2, 3, 8, 8)
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    with torch.no_grad():
        for t in theirs.timesteps:
            a = theirs.step(net(x_a), t, x_a, generator=gen_a)
            b = ours.step(net(x_b), t, x_b, generator=gen_b)
            close(b.pred_original_sample, a.pred_original_sample)
            close(b.prev_sample, a.prev_sample)
            x_a, x_b = a.prev_sample, b.prev_sample
    assert torch.isfinite(x_a).all()
    x = torch.randn(3, 3, 4, 4)
    noise, t = torch.randn_like(x), torch.tensor([0, 500, 999])
    close(ours.add_noise(x, noise, t), theirs.add_noise(x, noise, t))


def test_without_diffusers_torch_ddpm_imports_and_the_adapter_says_what_to_install():
    code = ("import sys; sys.modules['diffusers'] = None\n"
            "import torch_ddpm, torch_ddpm.fused_schedulers\n"
            "try:\n    import torch_ddpm.diffusers\nexcept ImportError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install diffusers" in done.stdout


@pytest.mark.parametrize("pipeline", ["DDPMPipeline", "DDIMPipeline"])
def test_a_saved_pipeline_loads_with_plain_diffusers_and_ours_back_in_one_line(pipeline,
                                                                               tmp_path):
    # Saved after the documented swap, a pipeline records diffusers' own
    # scheduler: another process, without torch_ddpm, loads it as diffusers'
    # with the same config (a pipeline pushed to a hub loads for everyone).
    from torch_ddpm import diffusers as ours_module

    name = pipeline.replace("Pipeline", "Scheduler")
    pipe = getattr(diffusers, pipeline)(unet=tiny_unet(), scheduler=getattr(diffusers, name)(
        num_train_timesteps=100, beta_schedule="scaled_linear", clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = getattr(ours_module, name).from_config(pipe.scheduler.config)
    config = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
    pipe.save_pretrained(tmp_path)
    assert saved_pipeline_config_without_us(tmp_path, pipeline, name) == \
        json.loads(json.dumps(config))
    # ours back: the same one line as the first swap, after from_pretrained
    loaded = getattr(diffusers, pipeline).from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    loaded.scheduler = getattr(ours_module, name).from_config(loaded.scheduler.config)
    assert type(loaded.scheduler) is getattr(ours_module, name)
    kw = dict(generator=torch.Generator().manual_seed(2), num_inference_steps=5,
              output_type="np", batch_size=1)
    torch.testing.assert_close(torch.from_numpy(loaded(**kw).images),
                               torch.from_numpy(pipe(**{**kw, "generator":
                                                        torch.Generator().manual_seed(2)}).images),
                               rtol=0, atol=0)


def test_our_scheduler_pickles_as_ours():
    import pickle

    from torch_ddpm.diffusers import DDIMScheduler

    for cls in (DDPMScheduler, DDIMScheduler):
        back = pickle.loads(pickle.dumps(cls(num_train_timesteps=50)))
        assert type(back) is cls and back.config.num_train_timesteps == 50
