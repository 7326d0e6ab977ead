"""TorchScript export to C++: a sampler scripted and saved here runs in the C++
program examples/run_sampler.cpp (built by CMakeLists.txt) with the same
result. scripts/test.sh points DDPM_CPP_BUILD_DIR at the CMake build."""
import os
import subprocess

import pytest
import torch

import torch_ddpm
from torch_ddpm.sampler import Sampler

BUILD_DIR = os.environ.get("DDPM_CPP_BUILD_DIR", "")
BINARY = os.path.join(BUILD_DIR, "ddpm_run_sampler")


class Denoiser(torch.nn.Module):
    def __init__(self, channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = torch.nn.Embedding(50, channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x) + self.emb(t)[:, :, None, None])


def make_sampler(ddim_eta):
    torch.manual_seed(0)
    betas = torch_ddpm.get_named_beta_schedule("cosine", 50)
    return Sampler(Denoiser(), betas, "epsilon", "fixed_small", True, ddim_eta).eval()


@pytest.mark.parametrize("ddim_eta", [-1.0, 0.0, 0.7])
def test_scripted_sampler_same_in_python(ddim_eta, tmp_path):
    eager = make_sampler(ddim_eta)
    scripted = torch.jit.script(eager)
    torch.jit.save(scripted, str(tmp_path / "s.pt"))
    loaded = torch.jit.load(str(tmp_path / "s.pt"))
    with torch.no_grad():
        torch.manual_seed(5)
        a = eager(torch.randn(2, 3, 8, 8))
        torch.manual_seed(5)
        b = loaded(torch.randn(2, 3, 8, 8))
    torch.testing.assert_close(a, b)


@pytest.mark.skipif(not os.path.exists(BINARY),
                    reason="needs the CMake build of examples/run_sampler.cpp (DDPM_CPP_BUILD_DIR)")
@pytest.mark.parametrize("ddim_eta", [-1.0, 0.7])
def test_saved_sampler_runs_in_cpp(ddim_eta, tmp_path):
    sampler = torch.jit.script(make_sampler(ddim_eta))
    path = tmp_path / "sampler.pt"
    torch.jit.save(sampler, str(path))
    shape = (2, 3, 8, 8)
    with torch.no_grad():
        torch.manual_seed(1234)
        expected = sampler(torch.randn(shape))
    out = tmp_path / "x0.bin"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    result = subprocess.run([BINARY, str(path), "1234", str(out), *map(str, shape)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    got = torch.frombuffer(bytearray(out.read_bytes()), dtype=torch.float32).view(shape)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ddim_eta", [-1.0, 0.7])
def test_scripted_sampler_philox_same_in_python(ddim_eta, tmp_path):
    """forward(x, seed): in-kernel noise, eager == scripted, and a seed decides it."""
    eager = make_sampler(ddim_eta)
    scripted = torch.jit.script(eager)
    x_T = torch.ops.ddpm.philox_normal(torch.empty(2, 3, 8, 8), 77, 0)
    with torch.no_grad():
        a = eager(x_T, 77)
        b = scripted(x_T, 77)
        c = scripted(x_T, 78)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.skipif(not os.path.exists(BINARY),
                    reason="needs the CMake build of examples/run_sampler.cpp (DDPM_CPP_BUILD_DIR)")
def test_saved_sampler_philox_runs_in_cpp(tmp_path):
    """The Philox path from C++ (x_T and every step's noise from the seed): same bits."""
    sampler = torch.jit.script(make_sampler(-1.0))
    path = tmp_path / "sampler.pt"
    torch.jit.save(sampler, str(path))
    shape = (2, 3, 8, 8)
    with torch.no_grad():
        expected = sampler(torch.ops.ddpm.philox_normal(torch.empty(shape), 99, 0), 99)
    out = tmp_path / "x0.bin"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    result = subprocess.run([BINARY, str(path), "99", str(out), *map(str, shape), "philox"],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    got = torch.frombuffer(bytearray(out.read_bytes()), dtype=torch.float32).view(shape)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def functional_chain(sampler, x, seed=None):
    """The sampler's chain written with the functional operators: a fresh
    tensor per step, pred_xstart computed and dropped."""
    s = sampler.schedule
    for step, i in enumerate(range(s.num_timesteps - 1, -1, -1), start=1):
        t = torch.full([x.shape[0]], i, dtype=torch.long)
        model_output = sampler.denoiser(x, t)
        mode = (sampler.model_mean_type, sampler.model_var_type, sampler.clip_denoised)
        ddim_tables = (s.sqrt_recip_alphas_cumprod, s.sqrt_recipm1_alphas_cumprod,
                       s.posterior_mean_coef1, s.posterior_mean_coef2, s.alphas_cumprod,
                       s.alphas_cumprod_prev, sampler.ddim_eta)
        if seed is None and sampler.ddim_eta < 0:
            x = s.p_sample(model_output, x, t, torch.randn_like(x), *mode)[0]
        elif seed is None:
            x = torch.ops.ddpm.ddim_sample(model_output, x, t, torch.randn_like(x), *ddim_tables,
                                           *mode)[0]
        elif sampler.ddim_eta < 0:
            x = s.p_sample_philox(model_output, x, t, seed, 4 * step, *mode)[0]
        else:
            x = torch.ops.ddpm.ddim_sample_philox(model_output, x, t, seed, 4 * step,
                                                  *ddim_tables, *mode)[0]
    return x


@pytest.mark.parametrize("seed", [None, 31])
@pytest.mark.parametrize("ddim_eta", [-1.0, 0.0, 0.7])
def test_sampler_steps_in_place_give_the_functional_chain(ddim_eta, seed):
    """Without gradients the sampler writes each x_{t-1} over x_t with the
    sample_out overloads (no pred_xstart): the same bits as the functional
    chain, the same random numbers consumed, and the caller's x untouched."""
    sampler = make_sampler(ddim_eta)
    x_T = torch.randn(2, 3, 8, 8)
    x_T_before = x_T.clone()
    with torch.no_grad():
        torch.manual_seed(3)
        expected = functional_chain(sampler, x_T, seed)
        after_expected = torch.rand(1)
        torch.manual_seed(3)
        got = sampler(x_T, seed)
        after_got = torch.rand(1)
    assert torch.equal(got, expected)
    assert torch.equal(after_got, after_expected)
    assert torch.equal(x_T, x_T_before) and got.data_ptr() != x_T.data_ptr()


@pytest.mark.parametrize("seed", [None, 31])
def test_sampler_stays_differentiable_with_gradients_on(seed):
    """With grad mode on and a denoiser with parameters, the functional
    operators run (sample_out has no autograd): gradients reach the denoiser."""
    sampler = make_sampler(0.7)
    x_T = torch.randn(2, 3, 8, 8)
    torch.manual_seed(4)
    got = sampler(x_T, seed)
    got.square().sum().backward()
    assert sampler.denoiser.conv.weight.grad is not None
    assert sampler.denoiser.conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        torch.manual_seed(4)
        assert torch.equal(sampler(x_T, seed), got.detach())
