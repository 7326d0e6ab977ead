"""The out= variants: same values as the functional ops, in place allowed,
bad outputs refused, no autograd."""
import pytest
import torch

import reference as ref
from conftest import DEVICES

T = 100


def step_tables(tab):
    return (tab["sqrt_recip_alphas_cumprod"], tab["sqrt_recipm1_alphas_cumprod"],
            tab["posterior_mean_coef1"], tab["posterior_mean_coef2"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_out_matches_functional_and_in_place(device, dtype):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(4, 3, 5, device=device).to(dtype)
    eps, noise = torch.randn_like(x), torch.randn_like(x)
    t = torch.tensor([0, 1, 50, 99], device=device)
    qa = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    out = torch.full_like(x, float("nan"))
    res = torch.ops.ddpm.q_sample.out(x, t, noise, tab["sqrt_alphas_cumprod"],
                                      tab["sqrt_one_minus_alphas_cumprod"], out=out)
    assert res.data_ptr() == out.data_ptr() and torch.equal(out, qa)

    p_args = (*step_tables(tab), tab["posterior_log_variance_clipped"], tab["betas"])
    fs, fp = torch.ops.ddpm.p_sample(eps, x, t, noise, *p_args, "epsilon", "fixed_small", True)
    s, p = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    torch.ops.ddpm.p_sample.out(eps, x, t, noise, *p_args, "epsilon", "fixed_small", True,
                                sample=s, pred_xstart=p)
    assert torch.equal(s, fs) and torch.equal(p, fp)
    x_in_place = x.clone()
    torch.ops.ddpm.p_sample.out(eps, x_in_place, t, noise, *p_args, "epsilon", "fixed_small", True,
                                sample=x_in_place, pred_xstart=p)
    assert torch.equal(x_in_place, fs)

    post_args = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                 tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    fm, fv, flv = torch.ops.ddpm.posterior_mean_variance(eps, x, t, *post_args)
    mean = torch.full_like(x, float("nan"))
    m, v, lv = torch.ops.ddpm.posterior_mean_variance.out(eps, x, t, *post_args, mean=mean)
    assert m.data_ptr() == mean.data_ptr() and torch.equal(mean, fm)
    assert torch.equal(v, fv) and torch.equal(lv, flv) and v.shape == x.shape
    x_in_place = x.clone()
    torch.ops.ddpm.posterior_mean_variance.out(eps, x_in_place, t, *post_args, mean=x_in_place)
    assert torch.equal(x_in_place, fm)

    d_args = (*step_tables(tab), tab["alphas_cumprod"], tab["alphas_cumprod_prev"])
    ds, dp = torch.ops.ddpm.ddim_sample(eps, x, t, noise, *d_args, 0.3)
    torch.ops.ddpm.ddim_sample.out(eps, x, t, noise, *d_args, 0.3, sample=s, pred_xstart=p)
    assert torch.equal(s, ds) and torch.equal(p, dp)


def test_bad_outputs_refused():
    tab = ref.make_tables(T)
    x = torch.randn(4, 6)
    t = torch.tensor([0, 1, 50, 99])
    sa, s1ma = tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]
    with pytest.raises(RuntimeError, match=r"expected out to have shape \[4, 6\]"):
        torch.ops.ddpm.q_sample.out(x, t, x, sa, s1ma, out=torch.empty(4, 5))
    with pytest.raises(RuntimeError, match=r"expected out to have dtype Float"):
        torch.ops.ddpm.q_sample.out(x, t, x, sa, s1ma, out=torch.empty(4, 6, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"expected out \(an out= argument\) to be contiguous"):
        torch.ops.ddpm.q_sample.out(x, t, x, sa, s1ma, out=torch.empty(6, 4).t())
    with pytest.raises(RuntimeError, match="refer to a single memory location"):
        big = torch.randn(5, 6)
        torch.ops.ddpm.q_sample.out(big[:4], t, x, sa, s1ma, out=big[1:])
    post_args = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                 tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    with pytest.raises(RuntimeError, match=r"posterior_mean_variance: expected mean to have shape \[4, 6\]"):
        torch.ops.ddpm.posterior_mean_variance.out(x, x, t, *post_args, mean=torch.empty(4, 5))
    with pytest.raises(RuntimeError, match=r"expected mean \(an out= argument\) to be contiguous"):
        torch.ops.ddpm.posterior_mean_variance.out(x, x, t, *post_args, mean=torch.empty(6, 4).t())
    p_args = (*step_tables(tab), tab["posterior_log_variance_clipped"], tab["betas"])
    s = torch.empty_like(x)
    with pytest.raises(RuntimeError, match="sample and pred_xstart to be different tensors"):
        torch.ops.ddpm.p_sample.out(x, x, t, x, *p_args, sample=s, pred_xstart=s)


def test_out_variants_do_not_take_gradients():
    tab = ref.make_tables(T)
    x = torch.randn(4, 6, requires_grad=True)
    t = torch.tensor([0, 1, 50, 99])
    out = torch.empty(4, 6)
    with pytest.raises(RuntimeError):
        torch.ops.ddpm.q_sample.out(x, t, x, tab["sqrt_alphas_cumprod"],
                                    tab["sqrt_one_minus_alphas_cumprod"], out=out).sum().backward()


def test_out_on_meta():
    tab = ref.make_tables(T, device="meta")
    x = torch.empty(4, 6, device="meta")
    t = torch.empty(4, dtype=torch.long, device="meta")
    out = torch.empty(4, 6, device="meta")
    res = torch.ops.ddpm.q_sample.out(x, t, x, tab["sqrt_alphas_cumprod"],
                                      tab["sqrt_one_minus_alphas_cumprod"], out=out)
    assert res.shape == (4, 6) and res.device.type == "meta"
    m, v, lv = torch.ops.ddpm.posterior_mean_variance.out(
        x, x, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"], tab["posterior_variance"],
        tab["posterior_log_variance_clipped"], mean=out)
    assert m.shape == v.shape == lv.shape == (4, 6) and v.device.type == "meta"
