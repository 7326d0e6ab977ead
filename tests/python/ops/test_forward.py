"""The forward passes beyond the registry's generic check against the float64
reference (test_operators.py: every operator, mode, dtype, layout, both
table dtypes): every timestep of a 1000-step schedule, no noise at t = 0,
16-bit rounding bit for bit torch's, empty batches, CUDA bit for bit the
CPU."""
import pytest
import torch

import reference as ref
from conftest import DEVICES, requires_cuda
from helpers import DTYPES, MEAN_TYPES, VAR_TYPES, assert_within_rounding, randn, timesteps
from torch_ddpm.tables import step_tables

T = 1000


def tables(device, table_dtype=torch.float64, schedule="linear", num_timesteps=T):
    return ref.make_tables(num_timesteps, schedule, device, table_dtype)


def p_sample_args(tab):
    return step_tables("p_sample", tab)


def run_p_sample(device, dtype, shape, mean_type, var_type, clip, t, noncontiguous=False,
                 table_dtype=torch.float64, schedule="linear", out_scale=1.0):
    tab = tables(device, table_dtype, schedule)
    out_shape = list(shape)
    if var_type in ref.LEARNED:
        out_shape[1] *= 2
    model_output = randn(out_shape, dtype, device, scale=out_scale, noncontiguous=noncontiguous)
    if var_type == "learned_range":  # the variance half is v in [-1, 1]
        model_output[:, shape[1]:].uniform_(-1, 1)
    if var_type == "learned":  # plausible log-variances
        model_output[:, shape[1]:].uniform_(-12, 0)
    x = randn(shape, dtype, device, noncontiguous=noncontiguous)
    noise = randn(shape, dtype, device, noncontiguous=noncontiguous)
    sample, pred = torch.ops.ddpm.p_sample(model_output, x, t, noise, *p_sample_args(tab),
                                           mean_type, var_type, clip)
    # The reference derives its coefficients from float64 tables, whatever
    # dtype the kernel was given (float32 tables only round each coefficient).
    e_sample, e_pred, s_mag, p_mag, (s_slack, p_slack) = ref.p_sample(
        model_output, x, t, noise, tables(device, schedule=schedule), mean_type, var_type, clip)
    assert_within_rounding(pred, e_pred, p_mag, dtype, "pred_xstart", p_slack)
    assert_within_rounding(sample, e_sample, s_mag, dtype, "sample", s_slack)
    return sample, pred, e_pred


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("mean_type,var_type", [("epsilon", "fixed_small"),
                                                ("v", "fixed_large"),
                                                ("start_x", "learned_range"),
                                                ("previous_x", "learned")])
def test_every_timestep(device, schedule, mean_type, var_type):
    """One sample per t in 0..T-1, float32 data and float32 tables."""
    tab = tables(device, torch.float32, schedule)
    t = torch.arange(T, device=device)
    run_p_sample(device, torch.float32, (T, 2, 3), mean_type, var_type, True, t,
                 table_dtype=torch.float32, schedule=schedule)
    x0 = randn((T, 2, 3), torch.float32, device)
    noise = randn((T, 2, 3), torch.float32, device)
    out = torch.ops.ddpm.q_sample(x0, t, noise, tab["sqrt_alphas_cumprod"],
                                  tab["sqrt_one_minus_alphas_cumprod"])
    expected, mag = ref.q_sample(x0, t, noise, tab)
    assert_within_rounding(out, expected, mag, torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_no_noise_at_t0(device):
    tab = tables(device)
    x = randn((3, 4), torch.float32, device)
    out = randn((3, 4), torch.float32, device)
    t = torch.zeros(3, dtype=torch.long, device=device)
    s1, _ = torch.ops.ddpm.p_sample(out, x, t, torch.randn_like(x), *p_sample_args(tab))
    s2, _ = torch.ops.ddpm.p_sample(out, x, t, torch.randn_like(x), *p_sample_args(tab))
    assert torch.equal(s1, s2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_rounding_matches_torch_bit_for_bit(dtype):
    """out = a*x with a exact in float32: our one rounding equals torch's cast,
    over every finite 16-bit value, infinities, NaN and overflow."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype)
    n = x.numel()
    t = torch.zeros(n, dtype=torch.long)
    zero = torch.zeros_like(x)
    for scale in (1.0, 0.7, 3.3, 1e4):
        sa = torch.tensor([scale], dtype=torch.float32)
        out = torch.ops.ddpm.q_sample(x, t, zero, sa, torch.zeros(1))
        expected = (x.float() * scale + 0.0 * zero.float()).to(dtype)  # -0 + 0 = +0
        same = (out.view(torch.int16) == expected.view(torch.int16)) | (out.isnan() & expected.isnan())
        assert same.all(), f"scale {scale}: {int((~same).sum())} values round differently"


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    tab = tables(device)
    x = torch.empty(0, 3, 4, device=device)
    t = torch.empty(0, dtype=torch.long, device=device)
    assert torch.ops.ddpm.q_sample(x, t, x, tab["sqrt_alphas_cumprod"],
                                   tab["sqrt_one_minus_alphas_cumprod"]).shape == x.shape
    mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(
        x, x, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
        tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    assert mean.shape == var.shape == log_var.shape == x.shape
    out = torch.empty(0, 6, 4, device=device)
    sample, pred = torch.ops.ddpm.p_sample(out, x, t, x, *p_sample_args(tab), "epsilon",
                                           "learned_range", True)
    assert sample.shape == pred.shape == x.shape


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_cuda_matches_cpu(dtype, mean_type, var_type):
    shape = (8, 4, 16, 16)
    out_shape = (8, 8, 16, 16) if var_type in ref.LEARNED else shape
    tab_cpu, tab_gpu = tables("cpu"), tables("cuda")
    mo = torch.randn(out_shape).to(dtype)
    if var_type in ref.LEARNED:
        mo[:, 4:].uniform_(-1, 0)
    x, z = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    t = timesteps(8, T, "cpu")
    cpu = torch.ops.ddpm.p_sample(mo, x, t, z, *p_sample_args(tab_cpu), mean_type, var_type, True)
    gpu = torch.ops.ddpm.p_sample(mo.cuda(), x.cuda(), t.cuda(), z.cuda(), *p_sample_args(tab_gpu),
                                  mean_type, var_type, True)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(b.cpu(), a, rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out", [False, True])
def test_posterior_variances_of_samples_without_elements(device, out):
    """Samples with no elements still get their variance and log variance
    (the CUDA kernel writes them apart from the element loop, which has
    nothing to do there)."""
    tab = {k: v.to(device) for k, v in ref.make_tables(1000).items()}
    x = torch.randn(3, 0, device=device)
    t = torch.tensor([0, 5, 999], device=device)
    args = (x, x.clone(), t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    if out:
        mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(*args, mean=torch.empty_like(x))
    else:
        mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(*args)
    assert mean.shape == var.shape == log_var.shape == (3, 0)
    # the per-sample values behind the expanded [3, 0] views
    for got, table in ((var, "posterior_variance"), (log_var, "posterior_log_variance_clipped")):
        assert torch.equal(got.as_strided((3,), (1,)).cpu(), tab[table].cpu()[t.cpu()].float())
