"""CUDA-only behaviour: CUDA graph capture, streams, no host sync, NaN for a
bad timestep, 64-bit indexing. Skipped where no GPU (or no WITH_CUDA build)."""
import pytest
import torch

import reference as ref
import torch_ddpm
from conftest import requires_cuda
from helpers import assert_within_rounding

pytestmark = requires_cuda
T = 1000


def p_args(tab):
    return (tab["sqrt_recip_alphas_cumprod"], tab["sqrt_recipm1_alphas_cumprod"],
            tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_log_variance_clipped"], tab["betas"])


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
