"""Outputs that are inputs: every out= and sample= overload against every
input it could share memory with.

The rule (docs/operators.md, "Outputs and inputs that share memory"): an output may be
exactly the input of the in-place forms the kernels are written for, and
nothing else may share memory with an input or another output; refusals name
the operator and both arguments.
- q_sample.out: out may be x_start.
- posterior_mean_variance.out: mean may be x_t.
- the steps (out= and sample=): sample may be x_t.
The allowed forms give the functional result bit for bit (CPU: every loop
clone this machine runs; CUDA where present)."""
import pytest
import torch

import reference as ref
from conftest import DEVICES
from helpers import DTYPES, MEAN_TYPES, VAR_TYPES
from torch_ddpm.tables import step_tables

T = 50
SHAPE = (3, 2, 37)  # samples of several vectors and a tail, so order matters
STEP_OPS = ["p_sample", "ddim_sample", "p_sample_philox", "ddim_sample_philox"]


def step_inputs(op, var_type, dtype, device):
    torch.manual_seed(0)
    out_shape = (SHAPE[0], SHAPE[1] * (2 if var_type in ref.LEARNED else 1), SHAPE[2])
    inputs = {
        "model_output": torch.randn(out_shape).to(dtype=dtype, device=device),
        "x_t": torch.randn(SHAPE).to(dtype=dtype, device=device),
    }
    if var_type in ref.LEARNED:
        inputs["model_output"][:, SHAPE[1]:].uniform_(-1, 0)
    if not op.endswith("philox"):
        inputs["noise"] = torch.randn(SHAPE).to(dtype=dtype, device=device)
    return inputs


def step_call(op, inputs, tab, mean_type, var_type, **outputs):
    ddim = op.startswith("ddim")
    noise = (5, 8) if op.endswith("philox") else (inputs["noise"],)
    t = torch.tensor([0, 1, T - 1], device=inputs["x_t"].device)
    args = (inputs["model_output"], inputs["x_t"], t, *noise,
            *step_tables("ddim_sample" if ddim else "p_sample", tab), *((0.7,) if ddim else ()),
            mean_type, var_type, True)
    return getattr(torch.ops.ddpm, op)(*args, **outputs)


def fresh(inputs):
    return {k: v.clone() for k, v in inputs.items()}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", STEP_OPS)
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_step_sample_in_place(device, dtype, op, mean_type, var_type):
    tab = ref.make_tables(T, "cosine", device)
    inputs = step_inputs(op, var_type, dtype, device)
    want_sample, want_pred = step_call(op, inputs, tab, mean_type, var_type)
    mine = fresh(inputs)  # out=: sample over x_t, pred_xstart new
    pred = torch.full_like(want_pred, float("nan"))
    step_call(op, mine, tab, mean_type, var_type, sample=mine["x_t"], pred_xstart=pred)
    assert torch.equal(mine["x_t"], want_sample) and torch.equal(pred, want_pred)
    mine = fresh(inputs)  # sample=: the sample alone, over x_t
    step_call(op, mine, tab, mean_type, var_type, sample=mine["x_t"])
    assert torch.equal(mine["x_t"], want_sample)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", STEP_OPS)
@pytest.mark.parametrize("var_type", ["fixed_small", "learned_range"])
def test_step_outputs_that_may_not_be_inputs(device, op, var_type):
    tab = ref.make_tables(T, "cosine", device)
    inputs = step_inputs(op, var_type, torch.float32, device)
    name = "ddpm." + op
    for input_name, x in inputs.items():
        same_shape = x.shape == SHAPE
        how = r"is {} \(the same memory\)" if same_shape else "overlaps {} in part"
        # (a learned variance's model output has 2C channels: its start overlaps)
        target = x if same_shape else x.view(-1)[: torch.Size(SHAPE).numel()].view(SHAPE)
        if input_name != "x_t":
            with pytest.raises(RuntimeError, match=f"{name}: sample " + how.format(input_name)):
                step_call(op, inputs, tab, "epsilon", var_type, sample=target)
            with pytest.raises(RuntimeError, match=f"{name}: sample " + how.format(input_name)):
                step_call(op, inputs, tab, "epsilon", var_type, sample=target,
                          pred_xstart=torch.empty(SHAPE, device=device))
        with pytest.raises(RuntimeError, match=f"{name}: pred_xstart " + how.format(input_name)):
            step_call(op, inputs, tab, "epsilon", var_type,
                      sample=torch.empty(SHAPE, device=device), pred_xstart=target)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", STEP_OPS)
def test_step_outputs_overlapping(device, op):
    tab = ref.make_tables(T, "cosine", device)
    inputs = step_inputs(op, "fixed_small", torch.float32, device)
    name = "ddpm." + op
    s = torch.empty(SHAPE, device=device)
    with pytest.raises(RuntimeError, match=f"{name}: expected sample and pred_xstart to be different"):
        step_call(op, inputs, tab, "epsilon", "fixed_small", sample=s, pred_xstart=s)
    with pytest.raises(RuntimeError, match=rf"{name}: pred_xstart is sample \(the same memory\)"):
        step_call(op, inputs, tab, "epsilon", "fixed_small", sample=s, pred_xstart=s.view(SHAPE))
    # partial overlaps: with an input, and between the two outputs
    big = torch.randn(SHAPE[0] + 1, *SHAPE[1:], device=device)
    mine = dict(inputs, x_t=big[:-1])
    with pytest.raises(RuntimeError, match=f"{name}: sample overlaps x_t in part .* or x_t itself"):
        step_call(op, mine, tab, "epsilon", "fixed_small", sample=big[1:])
    with pytest.raises(RuntimeError, match=f"{name}: pred_xstart overlaps sample in part"):
        step_call(op, inputs, tab, "epsilon", "fixed_small", sample=big[:-1], pred_xstart=big[1:])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_q_sample_and_posterior_in_place(device, dtype):
    tab = ref.make_tables(T, "cosine", device)
    torch.manual_seed(1)
    x0, noise, xt = (torch.randn(SHAPE).to(dtype=dtype, device=device) for _ in range(3))
    t = torch.tensor([0, 7, T - 1], device=device)
    q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    want = torch.ops.ddpm.q_sample(x0, t, noise, *q_tabs)
    a = x0.clone()
    assert torch.ops.ddpm.q_sample.out(a, t, noise, *q_tabs, out=a) is a
    assert torch.equal(a, want)
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: out is noise \(the same memory\)"):
        torch.ops.ddpm.q_sample.out(x0, t, noise, *q_tabs, out=noise)
    post_tabs = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                 tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    want = torch.ops.ddpm.posterior_mean_variance(x0, xt, t, *post_tabs)[0]
    b = xt.clone()
    torch.ops.ddpm.posterior_mean_variance.out(x0, b, t, *post_tabs, mean=b)
    assert torch.equal(b, want)
    with pytest.raises(RuntimeError, match=r"ddpm.posterior_mean_variance: mean is x_start "
                                           r"\(the same memory\)"):
        torch.ops.ddpm.posterior_mean_variance.out(x0, xt, t, *post_tabs, mean=x0)


@pytest.mark.parametrize("device", DEVICES + ["meta"])
def test_partial_overlaps_name_the_operator_and_both_arguments(device):
    tab = ref.make_tables(T, "cosine", device)
    big = torch.randn(SHAPE[0] + 1, *SHAPE[1:]).to(device)
    x0, t = big[:-1], torch.tensor([0, 7, T - 1]).to(device)
    q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    noise = torch.randn(SHAPE).to(device)
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: out overlaps x_start in part "
                                           r"\(they share memory but are not the same tensor\); "
                                           r"out may be new memory or x_start itself"):
        torch.ops.ddpm.q_sample.out(x0, t, noise, *q_tabs, out=big[1:])
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: out overlaps noise in part "
                                           r"\(they share memory but are not the same tensor\); "
                                           r"out may be new memory") as info:
        torch.ops.ddpm.q_sample.out(noise, t, x0, *q_tabs, out=big[1:])
    assert "itself" not in str(info.value)  # out may not be noise either
    post_tabs = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                 tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    with pytest.raises(RuntimeError, match=r"ddpm.posterior_mean_variance: mean overlaps x_t in part"):
        torch.ops.ddpm.posterior_mean_variance.out(noise, x0, t, *post_tabs, mean=big[1:])
    # a strided view over the same memory is an overlap too (not the same tensor)
    square = torch.randn(6, 6).to(device)
    t6 = torch.zeros(6, dtype=torch.long, device=device)
    with pytest.raises(RuntimeError, match=r"ddpm.q_sample: out overlaps x_start in part"):
        torch.ops.ddpm.q_sample.out(square.t(), t6, torch.randn(6, 6).to(device), *q_tabs,
                                    out=square)
