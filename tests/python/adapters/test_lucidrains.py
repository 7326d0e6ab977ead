"""torch_ddpm.patch() on lucidrains' denoising-diffusion-pytorch (the real
package from PyPI): training losses, the DDPM and DDIM sampling loops and
interpolate give what the unpatched instance gives for the same seeds, over
its objectives, schedules and settings."""
import copy
import random

import pytest
import torch

import torch_ddpm
from adapter_cases import (LUCIDRAINS_SAMPLING_T, LUCIDRAINS_SIZE, LUCIDRAINS_T,
                           make_lucidrains)
from torch_ddpm import lucidrains

ddp = pytest.importorskip(
    "denoising_diffusion_pytorch",
    reason="needs denoising-diffusion-pytorch (PyPI, torch 2.x; scripts/install_deps.sh)")

T, SAMPLING_T, SIZE = LUCIDRAINS_T, LUCIDRAINS_SAMPLING_T, LUCIDRAINS_SIZE
make = make_lucidrains


def run_everything(diffusion, images):
    """Loss, both sampling loops, sample() and interpolate, each from its own seed
    (torch's and Python's: self-conditioning draws from random.random)."""
    outs = {}
    for seed, (name, call) in enumerate((
        ("loss", lambda: diffusion(images).detach()),
        ("p_sample_loop", lambda: diffusion.p_sample_loop((2, 3, SIZE, SIZE))),
        ("ddim_sample", lambda: diffusion.ddim_sample((2, 3, SIZE, SIZE))),
        ("sample", lambda: diffusion.sample(batch_size=2)),
        ("interpolate", lambda: diffusion.interpolate(images[:2] * 2 - 1, images[2:] * 2 - 1,
                                                      t=5)),
    )):
        torch.manual_seed(seed)
        random.seed(3)
        outs[name] = call()
        # the same random numbers consumed: the generator is where it was
        outs[f"{name}, then the generator"] = torch.rand(3)
    return outs


def assert_same_results(original, patched):
    torch.manual_seed(0)
    images = torch.rand(4, 3, SIZE, SIZE)
    want = run_everything(original, images)
    got = run_everything(patched, images)
    for name in want:
        assert torch.isfinite(want[name]).all(), name
        # float64 coefficients against the original's float32 products
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("objective", ["pred_noise", "pred_x0", "pred_v"])
def test_objectives(objective):
    assert_same_results(*make(objective, "cosine"))


@pytest.mark.parametrize("beta_schedule", ["linear", "sigmoid"])
def test_schedules(beta_schedule):
    assert_same_results(*make("pred_noise", beta_schedule))


def test_self_condition_offset_noise_min_snr_and_deterministic_ddim():
    assert_same_results(*make("pred_v", "cosine", self_condition=True, offset_noise_strength=0.1,
                              min_snr_loss_weight=True, ddim_sampling_eta=0.0))


def test_immiscible_noise_and_no_auto_normalize():
    # the noise assignment stays the instance's own (scipy), before the fused q_sample
    assert_same_results(*make("pred_x0", "linear", immiscible=True, auto_normalize=False))


def test_the_operators_do_the_work():
    _, patched = make()
    for name in lucidrains.PATCHED_METHODS:
        assert getattr(patched, name).__func__ is getattr(lucidrains, f"_{name}"), name
    assert patched._ddpm_patched
    # the loss is diffusion_mse's (its autograd node), not F.mse_loss's
    loss = patched(torch.rand(2, 3, SIZE, SIZE))
    assert "DiffusionMse" in loss.grad_fn.next_functions[0][0].name()


def test_the_loss_without_reduction_and_its_gradients():
    # per-sample losses (loss_reduction="none") and the model's gradients
    original, patched = make("pred_v", "cosine", min_snr_loss_weight=True)
    images = torch.rand(4, 3, SIZE, SIZE)
    grads = []
    for diffusion in (original, patched):
        torch.manual_seed(5)
        losses = diffusion(images, loss_reduction="none")
        assert losses.shape == (4,)
        losses.sum().backward()
        grads.append([p.grad.clone() for p in diffusion.model.parameters()])
        if diffusion is original:
            want = losses.detach()
        else:
            torch.testing.assert_close(losses.detach(), want, rtol=1e-5, atol=1e-6)
    for g_patched, g_original in zip(*grads[::-1]):
        torch.testing.assert_close(g_patched, g_original, rtol=1e-4, atol=1e-6)


def test_tables_follow_the_buffers():
    # a new state dict (another schedule's buffers) is what the next call uses
    original, patched = make("pred_noise", "cosine")
    other, _ = make("pred_noise", "linear")
    patched.p_sample_loop((1, 3, SIZE, SIZE))  # the cosine tables, cached
    patched.load_state_dict(other.state_dict())
    assert_same_results(other, patched)


def test_an_unknown_objective_is_refused_by_name():
    original, _ = make()
    clone = copy.deepcopy(original)
    clone.objective = "pred_score"
    with pytest.raises(TypeError, match="objective 'pred_score'"):
        torch_ddpm.patch(clone)


def test_the_ddim_loop_shows_the_original_progress_bar(capsys):
    original, patched = make("pred_noise", "cosine")
    for diffusion in (original, patched):
        diffusion.ddim_sample((1, 3, SIZE, SIZE))
        err = capsys.readouterr().err
        assert "sampling loop time step" in err and f"{SAMPLING_T}/{SAMPLING_T}" in err


def test_the_patched_sampling_methods_run_under_inference_mode_as_the_originals():
    # the originals are decorated with torch.inference_mode(): their results are
    # inference tensors, and no autograd graph is built through the model
    original, patched = make("pred_noise", "cosine")
    x = torch.randn(2, 3, SIZE, SIZE)
    for diffusion in (original, patched):
        sample, x_start = diffusion.p_sample(x, 3)
        assert torch.is_inference(sample) and torch.is_inference(x_start)
        assert torch.is_inference(diffusion.p_sample_loop((1, 3, SIZE, SIZE)))
        assert torch.is_inference(diffusion.sample(batch_size=1))


def test_patch_refuses_the_classes_it_does_not_know():
    # GaussianDiffusion1D has other signatures (model_forward_kwargs, return_noise)
    # and no offset noise: refused by name before anything is swapped
    unet = ddp.Unet1D(dim=8, dim_mults=(1, 2), channels=2)
    one_d = ddp.GaussianDiffusion1D(unet, seq_length=16, timesteps=T)
    with pytest.raises(TypeError, match=r"GaussianDiffusion1D\.\w+ is denoising_diffusion_pytorch"
                                        r"\.denoising_diffusion_pytorch_1d\.GaussianDiffusion1D's"):
        torch_ddpm.patch(one_d)
    assert "p_sample" not in vars(one_d)
    # the package's other variants (a learned variance, weighted objectives,
    # classifier-free guidance) replace what the patch would replace or bypass
    from denoising_diffusion_pytorch import classifier_free_guidance as cfg
    from denoising_diffusion_pytorch.learned_gaussian_diffusion import LearnedGaussianDiffusion
    from denoising_diffusion_pytorch.weighted_objective_gaussian_diffusion import (
        WeightedObjectiveGaussianDiffusion)
    for variant in (
            LearnedGaussianDiffusion(ddp.Unet(dim=8, dim_mults=(1, 2), channels=3,
                                              learned_variance=True, flash_attn=False),
                                     image_size=SIZE, timesteps=T),
            WeightedObjectiveGaussianDiffusion(ddp.Unet(dim=8, dim_mults=(1, 2), channels=3,
                                                        out_dim=8, flash_attn=False),
                                               image_size=SIZE, timesteps=T),
            cfg.GaussianDiffusion(cfg.Unet(dim=8, num_classes=4, dim_mults=(1, 2), channels=3),
                                  image_size=SIZE, timesteps=T)):
        with pytest.raises(TypeError, match=rf"{type(variant).__name__}\.\w+ is "
                                            r"denoising_diffusion_pytorch\."):
            torch_ddpm.patch(variant)
    # a subclass overriding what the swapped methods reproduce (a guided
    # model_predictions) would be bypassed: refused too
    original, _ = make("pred_noise", "cosine")
    Guided = type("Guided", (type(original),), {
        "model_predictions": lambda self, x, t, *a, **k: type(original).model_predictions(
            self, x, t, *a, **k)})
    guided = copy.deepcopy(original)
    guided.__class__ = Guided
    with pytest.raises(TypeError, match=r"Guided.model_predictions .* bypass"):
        torch_ddpm.patch(guided)


def test_a_copy_of_a_patched_instance_is_patched_on_itself():
    # (lucidrains' instance itself does not pickle: its attention module holds
    # a torch.nn.attention backend enum; a deepcopy goes through the same
    # reduction of the bound methods as pickle)
    _, patched = make("pred_v", "cosine")
    back = copy.deepcopy(patched)
    assert back.p_sample.__self__ is back and back.p_sample.__func__ is lucidrains._p_sample
    for diffusion in (patched, back):
        torch.manual_seed(4)
        diffusion.result = diffusion.ddim_sample((2, 3, SIZE, SIZE))
    assert torch.equal(back.result, patched.result)
