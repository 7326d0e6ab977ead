"""Whole sampling loops as CUDA graphs (torch_ddpm.graphs): the drop-in's
p_sample_loop / ddim_sample_loop(cuda_graph=True), the lucidrains patch's
sample(cuda_graph=True), denoising_loop for diffusers' pipelines, and
GraphedLoop itself. On the CPU: every refusal, named before anything runs, and
the API around the graphs; on a GPU: each graphed loop gives the eager loop's
samples from the same generator state, and draws anew at each replay."""
import pickle
import weakref

import pytest
import torch

import torch_ddpm
from adapter_cases import make_dropin
from conftest import requires_cuda
from torch_ddpm import graphs
from torch_ddpm.fused_schedulers import DDPMScheduler, denoising_loop
from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ModelVarType


class Net(torch.nn.Module):
    """A small deterministic denoiser: a convolution plus a timestep term."""

    def __init__(self, channels=2, learned=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels * (2 if learned else 1), 3, padding=1)

    def forward(self, x, t, scale=None, **kwargs):
        out = self.conv(x) * 0.1 + t.float().view(-1, 1, 1, 1) * 1e-4
        return out if scale is None else out * scale.view(-1, 1, 1, 1)


def dropin(spacing="10", var=ModelVarType.FIXED_SMALL):
    return make_dropin(GaussianDiffusion, ModelMeanType.EPSILON, var, spacing=spacing)


# ---- refusals, named before anything runs (any machine) -------------------------------------
@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
def test_a_loop_on_the_cpu_is_refused(loop):
    with pytest.raises(ValueError, match=rf"{loop[:-5]}_loop\(cuda_graph=True\): CUDA graphs "
                                         r"need a CUDA device, got cpu"):
        getattr(dropin(), loop)(Net(), (2, 2, 4, 4), cuda_graph=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(progress=True), r"a progress bar cannot advance inside a graph replay"),
    (dict(denoised_fn=lambda x: x), r"denoised_fn runs Python between the steps"),
    (dict(cond_fn=lambda x, t: x), r"cond_fn runs Python between the steps"),
    (dict(philox=1234), r"philox=1234 is an integer key, which would be fixed in the graph"),
])
def test_what_a_graph_cannot_replay_is_refused(kwargs, message):
    # (device="cuda": the checks run before anything touches a device)
    with pytest.raises(ValueError, match=message):
        dropin().p_sample_loop(Net(), (2, 2, 4, 4), device=torch.device("cuda"), cuda_graph=True,
                               **kwargs)


def test_an_overridden_step_is_refused():
    class Mine(GaussianDiffusion):
        def p_sample(self, *args, **kwargs):
            return super().p_sample(*args, **kwargs)

    from adapter_cases import DROPIN_T

    diffusion = Mine(betas=torch_ddpm.get_named_beta_schedule("cosine", DROPIN_T),
                     model_mean_type=ModelMeanType.EPSILON,
                     model_var_type=ModelVarType.FIXED_SMALL, loss_type=torch_ddpm.LossType.MSE)
    with pytest.raises(ValueError, match=r"p_sample or its progressive loop is overridden"):
        diffusion.p_sample_loop(Net(), (2, 2, 4, 4), device=torch.device("cuda"), cuda_graph=True)


def test_graphed_loop_refuses_cpu_generators_and_cpu_tensors():
    with pytest.raises(ValueError, match=r"generators must be CUDA torch.Generators"):
        graphs.GraphedLoop(lambda x: x, generators=[torch.Generator()])
    with pytest.raises(ValueError, match=r"inputs and generators on one CUDA device, got \['cpu'\]"):
        graphs.GraphedLoop(lambda x: x * 2)(torch.ones(3))


def test_denoising_loop_on_the_cpu_is_refused():
    sched = DDPMScheduler()
    sched.set_timesteps(5)
    with pytest.raises(ValueError, match=r"denoising_loop\(cuda_graph=True\): CUDA graphs need"):
        denoising_loop(Net(), sched, torch.randn(2, 2, 4, 4), cuda_graph=True)


def test_lucidrains_sample_on_the_cpu_is_refused():
    lucidrains = pytest.importorskip("denoising_diffusion_pytorch",
                                     reason="needs denoising-diffusion-pytorch from PyPI")
    unet = lucidrains.Unet(dim=8, dim_mults=(1, 2), flash_attn=False)
    diffusion = torch_ddpm.patch(lucidrains.GaussianDiffusion(unet, image_size=8, timesteps=4))
    with pytest.raises(ValueError, match=r"sample\(cuda_graph=True\): CUDA graphs need a CUDA"):
        diffusion.sample(batch_size=2, cuda_graph=True)
    assert diffusion.sample(batch_size=2).shape == (2, 3, 8, 8)  # eager, as before


# ---- the API around the graphs (any machine) ------------------------------------------------
def test_denoising_loop_is_the_pipelines_loop():
    # without a graph, the loop of diffusers' DDPMPipeline written out
    sched = DDPMScheduler()
    sched.set_timesteps(6)
    net, latents = Net(), torch.randn(2, 2, 4, 4)
    scale = torch.tensor([1.0, 0.5])
    got = denoising_loop(net, sched, latents, generator=torch.Generator().manual_seed(3),
                         scale=scale)
    g, want = torch.Generator().manual_seed(3), latents
    for t in sched.timesteps:
        want = sched.step(net(want, t, scale=scale), t, want, generator=g).prev_sample
    assert torch.equal(got, want)


def test_an_unhashable_model_keyword_argument_is_refused_by_name(host_graphs):
    with pytest.raises(ValueError, match=r"each model keyword argument must be a tensor .* or a "
                                         r"hashable value .*unhashable type: 'list'"):
        dropin().p_sample_loop(Net(), (2, 2, 4, 4), cuda_graph=True,
                               model_kwargs={"labels": [1, 2]})


def test_graphs_are_kept_per_key_weakly_and_released():
    from torch_ddpm import SpacedDiffusion, space_timesteps
    from adapter_cases import DROPIN_T

    diffusion = SpacedDiffusion(space_timesteps(DROPIN_T, "10"),
                                betas=torch_ddpm.get_named_beta_schedule("cosine", DROPIN_T),
                                model_mean_type=ModelMeanType.EPSILON,
                                model_var_type=ModelVarType.FIXED_SMALL,
                                loss_type=torch_ddpm.LossType.MSE)
    made = []

    def make():
        made.append(object())
        return made[-1]

    assert graphs.graphed_for(diffusion, "a", make) is graphs.graphed_for(diffusion, "a", make)
    graphs.graphed_for(diffusion, "b", make)
    assert len(made) == 2
    pickle.loads(pickle.dumps(diffusion))  # the graphs are not the diffusion's to pickle
    graphs.release(diffusion)
    graphs.graphed_for(diffusion, "a", make)
    assert len(made) == 3
    gone = weakref.ref(diffusion)
    del diffusion
    assert gone() is None  # held weakly: freed with the diffusion


def test_the_memory_key_sees_a_module_moved_or_cast():
    net = Net()
    key = graphs.memory_key(net)
    assert graphs.memory_key(net) == key
    net.double()
    assert graphs.memory_key(net) != key


# ---- the capture logic, host-emulated (any machine) -------------------------------------------
class HostGraphs:
    """CUDA graph capture emulated on the CPU, for GraphedLoop's own logic: a
    capture records without drawing (the generators are put back after the
    recording run), a replay runs the recorded loop again on the graph's input
    buffers and writes its outputs into the captured ones, advancing the
    generators as a replay does."""

    device_type = "cpu"
    captures = 0

    @staticmethod
    def default_generator(device):
        return torch.default_generator

    @staticmethod
    def warm_up(device, fn, inputs):
        fn(*inputs)

    @classmethod
    def capture(cls, fn, inputs, generators):
        cls.captures += 1
        every = [torch.default_generator, *generators]
        states = [g.get_state() for g in every]
        result = fn(*inputs)
        for g, state in zip(every, states):
            g.set_state(state)
        outputs = result if isinstance(result, tuple) else (result,)
        return (fn, inputs, outputs), result

    @staticmethod
    def replay(graph):
        fn, inputs, outputs = graph
        result = fn(*inputs)
        for out, new in zip(outputs, result if isinstance(result, tuple) else (result,)):
            out.copy_(new)


@pytest.fixture
def host_graphs(monkeypatch):
    monkeypatch.setattr(graphs, "runtime", HostGraphs)
    HostGraphs.captures = 0
    return HostGraphs


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
@pytest.mark.parametrize("noise_source", ["randn", "philox", "given"])
def test_graphed_loops_give_the_eager_loops_samples_host_emulated(host_graphs, loop, noise_source):
    torch.manual_seed(0)
    net = Net(learned=True)
    diffusion = dropin(var=ModelVarType.LEARNED_RANGE)
    shape, generator = (3, 2, 4, 4), torch.Generator()
    kwargs = dict(model_kwargs={"scale": torch.tensor([1.0, 0.5, 2.0])})
    if loop == "ddim_sample_loop":
        kwargs["eta"] = 0.5
    runs = {}
    for graphed in (False, True):
        torch.manual_seed(7)
        generator.manual_seed(11)
        samples = []
        for _ in range(3):  # later calls replay, and draw anew
            extra = {}
            if noise_source == "philox":
                extra["philox"] = generator
            elif noise_source == "given":
                extra["noise"] = torch.randn(shape)
            samples.append(getattr(diffusion, loop)(net, shape, cuda_graph=graphed, **kwargs,
                                                    **extra))
        runs[graphed] = samples + [torch.get_rng_state(), generator.get_state()]
    for a, b in zip(runs[False], runs[True]):
        assert torch.equal(a, b)
    assert not torch.equal(runs[True][0], runs[True][1])
    assert host_graphs.captures == 1  # one capture, replayed
    # another batch size, other settings, a model cast: captured anew
    kwargs["model_kwargs"] = {"scale": torch.ones(2)}
    getattr(diffusion, loop)(net, (2, 2, 4, 4), cuda_graph=True, **kwargs)
    net.double()
    kwargs["model_kwargs"] = {"scale": torch.ones(2).double()}
    getattr(diffusion, loop)(net, (2, 2, 4, 4), noise=torch.randn(2, 2, 4, 4, dtype=torch.double),
                             cuda_graph=True, **kwargs)
    assert host_graphs.captures == 3


def test_a_graphed_denoising_loop_gives_the_eager_loops_latents_host_emulated(host_graphs):
    torch.manual_seed(0)
    net, sched = Net(), DDPMScheduler()
    generator = torch.Generator()
    runs = []
    for graphed in (False, True):
        sched.set_timesteps(6)
        generator.manual_seed(5)
        latents = torch.randn(2, 2, 4, 4, generator=generator)
        runs.append([denoising_loop(net, sched, latents, generator=generator, cuda_graph=graphed)
                     for _ in range(2)] + [generator.get_state()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    sched.set_timesteps(6)  # the same chain again (as a pipeline sets it per image): replayed
    denoising_loop(net, sched, latents, generator=generator, cuda_graph=True)
    assert host_graphs.captures == 1
    sched.set_timesteps(4)
    denoising_loop(net, sched, latents, generator=generator, cuda_graph=True)
    assert host_graphs.captures == 2


def test_a_graphed_lucidrains_sample_gives_the_eager_samples_host_emulated(host_graphs):
    lucidrains = pytest.importorskip("denoising_diffusion_pytorch",
                                     reason="needs denoising-diffusion-pytorch from PyPI")
    torch.manual_seed(0)
    unet = lucidrains.Unet(dim=8, dim_mults=(1, 2), flash_attn=False)
    for sampling_timesteps in (6, 3):  # p_sample_loop, then DDIM
        diffusion = torch_ddpm.patch(lucidrains.GaussianDiffusion(
            unet, image_size=8, timesteps=6, sampling_timesteps=sampling_timesteps))
        runs = []
        for graphed in (False, True):
            torch.manual_seed(9)
            runs.append([diffusion.sample(batch_size=2, cuda_graph=graphed) for _ in range(2)]
                        + [torch.get_rng_state()])
        for a, b in zip(*runs):
            assert torch.equal(a, b)


# ---- on a GPU: the graph gives the eager loop's samples ---------------------------------------
@requires_cuda
@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
@pytest.mark.parametrize("var", [ModelVarType.FIXED_SMALL, ModelVarType.LEARNED_RANGE])
@pytest.mark.parametrize("noise_source", ["randn", "philox", "given"])
def test_a_graphed_loop_gives_the_eager_loops_samples_cuda(loop, var, noise_source):
    torch.manual_seed(0)
    net = Net(learned=var == ModelVarType.LEARNED_RANGE).cuda().eval()
    diffusion = dropin(var=var)
    shape = (3, 2, 8, 8)
    generator = torch.Generator("cuda")
    scale = torch.tensor([1.0, 0.5, 2.0], device="cuda")
    kwargs = dict(model_kwargs={"scale": scale})
    if loop == "ddim_sample_loop":
        kwargs["eta"] = 0.5
    runs = {}
    for graphed in (False, True):
        torch.cuda.manual_seed(7)
        generator.manual_seed(11)
        samples = []
        for _ in range(2):  # the second call replays, and draws anew
            extra = {}
            if noise_source == "philox":
                extra["philox"] = generator
            elif noise_source == "given":
                extra["noise"] = torch.randn(shape, device="cuda")
            samples.append(getattr(diffusion, loop)(net, shape, cuda_graph=graphed, **kwargs,
                                                    **extra))
        samples.append(torch.cuda.get_rng_state())
        samples.append(generator.get_state())
        runs[graphed] = samples
    eager, graphed = runs[False], runs[True]
    for a, b in zip(eager, graphed):
        assert torch.equal(a.cpu(), b.cpu())
    assert not torch.equal(graphed[0], graphed[1])


@requires_cuda
def test_a_graphed_denoising_loop_gives_the_eager_loops_latents_cuda():
    torch.manual_seed(0)
    net = Net().cuda().eval()
    sched = DDPMScheduler()
    sched.set_timesteps(8, device="cuda")
    generator = torch.Generator("cuda")
    runs = []
    for graphed in (False, True):
        generator.manual_seed(5)
        latents = torch.randn(2, 2, 8, 8, device="cuda", generator=generator)
        first = denoising_loop(net, sched, latents, generator=generator, cuda_graph=graphed)
        second = denoising_loop(net, sched, latents, generator=generator, cuda_graph=graphed)
        runs.append((first, second))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    sched.set_timesteps(8, device="cuda")  # the same chain again: the same graph
    assert len(graphs._BY_OWNER[sched]) == 1
    denoising_loop(net, sched, latents, generator=generator, cuda_graph=True)
    assert len(graphs._BY_OWNER[sched]) == 1


@requires_cuda
def test_a_model_that_reads_the_device_on_the_host_is_refused_cuda():
    class Syncing(Net):
        def forward(self, x, t, **kwargs):
            if float(x.abs().max()) > 1e9:  # a host read of a device value
                return x
            return super().forward(x, t)

    with pytest.raises(RuntimeError, match=r"could not be captured as a CUDA graph"):
        dropin().p_sample_loop(Syncing().cuda(), (2, 2, 4, 4), cuda_graph=True)


@pytest.mark.parametrize("kind", ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                                  "DPMSolverMultistepScheduler"])
def test_a_graphed_loop_of_the_sigma_schedulers_gives_the_eager_latents_host_emulated(
        host_graphs, kind):
    # stateful steps (the step index, DPM-Solver's history): each run, the
    # capture's warm-up and capture included, starts the chain from the top
    pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
    import torch_ddpm.diffusers as ours

    torch.manual_seed(0)
    net = Net()
    config = dict(solver_order=3, algorithm_type="sde-dpmsolver++") if "DPM" in kind else {}
    sched = getattr(ours, kind)(**config)
    generator = torch.Generator()
    runs = []
    for graphed in (False, True):
        sched.set_timesteps(6)
        generator.manual_seed(5)
        latents = torch.randn(2, 2, 4, 4, generator=generator) * sched.init_noise_sigma
        with torch.no_grad():  # (as pipelines sample: DPM-Solver's history as constants)
            runs.append([ours.denoising_loop(net, sched, latents, generator=generator,
                                             cuda_graph=graphed) for _ in range(2)]
                        + [generator.get_state()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    assert host_graphs.captures == 1


@requires_cuda
@pytest.mark.parametrize("kind", ["EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_a_graphed_loop_of_the_sigma_schedulers_gives_the_eager_latents_cuda(kind):
    # a stateful step (its index, DPM-Solver's history) captured whole, with
    # the noise from a CUDA generator; timesteps on the GPU (no host read)
    pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
    import torch_ddpm.diffusers as ours

    torch.manual_seed(0)
    net = Net().cuda().eval()
    config = dict(solver_order=3, algorithm_type="sde-dpmsolver++") if "DPM" in kind else {}
    sched = getattr(ours, kind)(**config)
    generator = torch.Generator("cuda")
    runs = []
    with torch.no_grad():
        for graphed in (False, True):
            sched.set_timesteps(8, device="cuda")
            generator.manual_seed(5)
            latents = torch.randn(2, 2, 8, 8, device="cuda", generator=generator)
            latents = latents * sched.init_noise_sigma
            runs.append([ours.denoising_loop(net, sched, latents, generator=generator,
                                             cuda_graph=graphed) for _ in range(2)])
    for eager, graphed in zip(*runs):
        torch.testing.assert_close(graphed, eager, rtol=0, atol=0)
