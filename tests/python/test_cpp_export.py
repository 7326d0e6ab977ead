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
