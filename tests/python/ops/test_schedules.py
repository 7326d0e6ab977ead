"""The schedule tables against their derivation (docs/math.md)."""
import math

import pytest
import torch

from torch_ddpm.schedules import (
    DiffusionSchedule, betas_for_alpha_bar, cosine_betas, get_named_beta_schedule,
    linear_betas, schedule_tables,
)


def test_linear_and_cosine():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    b = linear_betas(250)  # scaled by 1000/T
    assert b[0].item() == pytest.approx(4e-4) and b[-1].item() == pytest.approx(0.08)
    c = cosine_betas(1000)
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert c[10].item() == pytest.approx(1 - f(11 / 1000) / f(10 / 1000), rel=1e-12)
    assert c.max().item() == pytest.approx(0.999)  # clipped at max_beta
    with pytest.raises(NotImplementedError):
        get_named_beta_schedule("quadratic", 10)


def test_user_betas_and_validation():
    tabs = schedule_tables([0.1, 0.2, 0.3])
    assert tabs["alphas_cumprod"][-1].item() == pytest.approx(0.9 * 0.8 * 0.7)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        schedule_tables([0.1, 0.0])
    with pytest.raises(ValueError, match="1-D"):
        schedule_tables([[0.1]])


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_posterior_is_the_conditional_of_the_joint_gaussian(name):
    """Condition the joint Gaussian of (x_{t-1}, x_t) given x_0 and compare."""
    tabs = schedule_tables(get_named_beta_schedule(name, 1000))
    abar, abar_prev = tabs["alphas_cumprod"], tabs["alphas_cumprod_prev"]
    alpha = 1 - tabs["betas"]
    # x_{t-1} = sqrt(abar_prev) x0 + e1, var(e1) = 1 - abar_prev
    # x_t = sqrt(alpha) x_{t-1} + sqrt(beta) e2
    var_prev = 1 - abar_prev
    cov = alpha.sqrt() * var_prev
    var_t = 1 - abar
    cond_var = var_prev - cov**2 / var_t
    # mean = sqrt(abar_prev) x0 + cov/var_t (x_t - sqrt(abar) x0)
    coef2 = cov / var_t
    coef1 = abar_prev.sqrt() - coef2 * abar.sqrt()
    torch.testing.assert_close(tabs["posterior_variance"], cond_var, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(tabs["posterior_mean_coef1"], coef1, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(tabs["posterior_mean_coef2"], coef2, rtol=1e-9, atol=1e-12)
    # The published shortcut that drops sqrt(alpha_t) is not the posterior.
    wrong = tabs["betas"] * var_prev / (tabs["betas"] + var_prev)
    assert not torch.allclose(wrong[1:], tabs["posterior_variance"][1:], rtol=1e-3)
    assert tabs["posterior_variance"][0].item() == 0.0
    assert tabs["posterior_log_variance_clipped"][0] == tabs["posterior_log_variance_clipped"][1]


def noise_coefficient(a, b):
    """Unrolled x_t = (a_t...a_1) x_0 + s_t eps: s_t^2 = a_t^2 s_{t-1}^2 + b_t^2."""
    s2 = torch.zeros(())
    s2 = s2.double()
    prod = torch.ones((), dtype=torch.float64)
    for at, bt in zip(a, b):
        s2 = at**2 * s2 + bt**2
        prod = prod * at
    return s2.sqrt().item(), prod.item()


def test_only_squared_weighting_drives_noise_to_one():
    betas = linear_betas(1000)
    s, prod = noise_coefficient((1 - betas).sqrt(), betas.sqrt())
    assert prod < 1e-2 and s == pytest.approx(1.0, abs=1e-4)
    assert s == pytest.approx(math.sqrt(1 - schedule_tables(betas)["alphas_cumprod"][-1].item()))
    s_sum, prod_sum = noise_coefficient(1 - betas, betas)  # a + b = 1
    assert prod_sum < 1e-2 and abs(s_sum - 1) > 0.1
    s_eq, _ = noise_coefficient(betas, betas)  # a = b
    assert abs(s_eq - 1) > 0.1


def test_module_keeps_float64_and_moves():
    sched = DiffusionSchedule(cosine_betas(10))
    assert sched.num_timesteps == 10
    assert all(buf.dtype == torch.float64 for buf in sched.buffers())
    meta = sched.to("meta")
    assert meta.betas.device.type == "meta"


def test_betas_for_alpha_bar_matches_cosine():
    f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert torch.equal(betas_for_alpha_bar(50, f), cosine_betas(50))
