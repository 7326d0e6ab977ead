"""Bad input: a RuntimeError naming the argument and what was expected."""
import pytest
import torch

import reference as ref

T = 10


@pytest.fixture
def tab():
    return ref.make_tables(T, "cosine")


def q(tab, x0, t, noise, sa=None, s1ma=None):
    return torch.ops.ddpm.q_sample(x0, t, noise,
                                   tab["sqrt_alphas_cumprod"] if sa is None else sa,
                                   tab["sqrt_one_minus_alphas_cumprod"] if s1ma is None else s1ma)


def p(tab, out, x, t, noise, mean_type="epsilon", var_type="fixed_small", **override):
    names = ["sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
             "posterior_mean_coef2", "posterior_log_variance_clipped", "betas"]
    tables = [override.get(n, tab[n]) for n in names]
    return torch.ops.ddpm.p_sample(out, x, t, noise, *tables, mean_type, var_type, True)


X = torch.randn(3, 2, 4)
T3 = torch.tensor([0, 4, 9])


@pytest.mark.parametrize("bad_t,match", [
    (torch.tensor([0, 4, 10]), r"every t in \[0, 10\).*t\[2\] = 10"),
    (torch.tensor([-1, 4, 9]), r"every t in \[0, 10\).*t\[0\] = -1"),
    (torch.tensor([0, 4, 9], dtype=torch.int32), r"t to be an int64 tensor, got Int"),
    (torch.tensor([0.0, 4, 9]), r"t to be an int64 tensor, got Float"),
    (torch.tensor([0, 4]), r"t to have shape \[3\]"),
    (torch.tensor([[0, 4, 9]]), r"t to have shape \[3\]"),
    (torch.tensor(3), r"t to have shape \[3\]"),
])
def test_bad_timesteps(tab, bad_t, match):
    with pytest.raises(RuntimeError, match="ddpm.q_sample: expected " + match):
        q(tab, X, bad_t, X)
    with pytest.raises(RuntimeError, match="ddpm.p_sample: expected " + match):
        p(tab, X, X, bad_t, X)
    with pytest.raises(RuntimeError, match="ddpm.posterior_mean_variance: expected " + match):
        torch.ops.ddpm.posterior_mean_variance(
            X, X, bad_t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])


def test_shape_mismatches(tab):
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: expected noise to have shape \[3, 2, 4\] like x_start"):
        q(tab, X, T3, torch.randn(3, 2, 5))
    with pytest.raises(RuntimeError, match=r"ddpm.posterior_mean_variance: expected x_t to have shape"):
        torch.ops.ddpm.posterior_mean_variance(
            X, torch.randn(3, 4, 2), T3, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    with pytest.raises(RuntimeError, match=r"ddpm.p_sample: expected model_output to have shape \[3, 2, 4\] like x_t"):
        p(tab, torch.randn(3, 4, 4), X, T3, X)
    with pytest.raises(RuntimeError, match=r"expected model_output to have shape \[3, 4, 4\] \(2C channels"):
        p(tab, X, X, T3, X, var_type="learned")
    with pytest.raises(RuntimeError, match=r"learned variances need x_t of shape \[B, C, \.\.\.\]"):
        p(tab, torch.randn(6), torch.randn(3), T3, torch.randn(3), var_type="learned_range")
    with pytest.raises(RuntimeError, match=r"ddpm.p_sample: expected noise to have shape"):
        p(tab, X, X, T3, torch.randn(3, 2, 3))
    with pytest.raises(RuntimeError, match=r"x_start to have shape \[B, \.\.\.\] \(at least 1-D\)"):
        q(tab, torch.tensor(1.0), torch.tensor([0]), torch.tensor(1.0))


def test_bad_tables(tab):
    sa = tab["sqrt_alphas_cumprod"]
    with pytest.raises(RuntimeError, match=r"expected sqrt_one_minus_alphas_cumprod to have length 10 like sqrt_alphas_cumprod, got 9"):
        q(tab, X, T3, X, s1ma=tab["sqrt_one_minus_alphas_cumprod"][:9])
    with pytest.raises(RuntimeError, match=r"expected sqrt_alphas_cumprod to be a 1-D schedule table"):
        q(tab, X, T3, X, sa=sa.view(2, 5))
    with pytest.raises(RuntimeError, match=r"expected sqrt_alphas_cumprod to be float32 or float64, got BFloat16"):
        q(tab, X, T3, X, sa=sa.bfloat16(), s1ma=tab["sqrt_one_minus_alphas_cumprod"].bfloat16())
    with pytest.raises(RuntimeError, match=r"expected sqrt_one_minus_alphas_cumprod to have dtype Double like sqrt_alphas_cumprod, got Float"):
        q(tab, X, T3, X, s1ma=tab["sqrt_one_minus_alphas_cumprod"].float())
    with pytest.raises(RuntimeError, match=r"expected betas to have length 10"):
        p(tab, X, X, T3, X, betas=tab["betas"][:5])
    with pytest.raises(RuntimeError, match=r"at least one timestep"):
        q(tab, X, T3, X, sa=sa[:0], s1ma=sa[:0])


def test_bad_dtypes_and_modes(tab):
    xi = torch.ones(3, 2, 4, dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"expected x_start to have dtype float32, float64, float16 or bfloat16, got Int"):
        q(tab, xi, T3, xi)
    with pytest.raises(RuntimeError, match=r"expected noise to have dtype Float like x_start, got Double"):
        q(tab, X, T3, X.double())
    with pytest.raises(RuntimeError, match=r"expected model_output to have dtype Float like x_t, got Half"):
        p(tab, X.half(), X, T3, X)
    with pytest.raises(RuntimeError, match=r"model_mean_type to be one of 'epsilon', 'start_x', 'previous_x', 'v', got 'eps'"):
        p(tab, X, X, T3, X, mean_type="eps")
    with pytest.raises(RuntimeError, match=r"model_var_type to be one of .* got 'small'"):
        p(tab, X, X, T3, X, var_type="small")


def test_modes_case_insensitive(tab):
    a = p(tab, X, X, T3, X, mean_type="EPSILON", var_type="FIXED_LARGE")
    b = p(tab, X, X, T3, X, mean_type="epsilon", var_type="fixed_large")
    assert torch.equal(a[0], b[0])


def test_device_mismatch_on_meta(tab):
    """A tensor on another device is refused (meta stands in for a GPU here)."""
    with pytest.raises(RuntimeError, match=r"expected t on cpu like the data, got meta"):
        q(tab, X, T3.to("meta"), X)
    with pytest.raises(RuntimeError, match=r"expected noise on cpu like x_start, got meta"):
        q(tab, X, T3, X.to("meta"))
    with pytest.raises(RuntimeError, match=r"expected sqrt_alphas_cumprod on meta like the data, got cpu"):
        q(tab, X.to("meta"), T3.to("meta"), X.to("meta"))


def test_errors_leave_no_partial_write(tab):
    """A bad t is detected before any element is written (no half-done output)."""
    with pytest.raises(RuntimeError):
        q(tab, X, torch.tensor([0, 4, 11]), X)
