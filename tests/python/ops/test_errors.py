"""Bad input: a RuntimeError naming the argument and what was expected. The
rules every overload follows (bad timesteps, tables, dtypes and devices,
arguments that require grad) are test_every_overload.py's; here what is
particular to some: shapes, modes, the version of what an out= writes, and
the front ends' noise key."""
import pytest
import torch

import reference as ref
import torch_ddpm
from torch_ddpm.tables import step_tables

T = 10


@pytest.fixture
def tab():
    return ref.make_tables(T, "cosine")


def q(tab, x0, t, noise, sa=None, s1ma=None):
    return torch.ops.ddpm.q_sample(x0, t, noise,
                                   tab["sqrt_alphas_cumprod"] if sa is None else sa,
                                   tab["sqrt_one_minus_alphas_cumprod"] if s1ma is None else s1ma)


def p(tab, out, x, t, noise, mean_type="epsilon", var_type="fixed_small", **override):
    tables = step_tables("p_sample", tab, **override)
    return torch.ops.ddpm.p_sample(out, x, t, noise, *tables, mean_type, var_type, True)


X = torch.randn(3, 2, 4)
T3 = torch.tensor([0, 4, 9])


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


def test_errors_leave_no_partial_write(tab):
    """A bad t is detected before any element is written (no half-done output)."""
    with pytest.raises(RuntimeError):
        q(tab, X, torch.tensor([0, 4, 11]), X)


# ---- gradients that cannot be given ------------------------------------------------------

def test_a_step_noise_that_requires_grad_is_a_constant(tab):
    """The noise is a documented constant: accepted, no gradient."""
    noise = X.clone().requires_grad_()
    x = X.clone().requires_grad_()
    sample, _ = p(tab, X, x, T3, noise)
    sample.sum().backward()
    assert noise.grad is None and x.grad is not None


def test_out_overloads_bump_the_version_of_what_they_write(tab):
    """As in-place ops do: autograd then notices a saved tensor overwritten."""
    out = torch.zeros_like(X)
    before = out._version
    torch.ops.ddpm.q_sample.out(X, T3, X, tab["sqrt_alphas_cumprod"],
                                tab["sqrt_one_minus_alphas_cumprod"], out=out)
    assert out._version > before
    w = torch.randn(3, 2, 4, requires_grad=True)
    y = w * 1.0
    z = (y * y).sum()  # saves y
    torch.ops.ddpm.q_sample.out(X, T3, X, tab["sqrt_alphas_cumprod"],
                                tab["sqrt_one_minus_alphas_cumprod"], out=y.detach())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


# ---- the noise key in the Python front ends ------------------------------------------------
@pytest.mark.parametrize("bad,error,match", [
    (2**64, ValueError, r"seed: expected a 64-bit seed, an int in \[-2\*\*63, 2\*\*64\), got 18446744073709551616"),
    (-(2**63) - 1, ValueError, r"seed: expected a 64-bit seed"),
    (1.5, TypeError, r"seed: expected an int, got float"),
    (True, TypeError, r"seed: expected an int, got bool"),
])
def test_seed_checked_in_the_front_ends(tab, bad, error, match):
    with pytest.raises(error, match=match):
        torch_ddpm.q_sample_philox(X, T3, bad, 0, tab["sqrt_alphas_cumprod"],
                                   tab["sqrt_one_minus_alphas_cumprod"])
    with pytest.raises(error, match=match):
        torch_ddpm.philox_normal(X, bad, 0)
    with pytest.raises(error, match=match):
        torch_ddpm.PhiloxStream(bad)


@pytest.mark.parametrize("bad,error,match", [
    (2**63, ValueError, r"offset: expected a multiple of 4 in \[0, 2\*\*63\) .* got 9223372036854775808"),
    (-4, ValueError, r"offset: expected a multiple of 4 in \[0, 2\*\*63\)"),
    (6, ValueError, r"offset: expected a multiple of 4 .* got 6"),
    ("8", TypeError, r"offset: expected an int, got str"),
])
def test_offset_checked_in_the_front_ends(tab, bad, error, match):
    with pytest.raises(error, match=match):
        torch_ddpm.q_sample_philox(X, T3, 1, bad, tab["sqrt_alphas_cumprod"],
                                   tab["sqrt_one_minus_alphas_cumprod"])
    with pytest.raises(error, match=match):
        torch_ddpm.philox_normal(X, 1, bad)
    with pytest.raises(error, match=match):
        torch_ddpm.PhiloxStream(1, bad)


def test_the_whole_64_bit_seed_range_is_accepted():
    for seed in (0, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63)):
        torch_ddpm.philox_normal(X, seed, 0)
    # a seed and its two's complement are the same key
    assert torch.equal(torch_ddpm.philox_normal(X, -1, 0), torch_ddpm.philox_normal(X, 2**64 - 1, 0))
