"""The steps' per-sample clip bound (clip_bound [B], clip_rescale): pred_xstart
clamped to [-s, s], or clamped and divided by s (Imagen's dynamic thresholding),
inside the one fused pass. The float64 reference, gradcheck, meta and opcheck
of the bound modes are the generic registry's (op_registry.P_MODES and
DDIM_MODES end with them); here: what the bound means at its edges, the
errors, autograd's refusal, and diffusers' schedulers calling the step once."""
import pytest
import torch

import reference as ref
import torch_ddpm
from conftest import DEVICES
from op_registry import DDIM_TABLES, P_TABLES

T = 50


def step_call(device="cpu", dtype=torch.float32, ddim=False, batch=5):
    tab = ref.make_tables(T, "cosine", device)
    g = torch.Generator().manual_seed(3)
    shape = (batch, 3, 4, 4)
    out = (torch.randn(shape, generator=g) * 2).to(device, dtype)
    x = (torch.randn(shape, generator=g) * 2).to(device, dtype)
    noise = torch.randn(shape, generator=g).to(device, dtype)
    t = torch.randint(0, T, (batch,), generator=g).to(device)
    names = DDIM_TABLES if ddim else P_TABLES
    fn = torch.ops.ddpm.ddim_sample if ddim else torch.ops.ddpm.p_sample
    head = (out, x, t, noise, *(tab[k] for k in names)) + ((0.5,) if ddim else ())
    return fn, head


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ddim", [False, True])
def test_a_bound_of_one_is_the_plain_clip_and_a_huge_one_no_clip(device, ddim):
    fn, head = step_call(device, ddim=ddim)
    ones = torch.ones(5, dtype=torch.float64, device=device)
    clipped = fn(*head, "epsilon", "fixed_small", True)
    unclipped = fn(*head, "epsilon", "fixed_small", False)
    for rescale in (False, True):  # dividing by 1 changes nothing either
        got = fn(*head, "epsilon", "fixed_small", True, ones, rescale)
        assert all(torch.equal(a, b) for a, b in zip(got, clipped))
    huge = torch.full((5,), 1e30, dtype=torch.float64, device=device)
    got = fn(*head, "epsilon", "fixed_small", True, clip_bound=huge)
    assert all(torch.equal(a, b) for a, b in zip(got, unclipped))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dynamic_thresholding_in_the_step_is_clamp_then_divide(device, dtype):
    fn, head = step_call(device, dtype)
    for mean_type, ratio in (("start_x", 0.6), ("epsilon", 0.9)):
        _, unclipped = fn(*head, mean_type, "fixed_small", False)
        bound = torch_ddpm.dynamic_threshold_bound(unclipped, ratio, 5.0)
        flat = unclipped.float().reshape(5, -1).abs()
        assert torch.equal(bound, torch.quantile(flat, ratio, dim=1).clamp(1, 5.0))
        assert ((bound > 1) & (bound < 5)).any()  # the quantile itself, not a clamp
        s = bound.view(-1, 1, 1, 1)
        want = (torch.maximum(torch.minimum(unclipped.double(), s), -s) / s)
        _, got = fn(*head, mean_type, "fixed_small", True, bound, True)
        check_thresholded(got, want, dtype)


def check_thresholded(got, want, dtype):
    tol = 2e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
    assert got.abs().max() <= 1


def test_the_bound_is_torch_quantiles_bit_for_bit():
    """Selection instead of a sort, the same numbers: torch.quantile's (and so
    diffusers') over shapes, ratios and both dtypes; NaN where a sample has one."""
    g = torch.Generator().manual_seed(4)
    for shape in [(1, 4, 64, 64), (3, 2, 7, 5), (5, 1), (2, 3)]:
        for dtype in (torch.float32, torch.float64, torch.bfloat16):
            x = (torch.randn(shape, generator=g) * 3).to(dtype)
            flat = x.reshape(shape[0], -1).abs()
            flat = flat if dtype != torch.bfloat16 else flat.float()
            for ratio in (0.0, 0.5, 0.6, 0.9, 0.95, 0.995, 1.0):
                want = torch.quantile(flat, ratio, dim=1).clamp(1, 2.5)
                assert torch.equal(torch_ddpm.dynamic_threshold_bound(x, ratio, 2.5), want), (
                    shape, dtype, ratio)
    x = torch.randn(3, 10)
    x[1, 4] = float("nan")
    for ratio in (0.2, 0.9):  # (selection alone finds a number below the NaN)
        bound = torch_ddpm.dynamic_threshold_bound(x, ratio, 5.0)
        assert bound[1].isnan() and not bound[[0, 2]].isnan().any()
    with pytest.raises(ValueError, match="expected ratio in"):
        torch_ddpm.dynamic_threshold_bound(x, 1.5)


def test_each_bound_is_its_own_samples():
    fn, head = step_call()
    bound = torch.tensor([0.5, 1.0, 2.0, 0.25, 3.0], dtype=torch.float64)
    _, pred = fn(*head, "start_x", "fixed_small", True, bound)
    out = head[0]
    for b in range(5):
        assert torch.equal(pred[b], out[b].clamp(-bound[b].item(), bound[b].item()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ddim", [False, True])
@pytest.mark.parametrize("rescale", [False, True])
def test_a_nan_bound_makes_its_sample_nan(device, ddim, rescale):
    # as torch.clamp to NaN does; a clamp's comparisons alone let values through
    fn, head = step_call(device, ddim=ddim)
    bound = torch.tensor([1.5, float("nan"), 2.0, 1.0, 3.0], dtype=torch.float64, device=device)
    got = fn(*head, "epsilon", "fixed_small", True, bound, rescale)
    finite = fn(*head, "epsilon", "fixed_small", True, bound.nan_to_num(1.0), rescale)
    for a, b in zip(got, finite):
        assert a[1].isnan().all()
        assert torch.equal(a[[0, 2, 3, 4]], b[[0, 2, 3, 4]])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ddim", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_tiny_and_negative_bounds_follow_the_documented_rule(device, ddim, dtype):
    # The bound is its magnitude |s|; with clip_rescale at least 2^-60, below
    # which x_0 / s would overflow float32: pred_xstart is then the sign of x_0
    # (within [-1, 1], never NaN), as clamp(x_0 / s, -1, 1) is.
    fn, head = step_call(device, dtype, ddim=ddim)
    tiny = torch.tensor([1e-39, 1e-300, 0.0, 2.0**-61, 1e-20], dtype=torch.float64, device=device)
    for rescale in (False, True):
        _, pred = fn(*head, "epsilon", "fixed_small", True, tiny, rescale)
        limit = 1.0 if rescale else tiny.view(-1, 1, 1, 1).to(dtype)
        assert not pred.isnan().any() and bool((pred.abs() <= limit).all())
        if rescale:
            _, x0 = fn(*head, "epsilon", "fixed_small", False)
            assert torch.equal(pred.sign(), x0.sign())
            floor = fn(*head, "epsilon", "fixed_small", True,
                       torch.full_like(tiny, 2.0**-60), True)[1]
            assert torch.equal(pred[:4], floor[:4])
    signed = torch.tensor([-0.5, 1.5, -3.0, 0.8, -2.0], dtype=torch.float64, device=device)
    for rescale in (False, True):
        got = fn(*head, "epsilon", "fixed_small", True, signed, rescale)
        want = fn(*head, "epsilon", "fixed_small", True, signed.abs(), rescale)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("ddim", [False, True])
def test_without_clipping_a_nan_x0_passes_its_gradient(ddim):
    # No clamp, no mask: the gradient at a NaN pred_xstart is the chain rule's,
    # as autograd of the unclamped formula gives (x_0 = r x_t - rm1 eps); with
    # the clamp it is 0 there, as torch.clamp's backward gives.
    fn, head = step_call(dtype=torch.float64, ddim=ddim)
    x = head[1].clone()
    x[0, 0, 0, 0] = float("nan")
    t0 = int(head[2][0])
    r, rm1 = float(head[4][t0]), float(head[5][t0])  # sqrt_recip(m1)_alphas_cumprod
    for clip in (False, True):
        out, x_in = head[0].clone().requires_grad_(), x.clone().requires_grad_()
        _, pred = fn(out, x_in, *head[2:], "epsilon", "fixed_small", clip)
        assert pred[0, 0, 0, 0].isnan()
        pred.backward(torch.ones_like(pred))
        got = (float(out.grad[0, 0, 0, 0]), float(x_in.grad[0, 0, 0, 0]))
        assert got == ((0.0, 0.0) if clip else (-rm1, r))


def test_any_float_dtype_of_bound_is_taken():
    fn, head = step_call()
    bound64 = torch.tensor([0.5, 1.0, 2.0, 0.25, 3.0], dtype=torch.float64)
    want = fn(*head, "epsilon", "fixed_small", True, bound64)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        got = fn(*head, "epsilon", "fixed_small", True, bound64.to(dtype))
        assert all(torch.equal(a, b) for a, b in zip(got, want))  # these bounds are exact


def test_bad_bounds_are_named():
    fn, head = step_call()
    good = torch.ones(5)
    cases = [
        (dict(clip_denoised=False, clip_bound=good), "clip_bound is pred_xstart's per-sample "
                                                     "clamp, but clip_denoised=False"),
        (dict(clip_rescale=True), "clip_rescale=True divides .* but clip_bound is None"),
        (dict(clip_bound=torch.ones(4)), r"expected clip_bound to have shape \[5\]"),
        (dict(clip_bound=torch.ones(5, 1)), r"expected clip_bound to have shape \[5\]"),
        (dict(clip_bound=torch.ones(5, dtype=torch.int64)), "expected clip_bound to have dtype"),
        (dict(clip_bound=torch.ones(5, device="meta")), "expected clip_bound on cpu"),
    ]
    for kw, message in cases:
        with pytest.raises(RuntimeError, match=f"ddpm.p_sample: {message}"):
            fn(*head, **kw)


def test_a_bound_that_requires_grad_is_refused_and_a_detached_one_gives_gradients():
    fn, head = step_call(dtype=torch.float64)
    out = head[0].clone().requires_grad_()
    bound = torch.full((5,), 1.5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="clip_bound requires grad, but ddpm.p_sample has no "
                                           "gradient for it .* pass clip_bound.detach()"):
        fn(out, *head[1:], clip_bound=bound, clip_rescale=True)
    _, pred = fn(out, *head[1:], "start_x", clip_bound=bound.detach(), clip_rescale=True)
    pred.sum().backward()
    # start_x: pred = clamp(out, -s, s) / s, so d pred / d out = 1/s inside, 0 outside
    inside = head[0].abs() <= 1.5
    torch.testing.assert_close(out.grad, inside.double() / 1.5)


def test_the_front_ends_and_torchscript_pass_it():
    fn, head = step_call()
    bound = torch.tensor([0.5, 1.0, 2.0, 0.25, 3.0])
    want = fn(*head, "epsilon", "fixed_small", True, bound, True)
    got = torch_ddpm.p_sample(*head, clip_bound=bound, clip_rescale=True)
    assert all(torch.equal(a, b) for a, b in zip(got, want))

    @torch.jit.script
    def scripted(out: torch.Tensor, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                 a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor,
                 e: torch.Tensor, f: torch.Tensor, s: torch.Tensor):
        return torch.ops.ddpm.p_sample(out, x, t, noise, a, b, c, d, e, f, clip_bound=s,
                                       clip_rescale=True)

    got = scripted(*head, bound)
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def _ops_called(fn):
    """The operators fn dispatches, in order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    called = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            called.append(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return called


@pytest.mark.parametrize("config", [dict(thresholding=True, dynamic_thresholding_ratio=0.9,
                                         sample_max_value=1.5),
                                    dict(clip_sample_range=2.0)], ids=["thresholding", "range"])
def test_diffusers_limits_on_x0_are_inside_the_one_step(config):
    """Nothing full-size after the fused step: the limit is inside it, and
    for DDIM the model's own noise prediction too (diffusers' default; before,
    a correction of four to six more passes followed)."""
    from torch_ddpm.fused_schedulers import DDIMScheduler, DDPMScheduler

    sample, out = torch.randn(2, 3, 8, 8) * 2, torch.randn(2, 3, 8, 8) * 2
    ddpm = DDPMScheduler(**config)
    ddpm.set_timesteps(10)
    ddim = DDIMScheduler(**config)
    ddim.set_timesteps(10)
    for run, step_op in ((lambda: ddpm.step(out, 500, sample), "ddpm.p_sample"),
                         (lambda: ddim.step(out, 500, sample, eta=0.5,
                                            use_clipped_model_output=True), "ddpm.ddim_sample"),
                         (lambda: ddim.step(out, 500, sample, eta=0.5), "ddpm.ddim_sample")):
        called = _ops_called(run)
        # thresholding's bound is the quantile of the unclipped x_0, which the
        # same operator gives first (without clipping, one pass)
        calls = 2 if config.get("thresholding") else 1
        assert called.count(step_op) == calls and called[-1] == step_op, called


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
@pytest.mark.parametrize("mean_type,var_type", [("EPSILON", "FIXED_SMALL"),
                                                ("START_X", "LEARNED_RANGE"),
                                                ("EPSILON", "LEARNED")])
def test_the_improved_diffusion_drop_in_thresholds_as_the_eager_formulas(loop, mean_type,
                                                                          var_type):
    """clip_denoised=DynamicThreshold(...) where improved-diffusion takes a flag:
    the fused steps (the bound computed first, the clamp and division inside the
    step) give the eager chain's samples, with the same random numbers."""
    from adapter_cases import assert_same, run_both
    from torch_ddpm.gaussian_diffusion import ModelMeanType, ModelVarType

    threshold = torch_ddpm.DynamicThreshold(0.8, 1.3)
    results = run_both(lambda d, m: getattr(d, loop)(m, (2, 2, 8, 8), clip_denoised=threshold),
                       ModelMeanType[mean_type], ModelVarType[var_type])
    (fused, after_fused), (eager, after_eager) = results
    assert_same(fused, eager, atol=1e-4)
    assert torch.equal(after_fused, after_eager)
    if mean_type != "EPSILON":
        return  # this model's x_0 stays inside [-1, 1]: s = 1, the plain clip
    # the threshold acted: not the [-1, 1] clip's samples
    plain = run_both(lambda d, m: getattr(d, loop)(m, (2, 2, 8, 8)),
                     ModelMeanType[mean_type], ModelVarType[var_type])
    assert not torch.allclose(plain[0][0], fused, atol=1e-3)


def test_the_drop_in_step_and_its_denoised_fn_path_threshold_alike():
    from adapter_cases import make_dropin as make
    from helpers import TinyModel
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    threshold = torch_ddpm.DynamicThreshold(0.7, 2.0)
    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE)
    model = TinyModel()
    x = torch.randn(3, 2, 8, 8) * 2
    t = torch.tensor([39, 20, 1])
    for step in (diffusion.p_sample, diffusion.ddim_sample):
        torch.manual_seed(1)
        fused = step(model, x, t, clip_denoised=threshold)
        torch.manual_seed(1)
        unfused = step(model, x, t, clip_denoised=threshold, denoised_fn=lambda v: v)
        torch.testing.assert_close(fused["pred_xstart"], unfused["pred_xstart"], rtol=1e-5,
                                   atol=1e-5)
        torch.testing.assert_close(fused["sample"], unfused["sample"], rtol=1e-5, atol=1e-5)
        assert fused["pred_xstart"].abs().max() <= 1
