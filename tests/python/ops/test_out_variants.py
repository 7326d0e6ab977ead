"""The out= variants: same values as the functional ops, in place allowed,
bad outputs refused, no autograd."""
import pytest
import torch

import helpers
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
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: out overlaps x_start in part"):
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


# ---- sample_out: the steps writing their sample alone (no pred_xstart) ----------------------
STEP_OPS = ["p_sample", "ddim_sample", "p_sample_philox", "ddim_sample_philox"]


def step_op_args(op, tab, model_output, x, t, noise, mean_type="epsilon", var_type="fixed_small"):
    """The positional arguments of a step operator, up to clip_denoised."""
    ddim = op.startswith("ddim")
    last_two = (("alphas_cumprod", "alphas_cumprod_prev") if ddim
                else ("posterior_log_variance_clipped", "betas"))
    noise_args = (7, 12) if op.endswith("philox") else (noise,)
    return (model_output, x, t, *noise_args, *step_tables(tab), *(tab[k] for k in last_two),
            *((0.4,) if ddim else ()), mean_type, var_type, True)


def step_inputs(device, dtype, var_type, noncontiguous=False):
    """x [5, 3, 67] (tails after every vector width) with t covering 0 and T-1."""
    x = helpers.randn((5, 3, 67), dtype, device, noncontiguous=noncontiguous)
    channels = 6 if var_type in ref.LEARNED else 3
    mo = helpers.randn((5, channels, 67), dtype, device)
    if var_type in ref.LEARNED:
        mo[:, 3:].uniform_(-1, 1)
    return mo, x, helpers.timesteps(5, T, device), helpers.randn((5, 3, 67), dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", STEP_OPS)
@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("mean_type", helpers.MEAN_TYPES)
@pytest.mark.parametrize("var_type", helpers.VAR_TYPES)
def test_sample_out_writes_the_functional_sample(device, op, dtype, mean_type, var_type):
    tab = ref.make_tables(T, device=device)
    mo, x, t, noise = step_inputs(device, dtype, var_type)
    args = step_op_args(op, tab, mo, x, t, noise, mean_type, var_type)
    packet = getattr(torch.ops.ddpm, op)
    expected, _ = packet(*args)
    sample = torch.full_like(x, float("nan"))
    result = packet.sample_out(*args, sample=sample)
    assert result.data_ptr() == sample.data_ptr()
    assert torch.equal(sample, expected), f"{op} sample_out differs from {op}"
    # the overload is what torch.ops.ddpm.<op>(..., sample=...) resolves to
    by_keyword = torch.full_like(x, float("nan"))
    packet(*args, sample=by_keyword)
    assert torch.equal(by_keyword, expected)
    # in place: x_t's storage receives x_{t-1}
    x_in_place = x.clone()
    in_place_args = step_op_args(op, tab, mo, x_in_place, t, noise, mean_type, var_type)
    packet.sample_out(*in_place_args, sample=x_in_place)
    assert torch.equal(x_in_place, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", STEP_OPS)
def test_sample_out_with_strided_inputs(device, op):
    tab = ref.make_tables(T, device=device)
    mo, x, t, noise = step_inputs(device, torch.float32, "learned_range", noncontiguous=True)
    args = step_op_args(op, tab, mo, x, t, noise, "v", "learned_range")
    expected, _ = getattr(torch.ops.ddpm, op)(*args)
    sample = torch.empty(x.shape, device=device)
    getattr(torch.ops.ddpm, op).sample_out(*args, sample=sample)
    assert torch.equal(sample, expected)


@pytest.mark.parametrize("op", STEP_OPS)
def test_sample_out_refuses_bad_outputs(op):
    tab = ref.make_tables(T)
    mo, x, t, noise = step_inputs("cpu", torch.float32, "fixed_small")
    args = step_op_args(op, tab, mo, x, t, noise)
    sample_out = getattr(torch.ops.ddpm, op).sample_out
    name = f"ddpm.{op}"
    with pytest.raises(RuntimeError, match=rf"{name}: expected sample to have shape \[5, 3, 67\]"):
        sample_out(*args, sample=torch.empty(5, 3, 66))
    with pytest.raises(RuntimeError, match=rf"{name}: expected sample to have dtype Float"):
        sample_out(*args, sample=torch.empty(5, 3, 67, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"expected sample \(an out= argument\) to be contiguous"):
        sample_out(*args, sample=torch.empty(67, 3, 5).permute(2, 1, 0))
    with pytest.raises(RuntimeError, match=f"{name}: sample overlaps model_output in part"):
        big = torch.randn(6, 3, 67)
        overlapping = step_op_args(op, tab, big[:5], x, t, noise)
        sample_out(*overlapping, sample=big[1:])
    if not op.endswith("philox"):
        with pytest.raises(RuntimeError, match=f"{name}: sample overlaps noise in part"):
            big = torch.randn(6, 3, 67)
            sample_out(*step_op_args(op, tab, mo, x, t, big[:5]), sample=big[1:])


@pytest.mark.parametrize("op", STEP_OPS)
def test_sample_out_does_not_take_gradients(op):
    tab = ref.make_tables(T)
    mo, x, t, noise = step_inputs("cpu", torch.float32, "fixed_small")
    mo.requires_grad_(True)
    sample = torch.empty_like(x)
    with pytest.raises(RuntimeError):
        getattr(torch.ops.ddpm, op).sample_out(
            *step_op_args(op, tab, mo, x, t, noise), sample=sample).sum().backward()


@pytest.mark.parametrize("op", STEP_OPS)
def test_sample_out_on_meta(op):
    tab = ref.make_tables(T, device="meta")
    x = torch.empty(4, 3, 5, device="meta", dtype=torch.bfloat16)
    mo = torch.empty(4, 6, 5, device="meta", dtype=torch.bfloat16)
    t = torch.empty(4, dtype=torch.long, device="meta")
    sample = torch.empty_like(x)
    sample_out = getattr(torch.ops.ddpm, op).sample_out
    res = sample_out(*step_op_args(op, tab, mo, x, t, x, "v", "learned_range"), sample=sample)
    assert res.shape == x.shape and res.device.type == "meta"
    with pytest.raises(RuntimeError, match=r"expected sample to have shape \[4, 3, 5\]"):
        sample_out(*step_op_args(op, tab, mo, x, t, x, "v", "learned_range"),
                   sample=torch.empty(4, 3, 4, device="meta", dtype=torch.bfloat16))


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
