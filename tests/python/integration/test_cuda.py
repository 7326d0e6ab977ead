"""CUDA-only behaviour: CUDA graph capture, streams, no host sync, NaN for a
bad timestep, 64-bit indexing. Skipped where no GPU (or no WITH_CUDA build)."""
import pytest
import torch

import reference as ref
import torch_ddpm
from conftest import CUDA_MESSAGE, CUDA_STATE, requires_cuda
from helpers import assert_within_rounding
from torch_ddpm.tables import step_tables

pytestmark = requires_cuda
T = 1000


def test_the_cuda_kernels_run():
    """The conftest probe, as a test: a library with CUDA kernels on a GPU must run
    them and match the CPU (broken kernels fail here, they are not skipped)."""
    assert CUDA_STATE == "ok", CUDA_MESSAGE


def p_args(tab):
    return step_tables("p_sample", tab)


def test_sampling_step_in_a_cuda_graph():
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("linear", T)).cuda()
    x = torch.randn(16, 3, 64, 64, device="cuda")
    eps = torch.randn_like(x)
    noise = torch.randn_like(x)
    t = torch.full((16,), 500, device="cuda", dtype=torch.long)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up off the default stream
        for _ in range(2):
            sched.p_sample(eps, x, t, noise)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x_t = sched.q_sample(x, t, noise)
        sample, pred = sched.p_sample(eps, x_t, t, noise, "epsilon", "fixed_small", True)
    for step in (500, 3, 0):
        t.fill_(step)
        eps.normal_()
        graph.replay()
        expected = sched.p_sample(eps, sched.q_sample(x, t, noise), t, noise)
        torch.testing.assert_close(sample, expected[0])
        torch.testing.assert_close(pred, expected[1])


def test_bad_timestep_gives_nan_without_sync():
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(3, 5, device="cuda")
    t = torch.tensor([0, T, 7], device="cuda")
    out = torch.ops.ddpm.q_sample(x, t, x, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    assert out[1].isnan().all() and not out[[0, 2]].isnan().any()
    s, p = torch.ops.ddpm.p_sample(x, x, t, x, *p_args(tab))
    assert s[1].isnan().all() and p[1].isnan().all() and not s[[0, 2]].isnan().any()


def test_other_device_index_refused():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    tab = ref.make_tables(T, device="cuda:0")
    x = torch.randn(3, 5, device="cuda:0")
    with pytest.raises(RuntimeError, match="expected t on cuda:0"):
        torch.ops.ddpm.q_sample(x, torch.zeros(3, dtype=torch.long, device="cuda:1"), x,
                                tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_unaligned_views_use_the_scalar_path_correctly(offset):
    """Storage offsets that break 16-byte alignment, and odd sample sizes."""
    tab = ref.make_tables(T, device="cuda")
    base = torch.randn(4 * 37 + 8, device="cuda", dtype=torch.float16)
    x = base[offset: offset + 4 * 37].view(4, 37)
    noise = torch.randn(4, 37, device="cuda", dtype=torch.float16)
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    out = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    expected, mag = ref.q_sample(x, t, noise, tab)
    assert_within_rounding(out, expected, mag, torch.float16)


def test_more_than_2_pow_31_elements():
    n = 2**31 + 1024
    need = 3 * n * 2
    free, _ = torch.cuda.mem_get_info()
    if free < need + 2**30:
        pytest.skip(f"needs {need / 2**30:.1f} GiB free on the GPU")
    tab = ref.make_tables(T, device="cuda")
    x = torch.ones(2, n // 2, device="cuda", dtype=torch.bfloat16)
    noise = torch.full_like(x, 2.0)
    t = torch.tensor([0, 999], device="cuda")
    out = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    for b in (0, 1):
        expected = (tab["sqrt_alphas_cumprod"][t[b]] + 2 * tab["sqrt_one_minus_alphas_cumprod"][t[b]]).item()
        ends = out[b, [0, n // 2 - 1]].float()
        torch.testing.assert_close(ends, torch.full_like(ends, expected), rtol=8e-3, atol=0)
    del out, x, noise


# ---- what only a GPU can show (the GPU battery runs these; none has run yet) ---------------
def _q_tabs(tab):
    return tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]


def test_operators_run_on_the_current_stream():
    """Launched on the caller's stream: ordered after the work queued there
    (a long sleep, then the fill of the input), not on the default stream."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.zeros(8, 4096, device="cuda")
    t = torch.full((8,), 10, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(50_000_000)
        x.fill_(2.0)
        out = torch.ops.ddpm.q_sample(x, t, x, *_q_tabs(tab))
        sample, _ = torch.ops.ddpm.p_sample(x, x, t, x, *p_args(tab))
    side.synchronize()
    want = ref.q_sample(x.cpu(), t.cpu(), x.cpu(), ref.make_tables(T))[0].float()
    torch.testing.assert_close(out.cpu(), want)
    assert sample.abs().sum().item() > 0


def test_no_host_sync_in_any_operator():
    """set_sync_debug_mode("error") raises on any host synchronization: every
    operator, forward and backward, runs under it."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 3, 8, 8, device="cuda", requires_grad=True)
    mo = torch.randn(4, 6, 8, 8, device="cuda", requires_grad=True)
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    noise = torch.randn(4, 3, 8, 8, device="cuda")
    d_args = step_tables("ddim_sample", tab)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        q = torch.ops.ddpm.q_sample(x, t, noise, *_q_tabs(tab))
        m, _, _ = torch.ops.ddpm.posterior_mean_variance(
            x, q, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])
        s, p = torch.ops.ddpm.p_sample(mo, x, t, noise, *p_args(tab), "v", "learned_range", True)
        ds, dp = torch.ops.ddpm.ddim_sample(mo[:, :3], x, t, noise, *d_args, 0.5)
        ps, pp = torch.ops.ddpm.p_sample_philox(mo, x, t, 1, 4, *p_args(tab), "epsilon",
                                                "learned_range", False)
        xt, nz = torch.ops.ddpm.q_sample_philox(x, t, 2, 8, *_q_tabs(tab))
        (q.sum() + m.sum() + s.sum() + p.sum() + ds.sum() + dp.sum() + ps.sum() + pp.sum()
         + xt.sum()).backward()
        out = torch.empty_like(noise)
        torch.ops.ddpm.p_sample(mo.detach(), x.detach(), t, noise, *p_args(tab), "v",
                                "learned_range", True, sample=out)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_second_device_while_the_current_one_is_0():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    tab = ref.make_tables(T, device="cuda:1")
    x = torch.randn(4, 1000, device="cuda:1")
    t = torch.tensor([0, 1, 500, 999], device="cuda:1")
    with torch.cuda.device(0):
        out = torch.ops.ddpm.q_sample(x, t, x, *_q_tabs(tab))
    assert out.device == x.device
    want = torch.ops.ddpm.q_sample(x.cpu(), t.cpu(), x.cpu(), *(a.cpu() for a in _q_tabs(tab)))
    torch.testing.assert_close(out.cpu(), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_inputs(dtype):
    """Non-contiguous layouts are copied to contiguous ones first (a hidden copy
    docs/gpu.md mentions); the result is the contiguous input's."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 3, 16, 16, device="cuda", dtype=dtype)
    eps = torch.randn_like(x)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    cl = [v.to(memory_format=torch.channels_last) for v in (eps, x, noise)]
    got = torch.ops.ddpm.p_sample(*cl[:2], t, cl[2], *p_args(tab))
    want = torch.ops.ddpm.p_sample(eps, x, t, noise, *p_args(tab))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("op", ["p_sample_philox", "q_sample_philox"])
def test_noise_kernel_with_many_samples_per_block(op):
    """Samples of 7 elements: 146 of them per 1024-element noise block, most
    threads' elements in another sample than their neighbours': the same bits
    as the CPU."""
    tab_cpu = ref.make_tables(T)
    tab = {k: v.cuda() for k, v in tab_cpu.items()}
    x = torch.randn(300, 7)
    t = torch.randint(0, T, (300,))
    if op == "q_sample_philox":
        cpu = torch.ops.ddpm.q_sample_philox(x, t, 5, 8, *_q_tabs(tab_cpu))
        gpu = torch.ops.ddpm.q_sample_philox(x.cuda(), t.cuda(), 5, 8, *_q_tabs(tab))
        assert torch.equal(cpu[1], gpu[1].cpu())  # the noise, bit for bit
        torch.testing.assert_close(cpu[0], gpu[0].cpu(), rtol=0, atol=0)
    else:
        cpu = torch.ops.ddpm.p_sample_philox(x, x, t, 5, 8, *p_args(tab_cpu))
        gpu = torch.ops.ddpm.p_sample_philox(x.cuda(), x.cuda(), t.cuda(), 5, 8, *p_args(tab))
        for a, b in zip(cpu, gpu):
            torch.testing.assert_close(a, b.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("var_type", ["learned", "learned_range"])
def test_16_bit_learned_variance_vector_path(dtype, var_type):
    """Aligned 16-bit data of whole vectors take the 8-wide path, the variance
    half included; the device's expf differs from the CPU's in the last bits
    only, which one 16-bit rounding covers."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 3, 32, 32, device="cuda").to(dtype)
    mo = torch.randn(4, 6, 32, 32, device="cuda").to(dtype)
    mo[:, 3:] = mo[:, 3:].float().clamp(-1, 1).to(dtype)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    sample, pred = torch.ops.ddpm.p_sample(mo, x, t, noise, *p_args(tab), "epsilon", var_type, True)
    want = ref.p_sample(mo.cpu(), x.cpu(), t.cpu(), noise.cpu(), ref.make_tables(T), "epsilon",
                        var_type, True)
    assert_within_rounding(pred.cpu(), want[1], want[3], dtype, "pred_xstart", want[4][1])
    assert_within_rounding(sample.cpu(), want[0], want[2], dtype, "sample", want[4][0])


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="needs torch.compile")
def test_compile_reduce_overhead():
    """torch.compile(mode="reduce-overhead") records the step in a CUDA graph."""
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("linear", T)).cuda()
    x = torch.randn(8, 3, 16, 16, device="cuda")
    eps = torch.randn_like(x)
    noise = torch.randn_like(x)
    t = torch.full((8,), 300, device="cuda")

    def step(eps, x, t, noise):
        return sched.p_sample(eps, x, t, noise)

    compiled = torch.compile(step, mode="reduce-overhead")
    for _ in range(3):
        got = compiled(eps, x, t, noise)
    want = step(eps, x, t, noise)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_backward_and_posterior_in_a_cuda_graph():
    """The backward operators and posterior_mean_variance, captured and
    replayed on new inputs, give the eager results."""
    tab = ref.make_tables(T, device="cuda")
    mo = torch.randn(4, 6, 16, 16, device="cuda")
    x = torch.randn(4, 3, 16, 16, device="cuda")
    noise = torch.randn_like(x)
    grad = torch.randn_like(x)
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    post = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"], tab["posterior_variance"],
            tab["posterior_log_variance_clipped"])

    def run():
        g = torch.ops.ddpm.p_sample_backward(grad, grad, mo, x, t, noise, *p_args(tab), "v",
                                             "learned_range", True)
        m = torch.ops.ddpm.posterior_mean_variance(x, noise, t, *post)[0]
        q = torch.ops.ddpm.q_sample_backward(grad, t, *_q_tabs(tab))
        return g + (m,) + q

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = run()
    for _ in range(2):
        for v in (mo, x, noise, grad):
            v.normal_()
        t.random_(0, T)
        graph.replay()
        for got, want in zip(outs, run()):
            assert torch.equal(got, want)


def test_in_kernel_noise_refuses_capture():
    """Its (seed, offset) would be fixed in the graph: every replay would draw
    the same noise. Refused, with what to do instead."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 64, device="cuda")
    t = torch.tensor([0, 1, 2, 3], device="cuda")
    torch.ops.ddpm.q_sample_philox(x, t, 1, 4, *_q_tabs(tab))  # warm up
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="cannot be captured in a CUDA graph"):
        with torch.cuda.graph(graph):
            torch.ops.ddpm.q_sample_philox(x, t, 1, 4, *_q_tabs(tab))


def test_a_cuda_generator_gives_what_philox_seed_offset_gives():
    """The .generator overloads take (seed, offset) as philox_seed_offset does
    (the offset advanced by 4): the same numbers, the same generator after."""
    from torch_ddpm.noise import philox_seed_offset

    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 3, 16, 16, device="cuda")
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    ours = torch.Generator(device="cuda").manual_seed(3)
    theirs = torch.Generator(device="cuda").manual_seed(3)
    for _ in range(2):
        got = torch.ops.ddpm.p_sample_philox(x, x, t, ours, *p_args(tab))
        want = torch.ops.ddpm.p_sample_philox(x, x, t, *philox_seed_offset(theirs), *p_args(tab))
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert ours.get_offset() == theirs.get_offset()
        got = torch.ops.ddpm.q_sample_philox(x, t, ours, *_q_tabs(tab))
        want = torch.ops.ddpm.q_sample_philox(x, t, *philox_seed_offset(theirs), *_q_tabs(tab))
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_in_kernel_noise_from_a_generator_is_new_at_each_replay():
    """Captured with the default CUDA generator, the .generator overloads read
    its seed and offset on the device: each replay draws anew, the noise of
    (seed, the offset the generator had before the replay + the call's place
    in the graph), as PyTorch's own random ops in a graph."""
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(4, 3, 32, 32, device="cuda")
    t = torch.tensor([0, 1, 500, 999], device="cuda")
    gen = torch.cuda.default_generators[torch.cuda.current_device()]
    step_out = torch.empty_like(x)

    def calls():
        q = torch.ops.ddpm.q_sample_philox(x, t, None, *_q_tabs(tab))
        s = torch.ops.ddpm.p_sample_philox(x, q[0], t, None, *p_args(tab), sample=step_out)
        n = torch.ops.ddpm.philox_normal(x, None)
        return q[0], q[1], s, n

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        calls()  # warm up
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outs = calls()
    previous = None
    for _ in range(3):
        offset = gen.get_offset()
        graph.replay()
        torch.cuda.synchronize()
        assert gen.get_offset() == offset + 12  # three calls of 4
        key = torch_ddpm.noise._as_int64(gen.initial_seed())
        q = torch.ops.ddpm.q_sample_philox(x, t, key, offset, *_q_tabs(tab))
        s, _ = torch.ops.ddpm.p_sample_philox(x, q[0], t, key, offset + 4, *p_args(tab))
        n = torch.ops.ddpm.philox_normal(x, key, offset + 8)
        for got, want in zip(outs, (q[0], q[1], s, n)):
            assert torch.equal(got, want)
        if previous is not None:
            assert not torch.equal(outs[3], previous)
        previous = outs[3].clone()


def test_a_learned_variance_gradient_of_captured_generator_noise_is_refused():
    tab = ref.make_tables(T, device="cuda")
    x = torch.randn(2, 3, 8, 8, device="cuda")
    out = torch.randn(2, 6, 8, 8, device="cuda", requires_grad=True)
    t = torch.tensor([1, 500], device="cuda")
    torch.ops.ddpm.p_sample_philox(out, x, t, None, *p_args(tab), "epsilon", "learned_range")
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="known on the device only"):
        with torch.cuda.graph(graph):
            torch.ops.ddpm.p_sample_philox(out, x, t, None, *p_args(tab), "epsilon",
                                           "learned_range")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("table_dtype", [torch.float64, torch.float32])
def test_multiply_add_operators_are_bit_identical_to_the_cpu(dtype, table_dtype):
    """No fused multiply-add either side (-fmad=false, -ffp-contract=off) and no
    transcendental: q_sample (explicit and in-kernel noise), the posterior mean
    and the backward passes of both give the CPU's bits (docs/gpu.md: CPU and CUDA
    results)."""
    tab = {k: v.to(table_dtype) for k, v in ref.make_tables(T).items()}
    gtab = {k: v.cuda() for k, v in tab.items()}
    x = torch.randn(6, 3, 37, 11).to(dtype)
    y = torch.randn_like(x)
    t = torch.tensor([0, 1, 2, 500, 998, 999])
    qt = ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
    pt = ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
          "posterior_log_variance_clipped")

    def run(device, tabs):
        a, b, tt = x.to(device), y.to(device), t.to(device)
        return (torch.ops.ddpm.q_sample(a, tt, b, *(tabs[k] for k in qt)),
                *torch.ops.ddpm.q_sample_philox(a, tt, 11, 4, *(tabs[k] for k in qt)),
                *torch.ops.ddpm.q_sample_backward(a, tt, *(tabs[k] for k in qt)),
                torch.ops.ddpm.scale_by_timestep(a, tt, tabs[qt[0]]),
                *torch.ops.ddpm.posterior_mean_variance(a, b, tt, *(tabs[k] for k in pt)),
                *torch.ops.ddpm.posterior_mean_variance_backward(a, tt, *(tabs[k] for k in pt[:2])))

    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
    for i, (c, g) in enumerate(zip(run("cpu", tab), run("cuda", gtab))):
        assert torch.equal(c.contiguous().view(bits), g.cpu().contiguous().view(bits)), i



def test_diffusers_style_step_has_no_host_sync():
    """The scheduler's step, add_noise and get_velocity with GPU timesteps, under
    set_sync_debug_mode("error") (any host read of a device value raises)."""
    from torch_ddpm.fused_schedulers import DDIMScheduler, DDPMScheduler

    # thresholding: the bound's quantile (kthvalue) and its interpolation too
    for sched in (DDPMScheduler(variance_type="fixed_small", prediction_type="epsilon"),
                  DDIMScheduler(prediction_type="epsilon", clip_sample=True),
                  DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=0.9),
                  DDIMScheduler(thresholding=True, sample_max_value=1.5)):
        sched.set_timesteps(10, device="cuda")
        x = torch.randn(2, 3, 16, 16, device="cuda")
        gen = torch.Generator(device="cuda").manual_seed(0)
        sched.step(x, sched.timesteps[0], x, generator=gen)  # tables moved to the GPU first
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for t in sched.timesteps:
                x = sched.step(x, t, x, generator=gen).prev_sample
            t = sched.timesteps[:2]
            sched.add_noise(x, x, t)
            sched.get_velocity(x, x, t)
            sched.training_loss(x, x, x, t)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(x).all(), type(sched).__name__


def test_the_sigma_schedulers_step_with_no_host_sync():
    """torch_ddpm.diffusers' Euler, Euler ancestral and DPM-Solver++ steps (and
    scale_model_input) with GPU timesteps, under set_sync_debug_mode("error")."""
    pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
    import torch_ddpm.diffusers as ours

    for sched in (ours.EulerDiscreteScheduler(), ours.EulerAncestralDiscreteScheduler(),
                  ours.DPMSolverMultistepScheduler(solver_order=3),
                  ours.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++",
                                                   thresholding=True)):
        sched.set_timesteps(10, device="cuda")
        x = torch.randn(2, 3, 16, 16, device="cuda")
        gen = torch.Generator(device="cuda").manual_seed(0)
        t = sched.timesteps[0]
        x = sched.step(sched.scale_model_input(x, t), t, x, generator=gen).prev_sample
        torch.cuda.synchronize()  # (the tables went to the GPU at that first step)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for t in sched.timesteps[1:]:
                x = sched.step(sched.scale_model_input(x, t) * 0.1, t, x,
                               generator=gen).prev_sample
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(x).all(), type(sched).__name__


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_the_sigma_space_steps_give_the_cpu_results(dtype):
    """euler_sample (eta 0 and 1) and dpm_solver_sample (orders 1-3, ODE and
    SDE: the CUDA loop reading none, one and two earlier pred_xstart) against
    the CPU kernels, explicit and in-kernel noise, on a misaligned tail: within
    a rounding of the coefficients (the CUDA ones may differ in their last bit:
    log, exp and sqrt in double on either side)."""
    from torch_ddpm.tables import sigma_step_tables

    sigmas = torch.cat([torch.logspace(2, -2, 12, dtype=torch.float64), torch.zeros(1)])
    g = torch.Generator().manual_seed(0)
    x, out, noise, h1, h2 = (torch.randn(5, 3, 37, generator=g).to(dtype) for _ in range(5))
    t = torch.tensor([0, 3, 6, 10, 11])
    calls = [("euler_sample", eta, {}) for eta in (0.0, 1.0)] + [
        ("dpm_solver_sample", None, dict(order=order, algorithm=algorithm))
        for order in (1, 2, 3) for algorithm in ("dpmsolver++", "sde-dpmsolver++")]
    for kind, eta, dpm in calls:
        tables = list(sigma_step_tables(kind, sigmas).values())
        order = dpm.get("order", 1)  # (orders 2 and 3 end above sigma 0: h is finite)
        tt = t.clamp(min=order - 1, max=10 if order > 1 else 11)

        def run(device, philox):
            mv = lambda v: v.to(device)  # noqa: E731
            noise_args = (11, 8) if philox else (mv(noise),)
            op = getattr(torch.ops.ddpm, kind + ("_philox" if philox else ""))
            if kind == "euler_sample":
                return op(mv(out), mv(x), mv(tt), *noise_args, *map(mv, tables), eta)
            history = [mv(h1), mv(h2)][: dpm["order"] - 1] + [None] * (3 - dpm["order"])
            return op(mv(out), mv(x), mv(tt), *noise_args, *map(mv, tables), *history,
                      dpm["order"], "midpoint", dpm["algorithm"])

        for philox in (False, True):
            for c, g_ in zip(run("cpu", philox), run("cuda", philox)):
                torch.testing.assert_close(g_.cpu(), c, rtol=4 * torch.finfo(dtype).eps,
                                           atol=4 * torch.finfo(dtype).eps)
