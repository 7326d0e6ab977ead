"""Schedules at their edges, against the float64 reference: one and two
steps (T = 1: the clipped log-variance table is -inf, the step at t = 0 adds
no noise and must be the mean, not NaN), and zero terminal SNR (abar = 0 at
the last step, beta = 1: sqrt(1/abar) is inf)."""
import pytest
import torch

import reference as ref
from conftest import DEVICES
from helpers import DTYPES, MEAN_TYPES, VAR_TYPES, assert_within_rounding
from torch_ddpm.schedules import cosine_betas, schedule_tables
from torch_ddpm.tables import step_tables

SHAPE = (3, 2, 5, 3)


def betas(kind):
    if kind == "zero_snr":  # the last beta 1: abar_{T-1} = 0
        b = cosine_betas(6)
        b[-1] = 1.0
        return b
    return cosine_betas(int(kind[1:]))  # (a linear schedule of T < 50 has betas above 1)


SCHEDULES = ["T1", "T2", "zero_snr"]


def tables(kind, device, table_dtype=torch.float64):
    return {k: v.to(device=device, dtype=table_dtype) for k, v in schedule_tables(betas(kind)).items()}


def all_timesteps(num_timesteps, device):
    return torch.arange(SHAPE[0], device=device) % num_timesteps


def defined(kind, mean_type, t):
    """epsilon has no x_0 where abar_t = 0 (x_t is the noise itself): v, start_x
    and previous_x are what zero-terminal-SNR models predict."""
    return not (kind == "zero_snr" and mean_type == "epsilon")


def step_inputs(var_type, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    out_shape = (SHAPE[0], SHAPE[1] * (2 if var_type in ref.LEARNED else 1), *SHAPE[2:])
    model_output = torch.randn(out_shape, generator=g)
    if var_type == "learned_range":  # v in [-1, 1], the ends included
        model_output[:, SHAPE[1]:] = torch.rand(SHAPE, generator=g) * 2 - 1
        model_output[:, SHAPE[1], 0, 0] = 1.0
        model_output[:, SHAPE[1], 0, 1] = -1.0
    x = torch.randn(SHAPE, generator=g)
    noise = torch.randn(SHAPE, generator=g)
    return [v.to(dtype=dtype, device=device) for v in (model_output, x, noise)]


def run_step(op, kind, device, dtype, mean_type, var_type, clip, eta=0.0, target="alphas_cumprod_prev"):
    tab = tables(kind, device)
    num_timesteps = len(tab["betas"])
    t = all_timesteps(num_timesteps, device)
    if kind == "zero_snr":
        t = torch.tensor([0, num_timesteps - 2, num_timesteps - 1], device=device)
    model_output, x, noise = step_inputs(var_type, dtype, device)
    ddim = op.startswith("ddim")
    kind_tables = (step_tables("ddim_sample", tab, alphas_cumprod_prev=tab[target]) if ddim
                   else step_tables("p_sample", tab))
    extra = (eta,) if ddim else ()
    if op.endswith("philox"):
        # drawn in float32 for every dtype, rounded once with the result
        noise = torch.ops.ddpm.philox_normal(x.float(), 3, 8)
        got = getattr(torch.ops.ddpm, op)(model_output, x, t, 3, 8, *kind_tables, *extra,
                                          mean_type, var_type, clip)
    else:
        got = getattr(torch.ops.ddpm, op)(model_output, x, t, noise, *kind_tables, *extra,
                                          mean_type, var_type, clip)
    ref64 = tables(kind, device)
    if ddim:
        want = ref.ddim_sample(model_output, x, t, noise, ref64, eta, mean_type, var_type, clip,
                               target)
    else:
        want = ref.p_sample(model_output, x, t, noise, ref64, mean_type, var_type, clip)
    return got, want, t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["p_sample", "ddim_sample", "p_sample_philox", "ddim_sample_philox"])
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_steps_at_the_edges_of_a_schedule(device, kind, dtype, op, mean_type, var_type):
    if not defined(kind, mean_type, None):
        pytest.skip("epsilon prediction has no x_0 at abar = 0")
    for clip in (True, False):
        for eta in ((0.0, 0.8) if op.startswith("ddim") else (0.0,)):
            (sample, pred), (e_sample, e_pred, s_mag, p_mag, (s_slack, p_slack)), t = run_step(
                op, kind, device, dtype, mean_type, var_type, clip, eta)
            assert bool(torch.isfinite(sample).all() and torch.isfinite(pred).all()), (clip, eta)
            assert_within_rounding(pred, e_pred, p_mag, dtype, "pred_xstart", p_slack)
            assert_within_rounding(sample, e_sample, s_mag, dtype, "sample", s_slack)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["T1", "T2"])
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
def test_ddim_reverse_step_at_the_edges(device, kind, mean_type):
    (sample, pred), (e_sample, e_pred, s_mag, p_mag, (s_slack, p_slack)), _ = run_step(
        "ddim_sample", kind, device, torch.float64, mean_type, "fixed_small", False, 0.0,
        "alphas_cumprod_next")
    assert_within_rounding(pred, e_pred, p_mag, torch.float64, "pred_xstart", p_slack)
    assert_within_rounding(sample, e_sample, s_mag, torch.float64, "sample", s_slack)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_step_gradients_at_the_edges(device, kind, var_type):
    """The backward is finite where the forward is: at t = 0 of a one-step
    schedule the variance half's gradient is 0, not 0 * inf; and matches the
    float64 reference's autograd."""
    mean_type = "v"
    (model_output, x, noise) = step_inputs(var_type, torch.float64, device)
    tab = tables(kind, device)
    t = all_timesteps(len(tab["betas"]), device)
    args = step_tables("p_sample", tab)
    grads = []
    for fn in ("ours", "reference"):
        mo, xt = model_output.clone().requires_grad_(), x.clone().requires_grad_()
        if fn == "ours":
            sample, pred = torch.ops.ddpm.p_sample(mo, xt, t, noise, *args, mean_type, var_type, False)
        else:
            sample, pred = ref.p_sample(mo, xt, t, noise, tab, mean_type, var_type, False)[:2]
        (sample * 1.5 + pred * 0.25).sum().backward()
        grads.append((mo.grad, xt.grad))
    for g, want in zip(grads[0], grads[1]):
        assert bool(torch.isfinite(g).all())
        torch.testing.assert_close(g, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", SCHEDULES)
def test_q_sample_and_posterior_at_the_edges(device, kind):
    tab = tables(kind, device)
    _, x, noise = step_inputs("fixed_small", torch.float64, device)
    t = all_timesteps(len(tab["betas"]), device)
    x_t = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"],
                                  tab["sqrt_one_minus_alphas_cumprod"])
    want, mag = ref.q_sample(x, t, noise, tab)
    assert_within_rounding(x_t, want, mag, torch.float64)
    mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(
        x, noise, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
        tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    e_mean, e_var, e_log_var, mag = ref.posterior_mean_variance(x, noise, t, tab)
    assert_within_rounding(mean, e_mean, mag, torch.float64)
    assert torch.equal(var, e_var) and torch.equal(log_var, e_log_var)
