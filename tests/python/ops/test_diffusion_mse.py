"""diffusion_mse beyond the generic operator checks (test_operators.py): the
shapes only it has (a channel slice read in place, samples of several tiles),
its result for any thread count, its gradients in every input, its errors,
and the front end's names for the targets."""
import pytest
import torch

import reference as ref
import torch_ddpm
from conftest import DEVICES, requires_torch2
from helpers import assert_within_rounding

T = 40


def tables(device="cpu"):
    return ref.make_tables(T, "cosine", device)


def inputs(shape, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out, x0, noise = (torch.randn(shape, generator=g).to(device=device, dtype=dtype)
                      for _ in range(3))
    t = torch.randint(0, T, (shape[0],), generator=g).to(device)
    return out, x0, noise, t


def call(out, x0, noise, t, tab, weight=None, target="epsilon"):
    return torch.ops.ddpm.diffusion_mse(out, x0, noise, t, tab["sqrt_alphas_cumprod"],
                                        tab["sqrt_one_minus_alphas_cumprod"], weight, target)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("target", ["epsilon", "start_x", "v"])
def test_the_mean_half_of_a_learned_variance_output_is_read_in_place(device, target):
    # improved-diffusion splits [B, 2C, ...] into the mean and variance halves:
    # the loss of the slice equals that of its copy, and so does its gradient
    tab = tables(device)
    _, x0, noise, t = inputs((3, 4, 5, 6), device)
    both = torch.randn(3, 8, 5, 6, device=device, requires_grad=True)
    mean_half = torch.split(both, 4, dim=1)[0]
    assert not mean_half.is_contiguous()
    loss = call(mean_half, x0, noise, t, tab, target=target)
    copy = mean_half.detach().contiguous().requires_grad_()
    want = call(copy, x0, noise, t, tab, target=target)
    assert torch.equal(loss, want)
    loss.sum().backward()
    want.sum().backward()
    assert torch.equal(both.grad[:, :4], copy.grad)
    assert torch.equal(both.grad[:, 4:], torch.zeros_like(both.grad[:, 4:]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_samples_of_several_tiles(device, dtype):
    # 8192 elements per tile: sample sizes around and past it, against float64
    tab = tables(device)
    weight = torch.linspace(0.5, 2.0, T, dtype=torch.float64, device=device)
    for numel in (8191, 8192, 8193, 3 * 8192 + 5):
        out, x0, noise, t = inputs((3, numel), device, dtype, seed=numel)
        want, mag = ref.diffusion_mse(out, x0, noise, t, tab, weight, "v")
        assert_within_rounding(call(out, x0, noise, t, tab, weight, "v"), want, mag,
                               torch.float32, f"{numel} elements")


def test_the_loss_does_not_depend_on_the_thread_count():
    tab = tables()
    out, x0, noise, t = inputs((2, 5 * 8192 + 3))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(call(out, x0, noise, t, tab, target="v"))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)


@pytest.mark.parametrize("target", ["epsilon", "start_x", "v"])
def test_gradients_of_every_input_against_autograd_in_float64(target):
    # gradcheck (test_operators.py) checks the derivatives numerically; here
    # the gradients of all three inputs equal autograd's of the formula, and
    # an input the target does not use gets None, as autograd gives
    tab = tables()
    weight = torch.rand(T, dtype=torch.float64)
    base = inputs((4, 3, 5), dtype=torch.float64)
    t = base[3]
    ours = [x.clone().requires_grad_() for x in base[:3]]
    theirs = [x.clone().requires_grad_() for x in base[:3]]
    call(*ours, t, tab, weight, target).sum().backward()
    a = ref.per_sample(tab["sqrt_alphas_cumprod"], t, 3)
    b = ref.per_sample(tab["sqrt_one_minus_alphas_cumprod"], t, 3)
    out, x0, noise = theirs
    want = {"epsilon": noise, "start_x": x0, "v": a * noise - b * x0}[target]
    (weight[t] * ((out - want) ** 2).mean(dim=(1, 2))).sum().backward()
    for name, o, w in zip(("model_output", "x_start", "noise"), ours, theirs):
        if w.grad is None:
            assert o.grad is None, name
        else:
            torch.testing.assert_close(o.grad, w.grad, rtol=1e-12, atol=1e-15, msg=name)


def test_empty_samples_give_nan_and_an_empty_batch_nothing():
    tab = tables()
    t = torch.tensor([0, 1])
    empty = torch.zeros(2, 0)
    assert torch.isnan(call(empty, empty, empty, t, tab)).all()
    nothing = torch.zeros(0, 3)
    assert call(nothing, nothing, nothing, t[:0], tab).shape == (0,)


def test_errors_name_the_argument():
    tab = tables()
    out, x0, noise, t = inputs((2, 3))
    with pytest.raises(RuntimeError, match=r"ddpm\.diffusion_mse: expected target to be one of"):
        call(out, x0, noise, t, tab, target="score")
    with pytest.raises(RuntimeError, match="not fused: compute it with posterior_mean_variance"):
        call(out, x0, noise, t, tab, target="previous_x")
    with pytest.raises(RuntimeError, match=r"expected model_output to have shape \[2, 3\]"):
        call(out[:, :2], x0, noise, t, tab)
    with pytest.raises(RuntimeError, match=r"expected weight to have length 40"):
        call(out, x0, noise, t, tab, weight=torch.ones(T + 1, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"expected weight to have dtype Double"):
        call(out, x0, noise, t, tab, weight=torch.ones(T))
    with pytest.raises(RuntimeError, match=r"expected every t in \[0, 40\).*t\[1\] = 40"):
        call(out, x0, noise, torch.tensor([0, T]), tab)
    with pytest.raises(RuntimeError, match=r"diffusion_mse: weight requires grad.*weight\.detach\(\)"):
        call(out.requires_grad_(), x0, noise, t, tab,
             weight=torch.ones(T, dtype=torch.float64, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"diffusion_mse_backward: expected grad to be the "
                                           r"loss's gradient, a Float tensor of shape \[2\]"):
        torch.ops.ddpm.diffusion_mse_backward(
            torch.ones(2, dtype=torch.float64), out.detach(), x0, noise, t,
            tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"], None, "epsilon", None)


def test_no_double_backward():
    tab = tables()
    out, x0, noise, t = inputs((2, 3), dtype=torch.float64)
    out.requires_grad_()
    (g,) = torch.autograd.grad(call(out, x0, noise, t, tab).sum(), out, create_graph=True)
    with pytest.raises(RuntimeError, match="derivative for .*diffusion_mse_backward"):
        g.sum().backward()


@pytest.mark.parametrize("name,target", [
    ("epsilon", "epsilon"), ("sample", "start_x"), ("v_prediction", "v"),
    ("pred_noise", "epsilon"), ("pred_x0", "start_x"), ("pred_v", "v"),
    (torch_ddpm.ModelMeanType.START_X, "start_x"), (torch_ddpm.ModelMeanType.V, "v")])
def test_the_front_end_takes_every_codebase_name_for_the_target(name, target):
    tab = tables()
    out, x0, noise, t = inputs((3, 2, 4))
    got = torch_ddpm.diffusion_mse(out, x0, noise, t, tab["sqrt_alphas_cumprod"],
                                   tab["sqrt_one_minus_alphas_cumprod"], target=name)
    assert torch.equal(got, call(out, x0, noise, t, tab, target=target))


def test_training_losses_take_their_mse_from_the_operator():
    # the demo's configuration: a learned range (the mean half of the output)
    d = torch_ddpm.GaussianDiffusion(
        betas=torch_ddpm.get_named_beta_schedule("cosine", T),
        model_mean_type=torch_ddpm.ModelMeanType.EPSILON,
        model_var_type=torch_ddpm.ModelVarType.LEARNED_RANGE,
        loss_type=torch_ddpm.LossType.RESCALED_MSE)
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    terms = d.training_losses(lambda x, t: conv(x), torch.randn(3, 2, 4, 4),
                              torch.tensor([0, 5, T - 1]))
    assert "DiffusionMse" in terms["mse"].grad_fn.name()


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_the_diffusers_style_scheduler_gives_the_training_loss_of_its_scripts(prediction_type):
    # diffusers' train_text_to_image.py: the target of the prediction type,
    # F.mse_loss(pred.float(), target.float(), reduction="none"), the mean over
    # all but the batch, times the min-SNR weight of t
    from torch_ddpm.fused_schedulers import DDPMScheduler

    sched = DDPMScheduler(prediction_type=prediction_type)
    latents, noise, pred = (torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(i))
                            for i in range(3))
    timesteps = torch.tensor([0, 10, 500, 999])
    weight = torch_ddpm.loss_weights(sched, "min_snr", gamma=5.0, prediction=prediction_type)
    target = {"epsilon": noise, "sample": latents,
              "v_prediction": sched.get_velocity(latents, noise, timesteps)}[prediction_type]
    pred = pred.bfloat16()  # as autocast gives it
    want = torch.nn.functional.mse_loss(pred.double(), target.double(), reduction="none")
    want = want.mean(dim=(1, 2, 3)) * weight[timesteps]
    got = sched.training_loss(pred, latents, noise, timesteps, weight)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-7)


@requires_torch2
def test_compile_fullgraph_and_export_of_a_training_step_with_the_fused_loss():
    # the Meta kernels and the autograd registration under dynamo / AOT autograd,
    # with an offset noise and a weight table; and torch.export of the loss
    torch._dynamo.reset()
    tab = tables()
    a, b = tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]
    weight = torch.linspace(0.5, 2.0, T, dtype=torch.float64)
    net = torch.nn.Conv2d(3, 3, 3, padding=1)

    def train_step(x0, t, noise, offset):
        x_t = torch.ops.ddpm.q_sample(x0, t, noise, a, b, offset)
        return torch.ops.ddpm.diffusion_mse(net(x_t), x0, noise, t, a, b, weight, "v",
                                            offset).mean()

    x0, noise = torch.randn(4, 3, 6, 6), torch.randn(4, 3, 6, 6)
    offset = 0.1 * torch.randn(4, 3)
    t = torch.tensor([0, 5, 20, T - 1])
    want = train_step(x0, t, noise, offset)
    want.backward()
    want_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    loss = torch.compile(train_step, fullgraph=True, backend="aot_eager")(x0, t, noise, offset)
    loss.backward()
    torch.testing.assert_close(loss, want)
    for g, w in zip((p.grad for p in net.parameters()), want_grads):
        torch.testing.assert_close(g, w)
    exported = torch.export.export(_LossModule(a, b, weight), (net(x0).detach(), x0, noise, t))
    assert "ddpm.diffusion_mse" in str(exported.graph)


class _LossModule(torch.nn.Module):
    def __init__(self, a, b, weight):
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.register_buffer("weight", weight)

    def forward(self, out, x0, noise, t):
        return torch.ops.ddpm.diffusion_mse(out, x0, noise, t, self.a, self.b, self.weight, "v")


def test_the_front_end_compares_a_16_bit_output_with_float32_targets_in_float32():
    # autocast's case: the model's output bfloat16, the data and noise float32
    tab = tables()
    out, x0, noise, t = inputs((3, 2, 4))
    a, b = tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]
    got = torch_ddpm.diffusion_mse(out.bfloat16(), x0, noise, t, a, b, target="v")
    assert torch.equal(got, call(out.bfloat16().float(), x0, noise, t, tab, target="v"))
    with pytest.raises(RuntimeError, match=r"expected model_output to have dtype Float like "
                                           r"x_start, got BFloat16"):
        call(out.bfloat16(), x0, noise, t, tab)
