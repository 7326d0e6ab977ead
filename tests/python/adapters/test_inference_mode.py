"""Sampling under torch.inference_mode(), then training the same object: what
a training script does when it samples for a preview (lucidrains' sample()
is itself an inference_mode function). The tables each adapter caches on
first use must be normal tensors, since a training step's autograd saves
them, and an inference tensor cannot be saved. Before, every drop-in loss and
lucidrains' patched loss raised "Inference tensors cannot be saved for
backward" after a sampling call, and the diffusers scheduler's would have on
a GPU (its device copy of the tables; here the meta device stands in). The
gradients must also be those of an instance that never sampled."""
import copy

import pytest
import torch

import torch_ddpm
from helpers import TinyModel


def grads_after(train, sample=None):
    if sample is not None:
        with torch.inference_mode():
            sample()
    return train()


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
@pytest.mark.parametrize("spacing", [None, "10"], ids=["all-steps", "respaced"])
def test_the_drop_in_trains_after_sampling(loop, spacing):
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    def fresh():
        torch.manual_seed(0)
        return (make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.LEARNED_RANGE,
                     spacing=spacing), TinyModel(learned=True))

    def train(diffusion, model):
        torch.manual_seed(1)
        x = torch.randn(2, 2, 8, 8)
        diffusion.training_losses(model, x, torch.tensor([3, 7]))["loss"].mean().backward()
        return [p.grad for p in model.parameters()]

    diffusion, model = fresh()
    got = grads_after(lambda: train(diffusion, model),
                      lambda: getattr(diffusion, loop)(model, (2, 2, 8, 8)))
    want = train(*fresh())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_the_diffusers_scheduler_trains_after_a_step(scheduler, device):
    from torch_ddpm import fused_schedulers

    sched = getattr(fused_schedulers, scheduler)()
    sched.set_timesteps(10)
    x = torch.randn(2, 3, 8, 8, device=device)

    def train():
        w = torch.ones(2, 3, 8, 8, device=device, requires_grad=True)
        t = torch.tensor([3, 500], device=device)
        noisy = sched.add_noise(w * 2, x, t)
        loss = sched.training_loss(noisy, w, x, t).mean() + sched.get_velocity(w, x, t).sum()
        loss.backward()
        return w.grad

    got = grads_after(train, lambda: sched.step(x, sched.timesteps[0].to(device), x))
    assert got.shape == x.shape
    if device == "cpu":
        torch.testing.assert_close(got, train(), rtol=0, atol=0)


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
def test_a_diffusers_step_differentiates_after_a_step_under_inference_mode(scheduler):
    # what a step forms once and keeps (a timestep's [B] tensor, a clip bound)
    # is made outside inference mode: a later step with gradients saves it
    from torch_ddpm import fused_schedulers

    sched = getattr(fused_schedulers, scheduler)(clip_sample_range=0.5)
    sched.set_timesteps(10)
    x = torch.randn(2, 3, 4, 4)
    with torch.inference_mode():
        sched.step(torch.zeros_like(x), sched.timesteps[3], x)
    out = torch.zeros_like(x, requires_grad=True)
    sched.step(out, sched.timesteps[3], x).prev_sample.sum().backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


def test_lucidrains_trains_after_sample():
    pytest.importorskip("denoising_diffusion_pytorch",
                        reason="needs denoising-diffusion-pytorch (PyPI, torch 2.x)")
    from adapter_cases import make_lucidrains as make

    _, patched = make("pred_v", "cosine")
    fresh = copy.deepcopy(patched)

    def train(diffusion):
        torch.manual_seed(2)
        diffusion(torch.rand(2, 3, 8, 8)).backward()
        return [p.grad for p in diffusion.model.parameters()]

    got = grads_after(lambda: train(patched), lambda: patched.sample(batch_size=2))
    for g, w in zip(got, train(fresh)):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
