"""In-kernel noise: the *_philox operators and philox_normal.

The noise of element e of a call is the Philox-4x32-10 normal of (seed,
offset, e) (csrc/ddpm/philox.h). Checked here: bit for bit against an
independent numpy model (philox_reference.py, which also checks the Random123
known answers), its accuracy against the same transform in float64, its
statistics, its independence from thread count, shape and dtype, and that
the *_philox operators are exactly the explicit-noise operators fed that
noise, with gradients, out= variants, meta kernels, errors, the Python
sampling loops and the CPU/CUDA identity (run wherever CUDA is present).
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import reference as ref
import torch_ddpm
# noise_paths.py (the script each generator runs) sits beside the helpers
HELPERS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from conftest import DEVICES, requires_cuda, requires_torch2
from helpers import MEAN_TYPES, VAR_TYPES, assert_results_match
from philox_reference import fma32, philox4x32_10, philox_normal_f32, philox_normal_f64
from torch_ddpm.tables import step_tables as kind_tables

T = 100
KEYS = [(0, 0), (1234, 8), (-5, 4 * 10**9), (2**62 + 7, 123456), (-(2**63), 2**40)]


def noise(shape, seed, offset, dtype=torch.float32, device="cpu"):
    return torch.ops.ddpm.philox_normal(torch.empty(shape, dtype=dtype, device=device), seed, offset)


def step_tables(tab, ddim=False):
    return kind_tables("ddim_sample" if ddim else "p_sample", tab)


# ---- the generator itself -------------------------------------------------------------

def test_reference_model_matches_random123_known_answers():
    # Random123's kat_vectors for philox4x32-10: (counter, key) -> output
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, key, want in cases:
        got = philox4x32_10([[c] for c in ctr], key)
        assert tuple(int(g[0]) for g in got) == want


def test_fma32_model_rounds_once():
    # The model's fused multiply-add against exact rational arithmetic, on
    # random operands with cancellation and on a case that rounding to float64
    # first gets wrong: a*b = 2^-24 (1 - 2^-30), c = 1 + 2^-23, so a*b + c lies
    # just below a float32 halfway point that float64 cannot tell from it.
    from fractions import Fraction
    a = np.float32(2.0 ** -12 * (1 + 2.0 ** -15))
    b = np.float32(2.0 ** -12 * (1 - 2.0 ** -15))
    c = np.float32(1 + 2.0 ** -23)
    assert fma32(a, b, c) == c
    assert np.float32(np.float64(a) * np.float64(b) + np.float64(c)) != c  # the trap
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3000).astype(np.float32)
    y = rng.standard_normal(3000).astype(np.float32)
    z = (-(x.astype(np.float64) * y) * (1 + 1e-7 * rng.standard_normal(3000))).astype(np.float32)
    got = fma32(x, y, z)
    for i in range(3000):
        exact = Fraction(float(x[i])) * Fraction(float(y[i])) + Fraction(float(z[i]))
        g = Fraction(float(got[i]))
        for neighbour in (np.nextafter(got[i], np.float32(np.inf)),
                          np.nextafter(got[i], np.float32(-np.inf))):
            assert abs(g - exact) <= abs(Fraction(float(neighbour)) - exact), i


@pytest.mark.parametrize("seed,offset", KEYS)
@pytest.mark.parametrize("numel", [1, 255, 1023, 1025, 3 * 5000 + 7])
def test_bit_exact_against_float32_model(seed, offset, numel):
    got = noise((numel,), seed, offset).numpy()
    want = philox_normal_f32(numel, seed, offset)
    mismatch = np.nonzero(got.view(np.uint32) != want.view(np.uint32))[0]
    assert mismatch.size == 0, (
        f"{mismatch.size} of {numel} differ; first at {mismatch[0]}: "
        f"{got[mismatch[0]]!r} vs {want[mismatch[0]]!r}")


def test_transform_accuracy_against_float64():
    n = 1 << 18
    got = noise((n,), 42, 0).double().numpy()
    want = philox_normal_f64(n, 42, 0)
    err = np.abs(got - want)
    # from the same float32 u and v: a few float32 ulps (2^-23 = 1.2e-7
    # relative) for log, sqrt, sincospi and the product
    worst = (err / np.maximum(np.abs(want), 1e-6)).max()
    assert worst < 4 * 2.0**-23, worst
    assert np.abs(got).max() <= math.sqrt(64 * math.log(2)) + 1e-5


def test_moments_and_kolmogorov_smirnov():
    n = 1 << 22
    z = noise((n,), 2024, 0).double()
    mean, var = z.mean().item(), z.var().item()
    c = z - mean
    skew = (c**3).mean().item() / var**1.5
    kurt = (c**4).mean().item() / var**2 - 3.0
    # 5 standard errors of each estimator under N(0, 1)
    assert abs(mean) < 5 / math.sqrt(n), mean
    assert abs(var - 1) < 5 * math.sqrt(2 / n), var
    assert abs(skew) < 5 * math.sqrt(6 / n), skew
    assert abs(kurt) < 5 * math.sqrt(24 / n), kurt
    # Kolmogorov-Smirnov against N(0, 1) on 2^20 values: critical D at
    # alpha = 0.001 is 1.95/sqrt(m)
    m = 1 << 20
    s, _ = z[:m].sort()
    cdf = 0.5 * (1 + torch.erf(s / math.sqrt(2)))
    i = torch.arange(1, m + 1, dtype=torch.float64)
    d = max((i / m - cdf).max().item(), (cdf - (i - 1) / m).max().item())
    assert d < 1.95 / math.sqrt(m), d
    # a coarse histogram against the normal's bin probabilities (chi-square,
    # 40 bins on [-4, 4] plus the tails): nothing missing in the tails either
    edges = torch.linspace(-4, 4, 41, dtype=torch.float64)
    counts = torch.histc(z, bins=40, min=-4, max=4)
    probs = 0.5 * (torch.erf(edges[1:] / math.sqrt(2)) - torch.erf(edges[:-1] / math.sqrt(2)))
    expected = probs * n
    chi2 = (((counts - expected) ** 2) / expected).sum().item()
    assert chi2 < 40 + 5 * math.sqrt(80), chi2  # mean 40, sd sqrt(80)
    tail = (z.abs() > 4).sum().item()
    assert abs(tail - n * 6.334e-5) < 5 * math.sqrt(n * 6.334e-5), tail


def _corr(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return ((a * b).mean() / (a.std() * b.std())).item()


def test_no_correlation_between_neighbours_samples_offsets_and_seeds():
    n = 1 << 20
    bound = 5 / math.sqrt(n)
    z = noise((n + 1024,), 7, 0)
    for lag in (1, 2, 255, 256, 512, 768, 1024):  # 256/512/768: lanes of one Philox output
        assert abs(_corr(z[:n], z[lag:lag + n])) < bound, lag
        assert abs(_corr(z[:n] ** 2, z[lag:lag + n] ** 2)) < bound, ("squares", lag)
    batch = noise((64, n // 64), 7, 0)
    assert abs(_corr(batch[:-1], batch[1:])) < bound  # neighbouring samples
    a, b, c = noise((n,), 7, 0), noise((n,), 7, 4), noise((n,), 8, 0)
    assert abs(_corr(a, b)) < bound  # successive offsets
    assert abs(_corr(a, c)) < bound  # neighbouring seeds
    assert not torch.equal(a, b) and not torch.equal(a, c)


def test_same_for_thread_counts_shapes_and_dtypes():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = noise((5, 3, 41, 37), 11, 12)
        torch.set_num_threads(max(2, threads))
        many = noise((5, 3, 41, 37), 11, 12)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)
    # element e's noise depends on e alone, not on the shape
    assert torch.equal(one.flatten(), noise((5 * 3 * 41 * 37,), 11, 12))
    assert torch.equal(one[:2].flatten(), noise((2 * 3 * 41 * 37,), 11, 12))
    # float64 sees the float32 values exactly; 16-bit types round them once
    assert torch.equal(noise((5, 3, 41, 37), 11, 12, torch.float64), one.double())
    assert torch.equal(noise((5, 3, 41, 37), 11, 12, torch.float16), one.half())
    assert torch.equal(noise((5, 3, 41, 37), 11, 12, torch.bfloat16), one.bfloat16())
    # the same (seed, offset) gives the same numbers, another gives others
    assert torch.equal(one, noise((5, 3, 41, 37), 11, 12))


def test_steps_same_for_thread_counts_across_chunks_and_samples():
    # large enough for several parallel chunks (32 blocks of 1024 each), with
    # sample boundaries inside noise blocks: the CPU loop runs the step on each
    # quarter of a block as it is drawn, split at those boundaries
    tab = ref.make_tables(T)
    x = torch.randn(9, 3, 61, 67)
    out = torch.randn(9, 3, 61, 67)
    t = torch.tensor([0, 1, 50, 99, 7, 98, 3, 60, 20])
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(torch.ops.ddpm.p_sample_philox(out, x, t, 21, 8, *step_tables(tab)))
            results.append(torch.ops.ddpm.q_sample_philox(x, t, 21, 8, tab["sqrt_alphas_cumprod"],
                                                          tab["sqrt_one_minus_alphas_cumprod"]))
    finally:
        torch.set_num_threads(threads)
    z = torch.ops.ddpm.philox_normal(x, 21, 8)
    want_p = torch.ops.ddpm.p_sample(out, x, t, z, *step_tables(tab))
    for k in range(0, len(results), 2):
        assert all(torch.equal(a, b) for a, b in zip(results[k], want_p))
        assert torch.equal(results[k + 1][1], z)
        assert torch.equal(results[k + 1][0], torch.ops.ddpm.q_sample(
            x, t, z, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]))


@pytest.mark.parametrize("capability", ["avx2", "default"])
def test_every_cpu_generator_gives_the_same_bits(capability, tmp_path):
    # The CPU picks its widest generator (AVX-512, AVX2 or the header as
    # written), each with its own noise pass; TORCH_DDPM_CPU_CAPABILITY caps
    # the choice, so every narrower one runs here too and must match this
    # process's bit for bit.
    import noise_paths
    mine = torch.ops.ddpm._cpu_noise_generator()
    order = ["default", "avx2", "avx512"]
    if order.index(capability) >= order.index(mine):
        wider = order[order.index(capability) + 1]
        pytest.skip(f"needs a CPU with {wider.upper()} (this one's widest generator is {mine}: "
                    f"the {capability} one is what it runs)")
    path = tmp_path / "noise.pt"
    env = dict(os.environ, TORCH_DDPM_CPU_CAPABILITY=capability)
    subprocess.run([sys.executable, os.path.join(HELPERS, "noise_paths.py"),
                    str(path)], env=env, check=True, cwd=HELPERS)
    theirs = torch.load(path)
    assert theirs["generator"] == capability
    def assert_same(label, a, b):
        assert torch.equal(a, b), f"{label}: the {capability} generator differs from {mine}"
    assert_results_match(theirs["results"], noise_paths.compute(), assert_same)


def test_philox_normal_result_is_plain_data():
    x = torch.randn(3, 4, requires_grad=True)
    z = torch.ops.ddpm.philox_normal(x, 1, 0)
    assert not z.requires_grad and z.shape == x.shape and z.is_contiguous()
    assert torch.ops.ddpm.philox_normal(torch.empty(0, 3), 1, 0).shape == (0, 3)
    assert torch.ops.ddpm.philox_normal(torch.empty(()), 1, 0).shape == ()


# ---- the operators --------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("noncontiguous", [False, True])
def test_q_sample_philox_is_q_sample_with_that_noise(device, dtype, noncontiguous):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(6, 3, 17, 9, device=device).to(dtype)
    if noncontiguous:
        x = x.transpose(2, 3)
    t = torch.tensor([0, 1, 50, 99, 7, 98], device=device)
    args = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    x_t, z = torch.ops.ddpm.q_sample_philox(x, t, 5, 40, *args)
    assert torch.equal(z, torch.ops.ddpm.philox_normal(x, 5, 40))
    assert z.dtype == dtype and x_t.shape == x.shape
    if dtype in (torch.float32, torch.float64):
        assert torch.equal(x_t, torch.ops.ddpm.q_sample(x, t, z, *args))
    else:  # the kernel used the float noise, not its 16-bit rounding
        z32 = torch.ops.ddpm.philox_normal(x.float(), 5, 40)
        want = torch.ops.ddpm.q_sample(x.float(), t, z32, *args).to(dtype)
        torch.testing.assert_close(x_t.float(), want.float(), rtol=2 * torch.finfo(dtype).eps, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_p_sample_philox_is_p_sample_with_that_noise(device, mean_type, var_type, dtype):
    tab = ref.make_tables(T, device=device)
    learned = var_type.startswith("learned")
    x = torch.randn(6, 2, 33, 35, device=device, dtype=dtype)
    out = torch.randn(6, 4 if learned else 2, 33, 35, device=device, dtype=dtype)
    if var_type == "learned_range":
        out[:, 2:].uniform_(-1, 1)
    t = torch.tensor([0, 1, 50, 99, 7, 98], device=device)
    modes = (mean_type, var_type, True)
    s, p = torch.ops.ddpm.p_sample_philox(out, x, t, 9, 16, *step_tables(tab), *modes)
    z = torch.ops.ddpm.philox_normal(x, 9, 16)
    ws, wp = torch.ops.ddpm.p_sample(out, x, t, z, *step_tables(tab), *modes)
    assert torch.equal(s, ws) and torch.equal(p, wp)
    # t = 0 adds no noise: the sample is the zero-noise step's; t > 0 adds it
    mean, _ = torch.ops.ddpm.p_sample(out, x, t, torch.zeros_like(x), *step_tables(tab), *modes)
    assert torch.equal(s[0], mean[0]) and not torch.equal(s[1], mean[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_p_sample_philox_16bit_uses_unrounded_noise(device, dtype):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(4, 3, 16, 16, device=device).to(dtype)
    eps = torch.randn_like(x)
    t = torch.tensor([0, 3, 50, 99], device=device)
    s, p = torch.ops.ddpm.p_sample_philox(eps, x, t, 1, 0, *step_tables(tab))
    z32 = torch.ops.ddpm.philox_normal(x.float(), 1, 0)
    ws, wp = torch.ops.ddpm.p_sample(eps.float(), x.float(), t, z32, *step_tables(tab))
    # one rounding of the float32 result (plus float32 noise in it)
    tol = torch.finfo(dtype).eps
    torch.testing.assert_close(s.float(), ws.to(dtype).float(), rtol=tol, atol=tol)
    torch.testing.assert_close(p.float(), wp.to(dtype).float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_sample_philox_is_ddim_sample_with_that_noise(device, eta):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(4, 3, 20, 20, device=device)
    eps = torch.randn_like(x)
    t = torch.tensor([0, 3, 50, 99], device=device)
    s, p = torch.ops.ddpm.ddim_sample_philox(eps, x, t, 3, 4, *step_tables(tab, True), eta)
    z = torch.ops.ddpm.philox_normal(x, 3, 4)
    ws, wp = torch.ops.ddpm.ddim_sample(eps, x, t, z, *step_tables(tab, True), eta)
    assert torch.equal(s, ws) and torch.equal(p, wp)


@pytest.mark.parametrize("device", DEVICES)
def test_out_variants_and_in_place(device):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(4, 3, 20, 20, device=device)
    eps = torch.randn_like(x)
    t = torch.tensor([0, 3, 50, 99], device=device)
    fs, fp = torch.ops.ddpm.p_sample_philox(eps, x, t, 3, 4, *step_tables(tab))
    s, p = torch.full_like(x, float("nan")), torch.full_like(x, float("nan"))
    torch.ops.ddpm.p_sample_philox.out(eps, x, t, 3, 4, *step_tables(tab), sample=s, pred_xstart=p)
    assert torch.equal(s, fs) and torch.equal(p, fp)
    x_in_place = x.clone()
    torch.ops.ddpm.p_sample_philox.out(eps, x_in_place, t, 3, 4, *step_tables(tab),
                                       sample=x_in_place, pred_xstart=p)
    assert torch.equal(x_in_place, fs)
    ds, dp = torch.ops.ddpm.ddim_sample_philox(eps, x, t, 3, 4, *step_tables(tab, True), 0.5)
    torch.ops.ddpm.ddim_sample_philox.out(eps, x, t, 3, 4, *step_tables(tab, True), 0.5,
                                          sample=s, pred_xstart=p)
    assert torch.equal(s, ds) and torch.equal(p, dp)


@pytest.mark.parametrize("mean_type,var_type", [("epsilon", "fixed_small"), ("v", "learned_range"),
                                                ("start_x", "learned")])
def test_gradients(mean_type, var_type):
    tab = ref.make_tables(T)
    learned = var_type.startswith("learned")
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    out = torch.randn(3, 4 if learned else 2, 4, 5, dtype=torch.float64)
    if var_type == "learned_range":
        out[:, 2:].uniform_(-0.9, 0.9)
    out.requires_grad_(True)
    t = torch.tensor([0, 40, 99])

    def step(o, xt):
        return torch.ops.ddpm.p_sample_philox(o, xt, t, 21, 8, *step_tables(tab), mean_type,
                                              var_type, False)

    assert torch.autograd.gradcheck(step, (out, x))
    # the same gradients as p_sample given that noise
    z = torch.ops.ddpm.philox_normal(x, 21, 8)
    g = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    a = torch.autograd.grad(step(out, x)[0], (out, x), g)
    b = torch.autograd.grad(torch.ops.ddpm.p_sample(out, x, t, z, *step_tables(tab), mean_type,
                                                    var_type, False)[0], (out, x), g)
    assert all(torch.equal(u, v) for u, v in zip(a, b))

    xs = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    q_args = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    assert torch.autograd.gradcheck(lambda v: torch.ops.ddpm.q_sample_philox(v, t, 1, 0, *q_args)[0], (xs,))
    x_t, z = torch.ops.ddpm.q_sample_philox(xs, t, 1, 0, *q_args)
    assert x_t.requires_grad and not z.requires_grad
    eta_step = lambda o, xt: torch.ops.ddpm.ddim_sample_philox(  # noqa: E731
        o, xt, t, 5, 0, *step_tables(tab, True), 0.7, "epsilon", "fixed_small", False)
    assert torch.autograd.gradcheck(eta_step, (torch.randn(3, 2, 4, 5, dtype=torch.float64,
                                                           requires_grad=True), x))


def test_errors_name_the_argument():
    tab = ref.make_tables(T)
    x = torch.randn(2, 3)
    t = torch.tensor([1, 2])
    for bad in (3, -4, 6):
        with pytest.raises(RuntimeError, match=r"ddpm.p_sample_philox: expected offset to be a multiple of 4"):
            torch.ops.ddpm.p_sample_philox(x, x, t, 0, bad, *step_tables(tab))
        with pytest.raises(RuntimeError, match=r"ddpm.philox_normal: expected offset"):
            torch.ops.ddpm.philox_normal(x, 0, bad)
        with pytest.raises(RuntimeError, match=r"ddpm.q_sample_philox: expected offset"):
            torch.ops.ddpm.q_sample_philox(x, t, 0, bad, tab["sqrt_alphas_cumprod"],
                                           tab["sqrt_one_minus_alphas_cumprod"])
    with pytest.raises(RuntimeError, match=r"ddpm.philox_normal: expected input to have dtype float32"):
        torch.ops.ddpm.philox_normal(torch.zeros(3, dtype=torch.int64), 0, 0)
    with pytest.raises(RuntimeError, match=r"ddpm.ddim_sample_philox: expected model_output to have shape"):
        torch.ops.ddpm.ddim_sample_philox(torch.randn(2, 4), x, t, 0, 0, *step_tables(tab, True))
    with pytest.raises(RuntimeError, match=r"ddpm.p_sample_philox: expected t to have shape \[2\]"):
        torch.ops.ddpm.p_sample_philox(x, x, t[:1], 0, 0, *step_tables(tab))
    with pytest.raises(RuntimeError, match=r"ddpm.p_sample_philox: expected every t in \[0, 100\)"):
        torch.ops.ddpm.p_sample_philox(x, x, torch.tensor([1, T]), 0, 0, *step_tables(tab))
    with pytest.raises(ValueError, match="multiple of 4"):
        torch_ddpm.PhiloxStream(1, offset=2)


@pytest.mark.parametrize("device", DEVICES)
def test_a_key_tensor_draws_the_noise_of_its_seed_and_offset(device):
    # philox_normal.key: (seed, offset) as an int64 tensor [2], on the CPU or
    # on the data's device (read there when the kernel runs)
    x = torch.empty(3, 5, 7, device=device)
    for seed, offset in ((0, 0), (12345, 8), (2**62 + 5, 4 * 10**6), (-3, 4)):
        want = torch.ops.ddpm.philox_normal(x, seed, offset)
        for key_device in {"cpu", device}:
            key = torch.tensor([seed, offset], device=key_device)
            assert torch.equal(torch.ops.ddpm.philox_normal.key(x, key), want)


@pytest.mark.parametrize("device", DEVICES)
def test_the_steps_and_q_sample_with_a_key_tensor_are_their_seeded_calls(device):
    tab = {k: v.to(device) for k, v in ref.make_tables(T).items()}
    x = torch.randn(3, 2, 4, 5, device=device)
    out = torch.randn(3, 4, 4, 5, device=device)
    t = torch.tensor([0, 40, 99], device=device)
    for key_device in {"cpu", device}:
        key = torch.tensor([77, 12], device=key_device)
        got = torch.ops.ddpm.p_sample_philox.key(out, x, t, key, *step_tables(tab), "v",
                                                 "learned_range")
        want = torch.ops.ddpm.p_sample_philox(out, x, t, 77, 12, *step_tables(tab), "v",
                                              "learned_range")
        assert all(torch.equal(g, w) for g, w in zip(got, want))
        got = torch.ops.ddpm.ddim_sample_philox.key(out[:, :2], x, t, key,
                                                    *step_tables(tab, True), 0.6)
        want = torch.ops.ddpm.ddim_sample_philox(out[:, :2], x, t, 77, 12,
                                                 *step_tables(tab, True), 0.6)
        assert all(torch.equal(g, w) for g, w in zip(got, want))
        q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
        got = torch.ops.ddpm.q_sample_philox.key(x, t, key, *q_tabs)
        want = torch.ops.ddpm.q_sample_philox(x, t, 77, 12, *q_tabs)
        assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_a_key_tensors_step_has_the_seeded_steps_gradients():
    # a learned variance's gradient needs the noise again: the call runs as the
    # seeded operator with the key's values (a key on the GPU is refused there)
    tab = ref.make_tables(T)
    t = torch.tensor([0, 40, 99])
    grads = []
    for form in ("key", "seed"):
        torch.manual_seed(3)
        x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
        out = torch.randn(3, 4, 4, dtype=torch.float64)
        out[:, 2:].uniform_(-0.9, 0.9)
        out.requires_grad_(True)
        if form == "key":
            sample, pred = torch.ops.ddpm.p_sample_philox.key(
                out, x, t, torch.tensor([5, 8]), *step_tables(tab), "epsilon", "learned_range")
        else:
            sample, pred = torch.ops.ddpm.p_sample_philox(
                out, x, t, 5, 8, *step_tables(tab), "epsilon", "learned_range")
        (sample.sum() + 2 * pred.sum()).backward()
        grads.append((out.grad, x.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_a_key_tensor_is_checked():
    x = torch.empty(3, 5)
    key = torch.ops.ddpm.philox_normal.key
    with pytest.raises(RuntimeError, match=r"ddpm.philox_normal: expected key to be an int64 "
                                           r"tensor of shape \[2\] \(seed, offset\), got Int"):
        key(x, torch.tensor([1, 4], dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"expected key to be an int64 tensor of shape \[2\]"):
        key(x, torch.tensor([1, 4, 8]))
    with pytest.raises(RuntimeError, match=r"ddpm.philox_normal: expected offset to be a "
                                           r"multiple of 4"):
        key(x, torch.tensor([1, 6]))
    assert key(torch.empty(2, 3, device="meta"), torch.tensor([1, 4])).shape == (2, 3)


def test_meta_shapes():
    tab = ref.make_tables(T, device="meta")
    x = torch.empty(4, 3, 8, 8, device="meta", dtype=torch.bfloat16)
    t = torch.empty(4, dtype=torch.long, device="meta")
    s, p = torch.ops.ddpm.p_sample_philox(torch.empty(4, 6, 8, 8, device="meta", dtype=torch.bfloat16),
                                          x, t, 0, 0, *step_tables(tab), "epsilon", "learned_range")
    assert s.shape == x.shape and p.dtype == torch.bfloat16 and s.device.type == "meta"
    x_t, z = torch.ops.ddpm.q_sample_philox(x, t, 0, 0, tab["sqrt_alphas_cumprod"],
                                            tab["sqrt_one_minus_alphas_cumprod"])
    assert x_t.shape == z.shape == x.shape
    assert torch.ops.ddpm.philox_normal(x, 0, 0).shape == x.shape
    with pytest.raises(RuntimeError, match="offset"):
        torch.ops.ddpm.philox_normal(x, 0, 2)


@requires_torch2
def test_opcheck():
    tab = ref.make_tables(T)
    x = torch.randn(3, 2, 5, 5, requires_grad=True)
    out = torch.randn(3, 4, 5, 5, requires_grad=True)
    t = torch.tensor([0, 5, 99])
    torch.library.opcheck(torch.ops.ddpm.p_sample_philox.default,
                          (out, x, t, 3, 8, *step_tables(tab), "epsilon", "learned_range", True))
    torch.library.opcheck(torch.ops.ddpm.ddim_sample_philox.default,
                          (x.detach(), x, t, 3, 8, *step_tables(tab, True), 0.5))
    torch.library.opcheck(torch.ops.ddpm.q_sample_philox.default,
                          (x, t, 3, 8, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]))
    torch.library.opcheck(torch.ops.ddpm.philox_normal.default, (x.detach(), 3, 8))


@requires_torch2
def test_compile_fullgraph():
    tab = ref.make_tables(T)
    x = torch.randn(3, 2, 5, 5)
    eps = torch.randn_like(x)
    t = torch.tensor([0, 5, 99])

    def step(e, xt):
        return torch.ops.ddpm.p_sample_philox(e, xt, t, 3, 8, *step_tables(tab))[0] * 2

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(eps, x), step(eps, x))


# ---- Python front ends: generators, streams, sampling loops ------------------------------

def test_seed_offset_from_generators():
    g = torch.Generator().manual_seed(3)
    a = torch_ddpm.philox_seed_offset(g)
    b = torch_ddpm.philox_seed_offset(g)
    assert a != b and a[1] == 0 and b[1] == 0  # a CPU generator is drawn from
    g.manual_seed(3)
    assert torch_ddpm.philox_seed_offset(g) == a  # and reproducible from its seed
    s = torch_ddpm.PhiloxStream(2**64 - 1)  # any 64-bit seed: the same bits as -1
    assert s.take() == (-1, 0) and s.take() == (-1, 4)
    assert torch.equal(torch_ddpm.philox_normal(torch.empty(9), 2**64 - 1, 4),
                       torch_ddpm.philox_normal(torch.empty(9), -1, 4))


@requires_cuda
def test_seed_offset_from_a_cuda_generator_advances_its_offset_by_4():
    g = torch.Generator(device="cuda").manual_seed(17)
    start = g.get_offset()
    assert torch_ddpm.philox_seed_offset(g) == (17, start)
    assert torch_ddpm.philox_seed_offset(g) == (17, start + 4)
    assert g.get_offset() == start + 8


class _Model(torch.nn.Module):
    def __init__(self, learned):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4 if learned else 2, 3, padding=1)

    def forward(self, x, t, **kwargs):
        return torch.tanh(self.conv(x)) + 0.01 * t.float().view(-1, 1, 1, 1)


@pytest.mark.parametrize("var_type", ["FIXED_SMALL", "LEARNED_RANGE"])
@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
def test_sampling_loops_with_philox(var_type, loop):
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
    torch.manual_seed(0)
    betas = torch_ddpm.get_named_beta_schedule("cosine", 20)
    diffusion = GaussianDiffusion(betas=betas, model_mean_type=ModelMeanType.EPSILON,
                                  model_var_type=getattr(ModelVarType, var_type),
                                  loss_type=LossType.MSE)
    model = _Model(var_type.startswith("LEARNED"))
    kwargs = {"eta": 0.5} if loop.startswith("ddim") else {}
    run = getattr(diffusion, loop)
    shape = (2, 2, 6, 6)
    a = run(model, shape, philox=123, **kwargs)
    assert torch.isfinite(a).all()
    torch.manual_seed(99)  # the global generator plays no part
    b = run(model, shape, philox=torch_ddpm.PhiloxStream(123), **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(model, shape, philox=124, **kwargs))
    # the same chain by hand: x_T at offset 0, step k at offset 4k
    step = getattr(diffusion, loop.replace("_loop", ""))
    x = torch_ddpm.philox_normal(torch.empty(shape), 123, 0)
    for k, i in enumerate(range(19, -1, -1), start=1):
        x = step(model, x, torch.full((2,), i), philox=torch_ddpm.PhiloxStream(123, 4 * k),
                 **kwargs)["sample"]
    assert torch.equal(a, x)
    # the unfused path (denoised_fn) draws the same noise
    c = run(model, shape, philox=123, denoised_fn=lambda v: v, **kwargs)
    torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)
    # a generator works too, and explicit noise stays the default
    assert run(model, shape, philox=torch.Generator().manual_seed(1), **kwargs).shape == shape
    torch.manual_seed(5)
    d = run(model, shape, **kwargs)
    torch.manual_seed(5)
    assert torch.equal(d, run(model, shape, **kwargs))


def test_training_q_sample_with_philox():
    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType
    diffusion = GaussianDiffusion(betas=torch_ddpm.get_named_beta_schedule("cosine", 20),
                                  model_mean_type=ModelMeanType.EPSILON,
                                  model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)
    x = torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 5, 19])
    x_t, z = diffusion.q_sample(x, t, philox=8)
    assert torch.equal(z, torch_ddpm.philox_normal(x, 8, 0))
    assert torch.equal(x_t, diffusion.q_sample(x, t, noise=z))


# ---- CPU and CUDA: the same bits -------------------------------------------------------

@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1,), (1023,), (3, 5000), (16, 3, 64, 64), (7, 1, 33, 31)])
@pytest.mark.parametrize("seed,offset", KEYS[:3])
def test_cuda_noise_is_bit_identical_to_cpu(dtype, shape, seed, offset):
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[torch.finfo(dtype).bits // 8]
    cpu = noise(shape, seed, offset, dtype, "cpu")
    gpu = noise(shape, seed, offset, dtype, "cuda").cpu()
    assert torch.equal(cpu.view(bits), gpu.view(bits))  # bits, so -0.0 and NaN count too


@requires_cuda
@pytest.mark.parametrize("mean_type,var_type", [("epsilon", "fixed_small"), ("v", "learned_range")])
def test_cuda_steps_draw_the_cpu_noise(mean_type, var_type):
    tab_cpu, tab_gpu = ref.make_tables(T), ref.make_tables(T, device="cuda")
    learned = var_type.startswith("learned")
    x = torch.randn(8, 3, 32, 32)
    out = torch.randn(8, 6 if learned else 3, 32, 32).clamp(-1, 1)
    t = torch.arange(8) * 12
    q_cpu = torch.ops.ddpm.q_sample_philox(x, t, 5, 8, tab_cpu["sqrt_alphas_cumprod"],
                                           tab_cpu["sqrt_one_minus_alphas_cumprod"])
    q_gpu = torch.ops.ddpm.q_sample_philox(x.cuda(), t.cuda(), 5, 8, tab_gpu["sqrt_alphas_cumprod"],
                                           tab_gpu["sqrt_one_minus_alphas_cumprod"])
    assert torch.equal(q_cpu[1], q_gpu[1].cpu())  # the noise: bit for bit
    torch.testing.assert_close(q_cpu[0], q_gpu[0].cpu(), rtol=1e-6, atol=1e-6)
    s_cpu, _ = torch.ops.ddpm.p_sample_philox(out, x, t, 5, 8, *step_tables(tab_cpu), mean_type, var_type)
    s_gpu, _ = torch.ops.ddpm.p_sample_philox(out.cuda(), x.cuda(), t.cuda(), 5, 8,
                                              *step_tables(tab_gpu), mean_type, var_type)
    # the same noise; the arithmetic around it may round differently (FMA)
    torch.testing.assert_close(s_cpu, s_gpu.cpu(), rtol=1e-5, atol=1e-5)
