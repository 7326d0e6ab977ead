"""Gradients beyond the registry's gradcheck of every operator and mode
(test_operators.py): the steps' gradcheck with the [-1, 1] clip active (data
kept clear of its kinks), one output's gradient alone, 16-bit backward
passes, and no double backward."""
import zlib

import pytest
import torch
from torch.autograd import gradcheck

import reference as ref
from conftest import DEVICES
from helpers import MEAN_TYPES, VAR_TYPES
from torch_ddpm.tables import step_tables

T = 50


def tables(device):
    return ref.make_tables(T, "linear", device)


def p_args(tab):
    return step_tables("p_sample", tab)


def t_all_classes(device):
    return torch.tensor([0, 1, T // 2, T - 1], device=device)


def test_only_the_posterior_mean_has_a_gradient():
    # (gradcheck of every operator is the registry's: test_operators.py)
    tab = tables("cpu")
    x0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(
        x0, x0, t_all_classes("cpu"), tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
        tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    assert mean.requires_grad and not var.requires_grad and not log_var.requires_grad


def model_output_for(x, mean_type, var_type, generator):
    """Model output whose pred_xstart lands beyond [-1, 1] on some elements
    (so the clip is active) but never within 1e-3 of the kink."""
    shape = list(x.shape)
    mean_half = torch.randn(shape, dtype=torch.float64, generator=generator) * 1.5
    if var_type in ref.LEARNED:
        var_half = torch.rand(shape, dtype=torch.float64, generator=generator) * 2 - 1
        return torch.cat([mean_half, var_half], dim=1)
    return mean_half


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
@pytest.mark.parametrize("clip", [True, False])
def test_p_sample_gradcheck(device, mean_type, var_type, clip):
    tab = tables(device)
    g = torch.Generator().manual_seed(zlib.crc32(f"{mean_type}{var_type}{clip}".encode()))
    x = torch.randn(4, 2, 3, dtype=torch.float64, generator=g)
    out = model_output_for(x, mean_type, var_type, g)
    noise = torch.randn(4, 2, 3, dtype=torch.float64, generator=g)
    t = t_all_classes("cpu")
    # keep pred_xstart away from the clip's kinks, where the derivative jumps
    pred = ref.p_sample(out, x, t, noise, ref.make_tables(T), mean_type, var_type, False)[1]
    assert ((pred.abs() - 1).abs() > 1e-3).all(), "pick another seed"
    if clip:
        assert (pred.abs() > 1).any() and (pred.abs() < 1).any(), "clip must bite on some"
    x, out, noise, t = (v.to(device) for v in (x, out, noise, t))
    x.requires_grad_(True)
    out.requires_grad_(True)

    def fn(o, xt):
        return torch.ops.ddpm.p_sample(o, xt, t, noise, *p_args(tab), mean_type, var_type, clip)

    assert gradcheck(fn, (out, x))


@pytest.mark.parametrize("device", DEVICES)
def test_p_sample_grad_of_one_output_only(device):
    """Only pred_xstart used: the sample's gradient is taken as zero."""
    tab = tables(device)
    x = torch.randn(4, 3, dtype=torch.float64, device=device, requires_grad=True)
    out = torch.randn(4, 3, dtype=torch.float64, device=device, requires_grad=True)
    noise = torch.randn(4, 3, dtype=torch.float64, device=device)
    t = t_all_classes(device)
    _, pred = torch.ops.ddpm.p_sample(out, x, t, noise, *p_args(tab), "epsilon", "fixed_small", False)
    pred.sum().backward()
    r = tab["sqrt_recip_alphas_cumprod"][t].view(-1, 1)
    rm1 = tab["sqrt_recipm1_alphas_cumprod"][t].view(-1, 1)
    torch.testing.assert_close(x.grad, r.expand_as(x))
    torch.testing.assert_close(out.grad, (-rm1).expand_as(out))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_runs_in_low_precision(dtype):
    tab = tables("cpu")
    x0 = torch.randn(4, 3, 8).to(dtype).requires_grad_(True)
    noise = torch.randn(4, 3, 8).to(dtype).requires_grad_(True)
    t = t_all_classes("cpu")
    out = torch.ops.ddpm.q_sample(x0, t, noise, tab["sqrt_alphas_cumprod"],
                                  tab["sqrt_one_minus_alphas_cumprod"])
    out.backward(torch.ones_like(out))
    assert x0.grad.dtype == dtype
    expected = tab["sqrt_alphas_cumprod"][t].view(-1, 1, 1).expand_as(x0).to(dtype)
    torch.testing.assert_close(x0.grad, expected)


def test_double_backward_is_an_error_not_a_silent_zero():
    tab = tables("cpu")
    x0 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = t_all_classes("cpu")
    out = torch.ops.ddpm.q_sample(x0, t, x0, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    (g,) = torch.autograd.grad((out**2).sum(), x0, create_graph=True)
    with pytest.raises(RuntimeError, match="not implemented"):
        g.sum().backward()
