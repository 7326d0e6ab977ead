"""Bad input: a RuntimeError naming the argument and what was expected."""
import pytest
import torch

import reference as ref
import torch_ddpm

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


# ---- gradients that cannot be given ------------------------------------------------------
STEP_TABLE_NAMES = ["sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                    "posterior_mean_coef1", "posterior_mean_coef2"]


@pytest.mark.parametrize("op", ["p_sample", "ddim_sample", "p_sample_philox", "ddim_sample_philox"])
@pytest.mark.parametrize("which", range(6))
def test_a_step_table_that_requires_grad_is_refused(tab, op, which):
    ddim = op.startswith("ddim")
    names = STEP_TABLE_NAMES + (["alphas_cumprod", "alphas_cumprod_prev"] if ddim
                                else ["posterior_log_variance_clipped", "betas"])
    tables = [tab[n].clone().requires_grad_(i == which) for i, n in enumerate(names)]
    noise = (3, 4) if op.endswith("philox") else (X,)
    x = X.clone().requires_grad_()
    call = lambda: getattr(torch.ops.ddpm, op)(X, x, T3, *noise, *tables,  # noqa: E731
                                               *((0.5,) if ddim else ()))
    with pytest.raises(RuntimeError, match=rf"ddpm.{op}: {names[which]} requires grad, but "
                                           rf"ddpm.{op} has no gradient for it \(only for "
                                           rf"model_output and x_t\): pass {names[which]}.detach\(\)"):
        call()
    with torch.no_grad():
        call()  # nothing to refuse where no graph is built


def test_q_sample_and_posterior_tables_that_require_grad_are_refused(tab):
    sa = tab["sqrt_alphas_cumprod"].clone().requires_grad_()
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: sqrt_alphas_cumprod requires grad, "
                                           r"but ddpm.q_sample has no gradient for it \(only for "
                                           r"x_start and noise\)"):
        q(tab, X, T3, X, sa=sa)
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample_philox: sqrt_alphas_cumprod requires grad"):
        torch.ops.ddpm.q_sample_philox(X, T3, 1, 4, sa, tab["sqrt_one_minus_alphas_cumprod"])
    names = ["posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
             "posterior_log_variance_clipped"]
    for which in range(4):
        tables = [tab[n].clone().requires_grad_(i == which) for i, n in enumerate(names)]
        with pytest.raises(RuntimeError, match=rf"ddpm.posterior_mean_variance: {names[which]} "
                                               r"requires grad"):
            torch.ops.ddpm.posterior_mean_variance(X, X, T3, *tables)


def test_a_step_noise_that_requires_grad_is_a_constant(tab):
    """The noise is a documented constant: accepted, no gradient."""
    noise = X.clone().requires_grad_()
    x = X.clone().requires_grad_()
    sample, _ = p(tab, X, x, T3, noise)
    sample.sum().backward()
    assert noise.grad is None and x.grad is not None


@pytest.mark.parametrize("which", ["x_start", "noise", "out"])
def test_out_overloads_name_the_argument_that_requires_grad(tab, which):
    args = {"x_start": X.clone(), "noise": X.clone(), "out": torch.empty_like(X)}
    args[which].requires_grad_()
    call = lambda: torch.ops.ddpm.q_sample.out(  # noqa: E731
        args["x_start"], T3, args["noise"], tab["sqrt_alphas_cumprod"],
        tab["sqrt_one_minus_alphas_cumprod"], out=args["out"])
    match = (r"ddpm.q_sample.out: out requires grad, and an output= tensor is written in place"
             if which == "out" else
             rf"ddpm.q_sample.out: {which} requires grad, but the out= and sample= overloads are "
             rf"not differentiable .*: call ddpm.q_sample without them for gradients, or pass "
             rf"{which}.detach\(\)")
    with pytest.raises(RuntimeError, match=match):
        call()
    if which != "out":
        with torch.no_grad():
            call()


@pytest.mark.parametrize("op", ["p_sample", "ddim_sample"])
def test_sample_out_names_the_argument_that_requires_grad(tab, op):
    ddim = op == "ddim_sample"
    names = STEP_TABLE_NAMES + (["alphas_cumprod", "alphas_cumprod_prev"] if ddim
                                else ["posterior_log_variance_clipped", "betas"])
    model_output = X.clone().requires_grad_()
    with pytest.raises(RuntimeError, match=rf"ddpm.{op}.sample_out: model_output requires grad"):
        getattr(torch.ops.ddpm, op)(model_output, X, T3, X, *(tab[n] for n in names),
                                    *((0.5,) if ddim else ()), sample=torch.empty_like(X))


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
