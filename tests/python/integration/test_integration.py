"""Meta tensors, TorchScript (script, save, load), and on torch 2.x
torch.library.opcheck, torch.compile(fullgraph=True) and torch.export."""
import io
from typing import List

import pytest
import torch

import reference as ref
import torch_ddpm
from conftest import DEVICES, requires_torch2
from helpers import MEAN_TYPES, VAR_TYPES
from torch_ddpm.tables import step_tables

T = 100


def p_args(tab):
    return step_tables("p_sample", tab)


def test_meta_shapes():
    tab = ref.make_tables(T, device="meta")
    x = torch.empty(5, 3, 8, 8, device="meta", dtype=torch.bfloat16)
    t = torch.empty(5, dtype=torch.long, device="meta")
    out = torch.ops.ddpm.q_sample(x, t, x, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    assert out.shape == x.shape and out.dtype == x.dtype and out.device.type == "meta"
    mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(
        x, x, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
        tab["posterior_variance"], tab["posterior_log_variance_clipped"])
    assert mean.shape == var.shape == log_var.shape == x.shape
    mo = torch.empty(5, 6, 8, 8, device="meta", dtype=torch.bfloat16)
    sample, pred = torch.ops.ddpm.p_sample(mo, x, t, x, *p_args(tab), "v", "learned_range", True)
    assert sample.shape == pred.shape == x.shape and sample.device.type == "meta"
    g = torch.ops.ddpm.p_sample_backward(x, x, mo, x, t, x, *p_args(tab), "v", "learned_range", True)
    assert g[0].shape == mo.shape and g[1].shape == x.shape
    with pytest.raises(RuntimeError, match="expected model_output to have shape"):
        torch.ops.ddpm.p_sample(x, x, t, x, *p_args(tab), "v", "learned", True)


def test_meta_autograd():
    tab = ref.make_tables(T, device="meta")
    x = torch.empty(2, 3, device="meta", requires_grad=True)
    t = torch.empty(2, dtype=torch.long, device="meta")
    out = torch.ops.ddpm.q_sample(x, t, x, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert gx.shape == x.shape and gx.device.type == "meta"


@torch.jit.script
def scripted_step(model_output: torch.Tensor, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                  r: torch.Tensor, rm1: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor,
                  lv: torch.Tensor, betas: torch.Tensor, sa: torch.Tensor, s1ma: torch.Tensor):
    x_noisy = torch.ops.ddpm.q_sample(x, t, noise, sa, s1ma)
    sample, pred = torch.ops.ddpm.p_sample(model_output, x_noisy, t, noise, r, rm1, c1, c2, lv, betas,
                                           "v", "fixed_large", True)
    mean, var, log_var = torch.ops.ddpm.posterior_mean_variance(pred, x_noisy, t, c1, c2, betas, lv)
    return sample, mean


@pytest.mark.parametrize("device", DEVICES)
def test_torchscript_roundtrip(device, tmp_path):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(4, 3, 5, device=device)
    mo = torch.randn_like(x)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 1, 50, 99], device=device)
    args = (mo, x, t, noise, *p_args(tab), tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    expected = scripted_step(*args)
    assert "ddpm::p_sample" in str(scripted_step.graph)
    path = tmp_path / "step.pt"
    torch.jit.save(scripted_step, str(path))
    loaded = torch.jit.load(str(path))
    got = loaded(*args)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_schedule_module_scripts(tmp_path):
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("cosine", T))

    class Sampler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.schedule = sched

        def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
            for i in range(self.schedule.num_timesteps - 1, -1, -1):
                t = torch.full([x.shape[0]], i, dtype=torch.long)
                x, _ = self.schedule.p_sample(torch.zeros_like(x), x, t, noise)
            return x

    scripted = torch.jit.script(Sampler())
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    x, noise = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(loaded(x, noise), Sampler()(x, noise))


def test_every_schedule_step_scripts_as_it_runs_eagerly():
    # DiffusionSchedule reads its tables from the buffer dict in eager mode and
    # as attributes in TorchScript: both must hand each step the same tables
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("cosine", T))

    class Steps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.s = sched

        def forward(self, x: torch.Tensor, t: torch.Tensor) -> List[torch.Tensor]:
            return [self.s.p_sample(x, x, t, x)[0], self.s.p_sample_philox(x, x, t, 1, 4)[0],
                    self.s.ddim_sample(x, x, t, x, 0.5)[0],
                    self.s.ddim_sample(x, x, t, x, 0.0, "epsilon", "fixed_small", True, True)[0],
                    self.s.ddim_sample_philox(x, x, t, 1, 4, 0.5)[0]]

    x, t = torch.randn(3, 2, 4), torch.tensor([0, 5, T - 1])
    eager, scripted = Steps()(x, t), torch.jit.script(Steps())(x, t)
    assert len(set(id(v) for v in eager)) == 5
    for a, b in zip(eager, scripted):
        assert torch.equal(a, b)


def sample_inputs(device, mean_type, var_type, dtype=torch.float32, requires_grad=False):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(3, 2, 4, device=device, dtype=dtype)
    c = 4 if var_type in ref.LEARNED else 2
    mo = torch.randn(3, c, 4, device=device, dtype=dtype)
    if var_type in ref.LEARNED:
        mo[:, 2:].uniform_(-1, 0)
    noise = torch.randn_like(x)
    t = torch.tensor([0, 7, 99], device=device)
    mo.requires_grad_(requires_grad)
    x.requires_grad_(requires_grad)
    return (mo, x, t, noise, *p_args(tab), mean_type, var_type, True)


@requires_torch2
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mean_type", MEAN_TYPES)
@pytest.mark.parametrize("var_type", VAR_TYPES)
def test_opcheck_p_sample(device, mean_type, var_type):
    args = sample_inputs(device, mean_type, var_type, requires_grad=True)
    torch.library.opcheck(torch.ops.ddpm.p_sample.default, args)


@requires_torch2
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_q_sample_and_posterior(device):
    tab = ref.make_tables(T, device=device)
    x = torch.randn(3, 2, 4, device=device, requires_grad=True)
    n = torch.randn(3, 2, 4, device=device, requires_grad=True)
    t = torch.tensor([0, 7, 99], device=device)
    torch.library.opcheck(torch.ops.ddpm.q_sample.default,
                          (x, t, n, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]))
    torch.library.opcheck(torch.ops.ddpm.posterior_mean_variance.default,
                          (x, n, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
                           tab["posterior_variance"], tab["posterior_log_variance_clipped"]))
    g = torch.randn(3, 2, 4, device=device)
    torch.library.opcheck(torch.ops.ddpm.q_sample_backward.default,
                          (g, t, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"]))
    torch.library.opcheck(torch.ops.ddpm.posterior_mean_variance_backward.default,
                          (g, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"]))
    mo, xx, tt, noise, *rest = sample_inputs(device, "epsilon", "learned_range")
    torch.library.opcheck(torch.ops.ddpm.p_sample_backward.default,
                          (torch.randn_like(xx), torch.randn_like(xx), mo, xx, tt, noise, *rest))


@requires_torch2
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_training_and_sampling_step(device):
    torch._dynamo.reset()
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("linear", T)).to(device)
    net = torch.nn.Linear(4, 4).to(device)

    def train_step(x0, t, noise):
        x_t = sched.q_sample(x0, t, noise)
        return ((net(x_t) - noise) ** 2).mean()

    def sample_step(x, t, noise):
        sample, pred = sched.p_sample(net(x), x, t, noise, "epsilon", "fixed_small", True)
        return sample, pred

    x0 = torch.randn(8, 3, 4, device=device)
    noise = torch.randn_like(x0)
    t = torch.randint(0, T, (8,), device=device)
    compiled_train = torch.compile(train_step, fullgraph=True, backend="aot_eager")
    loss = compiled_train(x0, t, noise)
    torch.testing.assert_close(loss, train_step(x0, t, noise))
    loss.backward()
    compiled_sample = torch.compile(sample_step, fullgraph=True)
    with torch.no_grad():
        got = compiled_sample(x0, t, noise)
        expected = sample_step(x0, t, noise)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@requires_torch2
def test_export_sampling_step():
    sched = torch_ddpm.DiffusionSchedule(torch_ddpm.get_named_beta_schedule("linear", T))

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.schedule = sched
            self.net = torch.nn.Linear(4, 4)

        def forward(self, x, t, noise):
            return self.schedule.p_sample(self.net(x), x, t, noise)[0]

    step = Step()
    x, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([5, 0])
    exported = torch.export.export(step, (x, t, noise))
    assert "ddpm.p_sample" in str(exported.graph)
    torch.testing.assert_close(exported.module()(x, t, noise), step(x, t, noise))
