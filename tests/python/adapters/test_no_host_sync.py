"""No host synchronization inside the schedulers' step, add_noise,
get_velocity and training_loss, nor in the drop-in's thresholded steps: a
CUDA sampling loop can run ahead of the GPU and be captured in a CUDA graph.
Shown here without a GPU: the calls run on meta tensors (no values) under
helpers.NoHostSync, which fails on a host read of a device value, a
data-dependent shape and a blocking host-to-device copy (the last of which
meta tensors alone would not show). The tables are moved to the device once,
by a first call outside the mode, as a warm-up before a graph capture."""
import pytest
import torch

import torch_ddpm
from conftest import TORCH_2
from helpers import NoHostSync, TinyModel
from torch_ddpm.fused_schedulers import DDIMScheduler, DDPMScheduler

META = torch.device("meta")
# thresholding's quantile selects with kthvalue, which has a meta kernel from torch 2
meta_kthvalue = pytest.mark.skipif(not TORCH_2, reason="torch 1.13 has no meta kernel for "
                                   "kthvalue (thresholding's quantile)")


def test_the_mode_sees_each_kind_of_sync():
    x = torch.empty(3, device=META)
    for sync in (lambda: x.sum().item(), lambda: x.nonzero(),
                 lambda: x * torch.tensor([2.0]).to(META),
                 lambda: x.copy_(torch.ones(3)),
                 lambda: torch.tensor([1, 2], device=META),
                 lambda: torch.as_tensor(5, device=META)):
        with pytest.raises(AssertionError, match="a host sync"):
            with NoHostSync():
                sync()
    with NoHostSync():  # a host scalar as a kernel argument is no copy
        x * 2.0 + torch.tensor(3.0) + torch.as_tensor(x, device=META)


CONFIGS = [
    dict(),
    pytest.param(dict(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
                 marks=meta_kthvalue, id="thresholding"),
    dict(clip_sample_range=2.0, prediction_type="v_prediction"),
    dict(clip_sample=False, prediction_type="sample"),
]
TIMESTEPS = [torch.tensor(500), torch.tensor(0), torch.tensor([0, 900])]


def in_the_mode(call):
    call()  # the warm-up: the tables go to the device
    with NoHostSync():
        return call()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("variance_type", ["fixed_small", "learned", "learned_range"])
def test_ddpm_step_add_noise_velocity_and_loss(config, variance_type):
    sched = DDPMScheduler(variance_type=variance_type, **config)
    sched.set_timesteps(10)
    sample = torch.empty(2, 3, 8, 8, device=META)
    out = torch.empty(2, 6 if variance_type != "fixed_small" else 3, 8, 8, device=META)
    for t in TIMESTEPS:
        t = t.to(META)
        step = in_the_mode(lambda: sched.step(out, t, sample))
        assert step.prev_sample.shape == sample.shape and step.prev_sample.device == META
    t = torch.tensor([3, 700], device=META)
    in_the_mode(lambda: sched.add_noise(sample, sample, t))
    in_the_mode(lambda: sched.get_velocity(sample, sample, t))
    in_the_mode(lambda: sched.training_loss(sample, sample, sample, t))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("eta,use_clipped", [(0.0, False), (0.5, True), (1.0, False)])
def test_ddim_step(config, eta, use_clipped):
    sched = DDIMScheduler(**config)
    sched.set_timesteps(10)
    sample = torch.empty(2, 3, 8, 8, device=META)
    for t in TIMESTEPS:
        t = t.to(META)
        step = in_the_mode(lambda: sched.step(sample, t, sample, eta=eta,
                                              use_clipped_model_output=use_clipped))
        assert step.prev_sample.shape == sample.shape and step.prev_sample.device == META


@meta_kthvalue
def test_the_thresholding_bound():
    x = torch.empty(3, 4, 5, device=META)
    for ratio in (0.0, 0.3, 0.995, 1.0):
        bound = in_the_mode(lambda: torch_ddpm.dynamic_threshold_bound(x, ratio, 1.5))
        assert bound.shape == (3,) and bound.device == META


@pytest.mark.parametrize("step_name", ["p_sample", "ddim_sample"])
@pytest.mark.parametrize("clip", [True, pytest.param(torch_ddpm.DynamicThreshold(0.9, 1.5),
                                                     marks=meta_kthvalue, id="threshold")],
                         ids=["clip", "threshold"])
def test_the_drop_in_steps(step_name, clip):
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE)
    model = TinyModel(learned=True).to(META)
    x = torch.empty(2, 2, 8, 8, device=META)
    t = torch.tensor([39, 1], device=META)
    out = in_the_mode(lambda: getattr(diffusion, step_name)(model, x, t, clip_denoised=clip))
    assert out["sample"].shape == x.shape


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop",
                                  "p_sample_loop_progressive", "ddim_sample_loop_progressive"])
@pytest.mark.parametrize("spacing", [None, "10"], ids=["all-steps", "respaced"])
def test_the_drop_in_sampling_loops(loop, spacing):
    # each step's timesteps are filled on the device, and a respaced chain's
    # model wrapper maps them through a table kept there (improved-diffusion
    # builds both from Python lists per step: a blocking copy each)
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.FIXED_SMALL,
                     rescale=True, spacing=spacing)
    model = TinyModel().to(META)

    def run():
        result = getattr(diffusion, loop)(model, (2, 2, 4, 4), device=META)
        if loop.endswith("progressive"):
            for result in result:
                pass
            result = result["sample"]
        return result

    assert in_the_mode(run).device == META
