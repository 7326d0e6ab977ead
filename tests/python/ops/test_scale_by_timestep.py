"""scale_by_timestep (out[b] = table[t[b]] * input[b]) and the one-gradient
backward passes built on it: q_sample, q_sample_philox and
posterior_mean_variance write only the gradients autograd asks for."""
import pytest
import torch

import reference as ref
from conftest import DEVICES, requires_torch2

T = 20
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 8e-3}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
@pytest.mark.parametrize("table_dtype", [torch.float64, torch.float32])
def test_against_float64_every_t(device, dtype, noncontiguous, table_dtype):
    table = ref.make_tables(T, device=device)["sqrt_alphas_cumprod"].to(table_dtype)
    t = torch.arange(T, device=device)  # every timestep, one sample each
    x = torch.randn(T, 3, 17, 5, device=device).to(dtype)
    if noncontiguous:
        x = torch.randn(T, 5, 17, 3, device=device).to(dtype).transpose(1, 3)
    got = torch.ops.ddpm.scale_by_timestep(x, t, table)
    want = table.double()[t].view(-1, 1, 1, 1) * x.double()
    assert got.dtype == dtype and got.shape == x.shape and got.is_contiguous()
    torch.testing.assert_close(got.double(), want, rtol=TOL[dtype], atol=TOL[dtype])
    # the same kernel as q_sample_backward's first output, so the same bits
    both = torch.ops.ddpm.q_sample_backward(x, t, table, table)
    assert torch.equal(got, both[0])


def q_sample_grads(x0_grad, noise_grad, device="cpu", dtype=torch.float64):
    tab = ref.make_tables(T, device=device)
    x0 = torch.randn(4, 3, 5, dtype=dtype, device=device, requires_grad=x0_grad)
    noise = torch.randn(4, 3, 5, dtype=dtype, device=device, requires_grad=noise_grad)
    t = torch.tensor([0, 1, 10, T - 1], device=device)
    out = torch.ops.ddpm.q_sample(x0, t, noise, tab["sqrt_alphas_cumprod"],
                                  tab["sqrt_one_minus_alphas_cumprod"])
    g = torch.randn_like(out)
    wrt = [v for v in (x0, noise) if v.requires_grad]
    grads = torch.autograd.grad(out, wrt, g)
    want = {"x0": tab["sqrt_alphas_cumprod"][t].view(-1, 1, 1) * g,
            "noise": tab["sqrt_one_minus_alphas_cumprod"][t].view(-1, 1, 1) * g}
    return grads, want


@pytest.mark.parametrize("device", DEVICES)
def test_q_sample_one_gradient(device):
    (gx,), want = q_sample_grads(True, False, device)
    torch.testing.assert_close(gx, want["x0"])
    (gn,), want = q_sample_grads(False, True, device)
    torch.testing.assert_close(gn, want["noise"])
    (gx, gn), want = q_sample_grads(True, True, device)
    torch.testing.assert_close(gx, want["x0"])
    torch.testing.assert_close(gn, want["noise"])


@pytest.mark.parametrize("device", DEVICES)
def test_q_sample_one_gradient_is_the_two_gradient_result(device):
    # same kernel, same rounding: bit for bit, also in float32
    torch.manual_seed(3)
    (gx1,), _ = q_sample_grads(True, False, device, torch.float32)
    torch.manual_seed(3)
    (gx2, _), _ = q_sample_grads(True, True, device, torch.float32)
    assert torch.equal(gx1, gx2)


@pytest.mark.parametrize("device", DEVICES)
def test_posterior_one_gradient(device):
    tab = ref.make_tables(T, device=device)
    t = torch.tensor([0, 1, 10, T - 1], device=device)
    for needs in ([True, False], [False, True], [True, True]):
        x0 = torch.randn(4, 6, dtype=torch.float64, device=device, requires_grad=needs[0])
        xt = torch.randn(4, 6, dtype=torch.float64, device=device, requires_grad=needs[1])
        mean, _, _ = torch.ops.ddpm.posterior_mean_variance(
            x0, xt, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])
        g = torch.randn_like(mean)
        wrt = [v for v, n in zip((x0, xt), needs) if n]
        grads = dict(zip([k for k, n in zip(("x0", "xt"), needs) if n],
                         torch.autograd.grad(mean, wrt, g)))
        if needs[0]:
            torch.testing.assert_close(grads["x0"], tab["posterior_mean_coef1"][t].view(-1, 1) * g)
        if needs[1]:
            torch.testing.assert_close(grads["xt"], tab["posterior_mean_coef2"][t].view(-1, 1) * g)


@pytest.mark.parametrize("device", DEVICES)
def test_q_sample_philox_gradient(device):
    tab = ref.make_tables(T, device=device)
    x0 = torch.randn(3, 4, 5, device=device, requires_grad=True)
    t = torch.tensor([0, 7, T - 1], device=device)
    xt, _ = torch.ops.ddpm.q_sample_philox(x0, t, 5, 8, tab["sqrt_alphas_cumprod"],
                                           tab["sqrt_one_minus_alphas_cumprod"])
    g = torch.randn_like(xt)
    (gx,) = torch.autograd.grad(xt, x0, g)
    want = tab["sqrt_alphas_cumprod"][t].view(-1, 1, 1).float() * g
    torch.testing.assert_close(gx, want)


def test_errors_name_the_argument():
    table = ref.make_tables(T)["sqrt_alphas_cumprod"]
    x = torch.randn(3, 4)
    t = torch.tensor([0, 5, T - 1])
    with pytest.raises(RuntimeError, match=r"scale_by_timestep: .*every t in \[0, 20\).*t\[1\] = 20"):
        torch.ops.ddpm.scale_by_timestep(x, torch.tensor([0, T, 1]), table)
    with pytest.raises(RuntimeError, match=r"scale_by_timestep: expected t to have shape \[3\]"):
        torch.ops.ddpm.scale_by_timestep(x, torch.tensor([0, 1]), table)
    with pytest.raises(RuntimeError, match=r"scale_by_timestep: .*table"):
        torch.ops.ddpm.scale_by_timestep(x, t, table.view(2, -1))
    with pytest.raises(RuntimeError, match=r"scale_by_timestep: .*input"):
        torch.ops.ddpm.scale_by_timestep(x.long(), t, table)
    assert torch.ops.ddpm.scale_by_timestep(torch.empty(0, 4), torch.empty(0, dtype=torch.long),
                                            table).shape == (0, 4)


def test_meta_shape():
    table = ref.make_tables(T, device="meta")["sqrt_alphas_cumprod"]
    x = torch.empty(3, 2, 5, device="meta")
    out = torch.ops.ddpm.scale_by_timestep(x, torch.empty(3, dtype=torch.long, device="meta"), table)
    assert out.shape == x.shape and out.device.type == "meta"


@requires_torch2
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    table = ref.make_tables(T, device=device)["sqrt_alphas_cumprod"]
    torch.library.opcheck(torch.ops.ddpm.scale_by_timestep.default,
                          (torch.randn(3, 2, 4, device=device), torch.tensor([0, 7, 19], device=device),
                           table))


def test_outputs_without_gradient_are_not_filled_with_zeros():
    # posterior_mean_variance's variance and q_sample_philox's noise have no
    # gradient: a loss on them alone gives no gradient (not a zero tensor
    # filled at x's shape), and a loss on the mean is unchanged by them
    tab = ref.make_tables(T)
    t = torch.tensor([0, 5, T - 1])
    x0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mean, var, logvar = torch.ops.ddpm.posterior_mean_variance(
        x0, xt, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
        tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    assert not var.requires_grad and not logvar.requires_grad
    (gx0,) = torch.autograd.grad((mean * 2).sum() + var.sum(), x0)
    torch.testing.assert_close(gx0, 2 * tab["posterior_mean_coef1"][t].view(-1, 1).expand(3, 4))
    xt2, noise = torch.ops.ddpm.q_sample_philox(x0.float().detach().requires_grad_(), t, 1, 0,
                                                tab["sqrt_alphas_cumprod"],
                                                tab["sqrt_one_minus_alphas_cumprod"])
    assert not noise.requires_grad and xt2.requires_grad
