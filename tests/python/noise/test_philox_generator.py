"""The .generator overloads of the in-kernel-noise operators: the (seed,
offset) taken from a torch.Generator when the call runs, exactly as
philox_seed_offset takes it (the same numbers, the same generator state
after), so that PhiloxStream(generator) and philox=generator use them; on
CUDA they are what makes in-kernel noise graph-safe (test_cuda.py captures
and replays them)."""
import pytest
import torch

import reference as ref
import torch_ddpm
from helpers import TinyModel
from op_registry import DDIM_TABLES, P_TABLES, Q_TABLES
from torch_ddpm.noise import PhiloxStream, philox_seed_offset

T = 50


def inputs(learned=False, dtype=torch.float32):
    tab = ref.make_tables(T, "cosine")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=dtype)
    out = torch.randn(3, 4 if learned else 2, 4, 4, generator=g, dtype=dtype)
    if learned:
        out[:, 2:].uniform_(-1, 1, generator=g)
    return tab, x, out, torch.tensor([0, 7, 49])


def calls(tab, x, out, t, learned=False):
    """(name, fn(noise_args) -> outputs): every in-kernel-noise operator."""
    ops = torch.ops.ddpm
    var = "learned_range" if learned else "fixed_small"
    p_tabs = [tab[k] for k in P_TABLES]
    d_tabs = [tab[k] for k in DDIM_TABLES]
    return [
        ("philox_normal", lambda *k: ops.philox_normal(x, *k)),
        ("q_sample_philox", lambda *k: ops.q_sample_philox(x, t, *k, *(tab[n] for n in Q_TABLES))),
        ("p_sample_philox", lambda *k: ops.p_sample_philox(out, x, t, *k, *p_tabs, "epsilon", var)),
        ("p_sample_philox sample=", lambda *k: ops.p_sample_philox(
            out, x, t, *k, *p_tabs, "epsilon", var, sample=torch.empty_like(x))),
        ("ddim_sample_philox", lambda *k: ops.ddim_sample_philox(
            out[:, :2], x, t, *k, *d_tabs, 0.5, "v", "fixed_small", True, None, False, False)),
    ]


def as_tuple(r):
    return (r,) if torch.is_tensor(r) else tuple(r)


@pytest.mark.parametrize("which", range(5))
def test_a_generator_gives_what_philox_seed_offset_gives(which):
    tab, x, out, t = inputs()
    name, call = calls(tab, x, out, t)[which]
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(2):  # and the next call draws anew, alike
        got = as_tuple(call(ours))
        want = as_tuple(call(*philox_seed_offset(theirs)))
        assert all(torch.equal(a, b) for a, b in zip(got, want)), name
        assert torch.equal(ours.get_state(), theirs.get_state()), name


def test_none_is_the_default_generator():
    tab, x, out, t = inputs()
    torch.manual_seed(5)
    got = torch.ops.ddpm.philox_normal(x, None)
    torch.manual_seed(5)
    want = torch.ops.ddpm.philox_normal(x, *philox_seed_offset(None))
    assert torch.equal(got, want)


def test_meta_tensors_draw_nothing():
    tab, x, out, t = inputs()
    gen = torch.Generator().manual_seed(1)
    before = gen.get_state()
    meta = {k: v.to("meta") for k, v in tab.items()}
    r = torch.ops.ddpm.p_sample_philox(out.to("meta"), x.to("meta"), t.to("meta"), gen,
                                       *(meta[k] for k in P_TABLES))
    assert r[0].device.type == "meta" and r[0].shape == x.shape
    assert torch.equal(gen.get_state(), before)


@pytest.mark.parametrize("learned", [False, True])
def test_gradients_are_the_seeded_operators(learned):
    """A learned variance's gradient needs the noise again: the call then runs
    as the (seed, offset) operator with the key drawn first; otherwise the
    generator's call is recorded as it is. Either way the seeded operator's
    gradients, and one draw."""
    tab, x, out, t = inputs(learned, torch.float64)
    grads = []
    for use_generator in (True, False):
        o, xt = out.clone().requires_grad_(), x.clone().requires_grad_()
        gen = torch.Generator().manual_seed(3)
        key = (gen,) if use_generator else philox_seed_offset(gen)
        sample, pred = calls(tab, xt, o, t, learned)[2][1](*key)
        (sample.square().sum() + pred.sum()).backward()
        grads.append((sample.detach(), o.grad, xt.grad, gen.get_state()))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_a_cuda_generator_on_a_cpu_call_is_named():
    tab, x, out, t = inputs()
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA generator")
    with pytest.raises(RuntimeError, match="expected a generator on cpu"):
        torch.ops.ddpm.philox_normal(x, torch.Generator(device="cuda"))


def test_streams_of_a_generator_use_the_overloads_with_the_same_numbers():
    """philox=generator in the drop-in's loops: the .generator overloads now
    (graph-safe on CUDA), the numbers the (seed, offset) path gave before."""
    from adapter_cases import make_dropin as make
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType

    class TakeStream(PhiloxStream):  # the previous path: keys taken in Python
        def noise_args(self, device=None):
            return self.take(device)

    diffusion = make(GaussianDiffusion, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE)
    model = TinyModel()
    samples = []
    for stream in (PhiloxStream(torch.Generator().manual_seed(8)),
                   TakeStream(torch.Generator().manual_seed(8))):
        with torch.no_grad():
            samples.append(diffusion.p_sample_loop(model, (2, 2, 6, 6), philox=stream))
        samples.append(stream.generator.get_state())
    assert torch.equal(samples[0], samples[2]) and torch.equal(samples[1], samples[3])
    assert torch.equal(torch_ddpm.philox_normal(torch.zeros(5), torch.Generator().manual_seed(2)),
                       torch_ddpm.philox_normal(torch.zeros(5), *philox_seed_offset(
                           torch.Generator().manual_seed(2))))
