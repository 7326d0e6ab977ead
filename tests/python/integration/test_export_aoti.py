"""torch.export and AOTInductor deployment (torch_ddpm.export): the exported
sampling step, its compiled package run from Python and from the C++ program
examples/aoti/run_package.cpp, against the eager loop and the TorchScript
Sampler. scripts/test.sh builds the C++ program against the installed CMake
package and points DDPM_AOTI_RUNNER at it. One package is compiled per run
(a module-scoped fixture: AOTInductor compiles C++, tens of seconds)."""
import os
import subprocess

import pytest
import torch

import torch_ddpm
from torch_ddpm.sampler import Sampler

export = pytest.importorskip("torch_ddpm.export")
if not (hasattr(torch, "export") and hasattr(torch.export, "Dim")):
    pytest.skip(f"torch.export and AOTInductor need torch >= 2.5 (this is {torch.__version__})",
                allow_module_level=True)

RUNNER = os.environ.get("DDPM_AOTI_RUNNER", "")
T = 50
SHAPE = (2, 3, 8, 8)


class Denoiser(torch.nn.Module):
    """A convolution and a timestep embedding. Every op rounds once (no
    nonlinearity Inductor would generate its own vectorized code for), so the
    compiled package gives the eager loop's bits."""

    def __init__(self, out_channels=3):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, out_channels, 3, padding=1)
        self.emb = torch.nn.Embedding(T, out_channels)

    def forward(self, x, t):
        return self.conv(x) * 0.5 + self.emb(t)[:, :, None, None]


CASES = {  # name: (output channels, mean type, variance type, ddim eta)
    "ddpm-fixed_small": (3, "epsilon", "fixed_small", -1.0),
    "ddpm-learned_range": (6, "epsilon", "learned_range", -1.0),
    "ddim-eta0.7": (3, "epsilon", "fixed_small", 0.7),
    "ddim-v-eta0": (3, "v", "fixed_small", 0.0),
}


def make(case, noise_from_key=False):
    channels, mean, var, eta = CASES[case]
    torch.manual_seed(0)
    denoiser = Denoiser(channels).eval()
    betas = torch_ddpm.get_named_beta_schedule("cosine", T)
    step = export.SamplingStep(denoiser, betas, mean, var, True, eta,
                               noise_from_key=noise_from_key).eval()
    sampler = Sampler(denoiser, betas, mean, var, True, eta).eval()
    return step, sampler


@pytest.mark.parametrize("noise_from_key", [False, True], ids=["noise", "key"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_step_loop_is_the_scripted_samplers_loop(case, noise_from_key):
    # the runner's noise (philox_normal at offset 4k), or the step's own from
    # that key, is the in-kernel noise
    step, sampler = make(case, noise_from_key)
    x_T = torch.ops.ddpm.philox_normal(torch.empty(SHAPE), 11, 0)
    with torch.no_grad():
        want = torch.jit.script(sampler)(x_T, 11)
    got = export.sample(step, SHAPE, 11, T)
    assert torch.equal(got, want)
    assert not torch.equal(export.sample(step, SHAPE, 12, T), want)


@pytest.mark.parametrize("noise_from_key", [False, True], ids=["noise", "key"])
@pytest.mark.parametrize("case", ["ddpm-learned_range", "ddim-eta0.7"])
def test_the_exported_step_is_the_eager_step(case, noise_from_key):
    step, _ = make(case, noise_from_key)
    exported = export.export_step(step, torch.randn(SHAPE))
    names = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any(name.startswith("ddpm.") for name in names), names
    for shape in (SHAPE, (5, *SHAPE[1:]), (1, *SHAPE[1:])):  # a dynamic batch
        assert torch.equal(export.sample(exported.module(), shape, 5, T,
                                         noise_from_key=noise_from_key),
                           export.sample(step, shape, 5, T))
    fixed = export.export_step(step, torch.randn(SHAPE), dynamic_batch=False)
    with pytest.raises(Exception):
        export.sample(fixed.module(), (5, *SHAPE[1:]), 5, T, noise_from_key=noise_from_key)


def test_a_respaced_schedule_gives_the_denoiser_the_original_timesteps():
    seen = []

    class Recorder(Denoiser):
        def forward(self, x, t):
            seen.append(t.clone())
            return super().forward(x, t)

    torch.manual_seed(0)
    betas = torch_ddpm.get_named_beta_schedule("cosine", 10)
    timestep_map = torch.arange(0, 50, 5)
    step = export.SamplingStep(Recorder(), betas, ddim_eta=0.0, timestep_map=timestep_map)
    export.sample(step, SHAPE, 3, 10)
    assert [int(t[0]) for t in seen] == list(range(45, -1, -5))
    with pytest.raises(ValueError, match=r"timestep_map of shape \[10\]"):
        export.SamplingStep(Denoiser(), betas, timestep_map=torch.arange(11))


@pytest.fixture(scope="module", params=["noise", "key"])
def package(request, tmp_path_factory):
    step, _ = make("ddpm-learned_range", noise_from_key=request.param == "key")
    path = str(tmp_path_factory.mktemp("aoti") / "step.pt2")
    exported = export.export_step(step, torch.randn(SHAPE))
    return step, export.compile_package(exported, path)


def test_the_compiled_package_gives_the_eager_loops_samples(package):
    step, path = package
    compiled = export.load_package(path)
    for shape in (SHAPE, (3, *SHAPE[1:])):  # compiled for any batch size
        assert torch.equal(export.sample(compiled, shape, 21, T,
                                         noise_from_key=step.noise_from_key),
                           export.sample(step, shape, 21, T))


@pytest.mark.skipif(not os.path.exists(RUNNER),
                    reason="needs the CMake build of examples/aoti (DDPM_AOTI_RUNNER, "
                           "scripts/test.sh)")
def test_the_cpp_program_runs_the_package_as_python_does(package, tmp_path):
    step, path = package
    out = tmp_path / "x0.bin"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    mode = ["key"] if step.noise_from_key else []
    result = subprocess.run([RUNNER, path, "21", str(T), str(out), *map(str, SHAPE), *mode],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    got = torch.frombuffer(bytearray(out.read_bytes()), dtype=torch.float32).view(SHAPE)
    assert torch.equal(got, export.sample(step, SHAPE, 21, T))
    assert torch.equal(got, export.sample(export.load_package(path), SHAPE, 21, T,
                                          noise_from_key=step.noise_from_key))


class TrainingLoss(torch.nn.Module):
    """A training step's loss: q_sample of the batch, the model, diffusion_mse."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.model = Denoiser()
        self.schedule = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("cosine", T))

    def forward(self, x_start, t, noise):
        s = self.schedule
        x_t = torch.ops.ddpm.q_sample(x_start, t, noise, s.sqrt_alphas_cumprod,
                                      s.sqrt_one_minus_alphas_cumprod)
        loss = torch.ops.ddpm.diffusion_mse(self.model(x_t, t), x_start, noise, t,
                                            s.sqrt_alphas_cumprod, s.sqrt_one_minus_alphas_cumprod)
        return loss.mean()


def test_a_training_loss_exports_and_its_gradients_match_eager():
    # torch.export captures the forward, with the ddpm operators as calls; the
    # exported module's backward runs through their C++ autograd, as eager's
    # does. (AOTInductor compiles inference graphs: a training step from C++
    # is libtorch with these operators, not a package.)
    loss = TrainingLoss()
    inputs = (torch.randn(SHAPE), torch.randint(0, T, (SHAPE[0],)), torch.randn(SHAPE))
    exported = torch.export.export(loss, inputs)
    names = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert {"ddpm.q_sample.default", "ddpm.diffusion_mse.default"} <= names, names
    module = exported.module()
    eager_loss, exported_loss = loss(*inputs), module(*inputs)
    assert torch.equal(exported_loss, eager_loss)
    eager_loss.backward()
    exported_loss.backward()
    got = dict(module.named_parameters())
    for name, param in loss.named_parameters():
        assert torch.equal(got[name].grad, param.grad), name


def test_a_diffusers_unet_exports_inside_the_step():
    # a user's own model: diffusers' UNet2DModel, wrapped to return a tensor.
    # It specializes a batch of 1 and bounds the batch above, which torch.export
    # reports; export_step takes that range.
    diffusers = pytest.importorskip("diffusers")

    class UNetDenoiser(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t):
            return self.unet(x, t).sample

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    step = export.SamplingStep(UNetDenoiser(unet),
                               torch_ddpm.get_named_beta_schedule("cosine", 20)).eval()
    with pytest.raises(Exception, match="batch"):  # the UNet's range, reported by torch.export
        export.export_step(step, torch.randn(SHAPE))
    exported = export.export_step(step, torch.randn(SHAPE), min_batch=2, max_batch=63)
    for batch in (2, 3):
        shape = (batch, *SHAPE[1:])
        assert torch.equal(export.sample(exported.module(), shape, 4, 20),
                           export.sample(step, shape, 4, 20))
