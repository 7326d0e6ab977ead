"""The fused steps' backward operators take None for an output's gradient
(a zero gradient that is never read, where autograd would otherwise fill a
full-size zero tensor), and None for the noise where the backward does not
read it (everywhere but a learned variance's gradient, which is grad_sample
times the noise); autograd passes None for outputs the loss does not use,
and the in-kernel-noise steps redraw the noise only where it is read."""
import pytest
import torch

import reference as ref
from conftest import DEVICES, TORCH_2, requires_torch2
from helpers import MEAN_TYPES, VAR_TYPES
from torch_ddpm.tables import step_tables

T = 30
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def kind_tables(tab, ddim):
    return step_tables("ddim_sample" if ddim else "p_sample", tab)


def make_step(device, dtype, var_type, noncontiguous=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (T, 3, 5, 7)  # one sample per timestep: t = 0 .. T-1
    x = torch.randn(shape, generator=g)
    out_channels = 6 if var_type in ref.LEARNED else 3
    out = torch.randn((T, out_channels, 5, 7), generator=g)
    if var_type in ref.LEARNED:
        out[:, 3:].uniform_(-1, 1, generator=g)
    grads = [torch.randn(shape, generator=g) for _ in range(2)]
    noise = torch.randn(shape, generator=g)
    if noncontiguous:  # the same values through transposed storage
        grads = [v.transpose(2, 3).contiguous().transpose(2, 3) for v in grads]
    put = lambda v: v.to(dtype).to(device)  # noqa: E731
    return (put(out), put(x), torch.arange(T, device=device), put(noise),
            [put(v) for v in grads])


def backward_op(ddim):
    return torch.ops.ddpm.ddim_sample_backward if ddim else torch.ops.ddpm.p_sample_backward


def call_backward(ddim, grad_sample, grad_pred, out, x, t, noise, tab, mean_type, var_type):
    extra = (0.7,) if ddim else ()
    return backward_op(ddim)(grad_sample, grad_pred, out, x, t, noise, *kind_tables(tab, ddim),
                             *extra, mean_type, var_type, True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ddim", [False, True], ids=["p_sample", "ddim"])
@pytest.mark.parametrize("var_type", VAR_TYPES)
@pytest.mark.parametrize("noncontiguous", [False, True], ids=["contiguous", "strided"])
def test_none_gradient_is_a_zero_gradient(device, dtype, ddim, var_type, noncontiguous):
    tab = ref.make_tables(T, device=device)
    out, x, t, noise, (gs, gp) = make_step(device, dtype, var_type, noncontiguous)
    zero = torch.zeros_like(x)
    for mean_type in MEAN_TYPES:
        args = (out, x, t, noise, tab, mean_type, var_type)
        for grad_sample, grad_pred, zero_sample, zero_pred in [
                (None, gp, zero, gp), (gs, None, gs, zero), (None, None, zero, zero)]:
            want = call_backward(ddim, zero_sample, zero_pred, *args)
            got = call_backward(ddim, grad_sample, grad_pred, *args)
            for g, w in zip(got, want):
                assert torch.equal(g, w), (mean_type, grad_sample is None, grad_pred is None)
        # the float64 reference of the gradient of pred_xstart alone, which
        # the zero-gradient route above would share a bug with
        if dtype == torch.float64 and not ddim:
            o64 = out.detach().double().requires_grad_(True)
            x64 = x.detach().double().requires_grad_(True)
            pred = ref.p_sample(o64, x64, t, noise.double(), tab, mean_type, var_type, True)[1]
            want = torch.autograd.grad(pred, (o64, x64), gp.double())
            got = call_backward(ddim, None, gp, *args)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ddim", [False, True], ids=["p_sample", "ddim"])
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_noise_may_be_none_where_it_is_not_read(device, ddim, var_type):
    tab = ref.make_tables(T, device=device)
    out, x, t, noise, (gs, gp) = make_step(device, torch.float32, var_type)
    reads_noise = var_type in ref.LEARNED and not ddim
    for grad_sample in (gs, None):
        with_noise = call_backward(ddim, grad_sample, gp, out, x, t, noise, tab, "epsilon",
                                   var_type)
        if reads_noise and grad_sample is not None:
            with pytest.raises(RuntimeError, match=r"_backward: expected a noise tensor like "
                               r"x_t: a learned variance's gradient reads the noise"):
                call_backward(ddim, grad_sample, gp, out, x, t, None, tab, "epsilon", var_type)
            # and the noise does enter: another noise, another gradient
            other = call_backward(ddim, grad_sample, gp, out, x, t, -noise, tab, "epsilon",
                                  var_type)
            assert not torch.equal(other[0], with_noise[0])
            continue
        without = call_backward(ddim, grad_sample, gp, out, x, t, None, tab, "epsilon",
                                var_type)
        for a, b in zip(with_noise, without):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["grad_sample", "grad_pred_xstart"])
def test_a_given_gradient_is_still_checked(name):
    tab = ref.make_tables(T)
    out, x, t, noise, (gs, gp) = make_step("cpu", torch.float32, "fixed_small")
    wrong = torch.zeros(T, 3, 5, 6)
    args = (wrong, None) if name == "grad_sample" else (None, wrong)
    with pytest.raises(RuntimeError, match=f"p_sample_backward: expected {name} to have shape"):
        call_backward(False, *args, out, x, t, noise, tab, "epsilon", "fixed_small")


class OpLog:
    """Records the ddpm operators called below autograd (arguments included)."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        log = self.calls = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.namespace == "ddpm":
                    log.append((func.__name__.split(".")[0], args))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)

    def args_of(self, op):
        found = [args for name, args in self.calls if name == op]
        assert len(found) == 1, (op, [name for name, _ in self.calls])
        return found[0]


STEPS = ["p_sample", "ddim_sample", "p_sample_philox", "ddim_sample_philox"]


def run_step(step, out, x, t, noise, tab, var_type):
    ddim = step.startswith("ddim")
    extra = (0.7,) if ddim else ()
    noise_args = (1234, 8) if step.endswith("philox") else (noise,)
    return getattr(torch.ops.ddpm, step)(out, x, t, *noise_args, *kind_tables(tab, ddim),
                                         *extra, "epsilon", var_type, True)


@requires_torch2  # TorchDispatchMode sees the operators autograd calls
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("var_type", ["fixed_small", "learned_range"])
@pytest.mark.parametrize("used", ["sample", "pred_xstart", "both"])
def test_autograd_passes_none_for_an_unused_output(device, step, var_type, used):
    tab = ref.make_tables(T, device=device)
    out, x, t, noise, (gs, gp) = make_step(device, torch.float32, var_type, seed=1)
    out.requires_grad_(True)
    x.requires_grad_(True)
    sample, pred = run_step(step, out, x, t, noise, tab, var_type)
    loss = {"sample": (sample * gs).sum(), "pred_xstart": (pred * gp).sum(),
            "both": (sample * gs).sum() + (pred * gp).sum()}[used]
    with OpLog() as log:
        got = torch.autograd.grad(loss, (out, x))
    backward = "ddim_sample_backward" if step.startswith("ddim") else "p_sample_backward"
    args = log.args_of(backward)
    assert (args[0] is None) == (used == "pred_xstart")
    assert (args[1] is None) == (used == "sample")
    reads_noise = var_type == "learned_range" and not step.startswith("ddim") and used != "pred_xstart"
    redrawn = [name for name, _ in log.calls if name == "philox_normal"]
    if step.endswith("philox"):
        assert (args[5] is not None) == reads_noise
        assert len(redrawn) == int(reads_noise)
    else:
        assert args[5] is noise or torch.equal(args[5], noise)
    # the same gradients as the backward operator given zeros
    zero = torch.zeros_like(x)
    want_noise = noise if not step.endswith("philox") else torch.ops.ddpm.philox_normal(
        x.detach(), 1234, 8)
    want = call_backward(step.startswith("ddim"), gs if used != "pred_xstart" else zero,
                         gp if used != "sample" else zero, out.detach(), x.detach(), t,
                         want_noise, tab, "epsilon", var_type)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


@requires_torch2
@pytest.mark.parametrize("ddim", [False, True], ids=["p_sample", "ddim"])
def test_opcheck_with_absent_gradients(ddim):
    tab = ref.make_tables(T)
    out, x, t, noise, (gs, gp) = make_step("cpu", torch.float32, "learned_range")
    extra = (0.7,) if ddim else ()
    op = backward_op(ddim).default
    for args in [(None, gp, out, x, t, None), (gs, None, out, x, t, noise),
                 (None, None, out, x, t, None)]:
        torch.library.opcheck(op, (*args, *kind_tables(tab, ddim), *extra, "epsilon",
                                   "learned_range", True))


def test_meta_kernel_takes_none():
    tab = {k: v.to("meta") for k, v in ref.make_tables(T).items()}
    out, x, t, noise, (gs, gp) = make_step("cpu", torch.float32, "learned")
    meta = [v.to("meta") for v in (out, x, t, gp)]
    g_out, g_x = call_backward(False, None, meta[3], meta[0], meta[1], meta[2], None, tab,
                               "epsilon", "learned")
    assert g_out.shape == out.shape and g_x.shape == x.shape and g_out.device.type == "meta"
    if TORCH_2:  # the Meta kernel runs the same checks
        with pytest.raises(RuntimeError, match="expected a noise tensor like x_t"):
            call_backward(False, meta[3], None, meta[0], meta[1], meta[2], None, tab,
                          "epsilon", "learned")
