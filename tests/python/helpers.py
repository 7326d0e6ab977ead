import importlib.util
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
MEAN_TYPES = ["epsilon", "start_x", "previous_x", "v"]
VAR_TYPES = ["fixed_small", "fixed_large", "learned", "learned_range"]

# Unit roundoff of the compute type and of the stored type.
_COMPUTE_U = {torch.float64: 2.0**-53}
_STORE_U = {torch.float64: 2.0**-53, torch.float32: 2.0**-24,
            torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
# Smallest spacing near zero of the stored type (half's subnormals).
_TINY = {torch.float64: 1e-300, torch.float32: 1e-37, torch.float16: 6e-8,
         torch.bfloat16: 1e-37}


def assert_within_rounding(out, ref, magnitude, dtype, what="output", slack=0.0):
    """|out - ref| <= 32 u_compute * magnitude + u_store |ref| + tiny, elementwise.

    magnitude is the sum of |terms| the output adds up, so the bound is the
    textbook error of a short float sum; u_store covers the one rounding of a
    16-bit result. NaN anywhere fails.
    """
    assert out.dtype == dtype, f"{what}: dtype {out.dtype}, expected {dtype}"
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)}, expected {tuple(ref.shape)}"
    u_compute = _COMPUTE_U.get(dtype, 2.0**-24)
    err = (out.double().cpu() - ref.cpu()).abs()
    if torch.is_tensor(slack):
        slack = slack.cpu()
    bound = (32 * u_compute * magnitude.cpu() + 1.01 * _STORE_U[dtype] * ref.abs().cpu()
             + _TINY[dtype] + slack)
    bad = ~(err <= bound)
    if bad.any():
        i = int(torch.nonzero(bad.flatten())[0])
        raise AssertionError(
            f"{what} ({dtype}): {int(bad.sum())} of {bad.numel()} elements off; first at flat "
            f"index {i}: got {out.flatten()[i].item()!r}, expected {ref.flatten()[i].item()!r}, "
            f"error {err.flatten()[i].item():.3g} > bound {bound.flatten()[i].item():.3g}"
        )


def randn(shape, dtype, device, scale=1.0, noncontiguous=False, generator=None):
    """Normal data in `dtype`; noncontiguous gives a strided view of the same shape."""
    shape = tuple(shape)
    if noncontiguous:
        big = torch.randn(shape + (2,), generator=generator) * scale
        x = big[..., 1]
        assert not x.is_contiguous() or x.numel() <= 1
        return x.to(dtype=dtype, device=device) if device == "cpu" and dtype == torch.float32 else \
            torch.empty(shape + (2,), dtype=dtype, device=device)[..., 1].copy_(x)
    return (torch.randn(shape, generator=generator) * scale).to(dtype=dtype, device=device)


def timesteps(batch, num_timesteps, device):
    """Every class of t: 0, 1, middle, T-1, then random ones."""
    base = [0, 1, num_timesteps // 2, num_timesteps - 1]
    t = torch.randint(0, num_timesteps, (batch,))
    t[: min(batch, 4)] = torch.tensor(base[: min(batch, 4)])
    return t.to(device)


def assert_results_match(got, want, assert_same):
    """got, want: name -> tensor or tuple of tensors, as noise_paths.py and
    isa_paths.py save them (one computed in another process or on another CPU);
    assert_same(label, got_tensor, want_tensor) compares each pair."""
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        mine = got[name] if isinstance(got[name], tuple) else (got[name],)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert len(mine) == len(expected), name
        for i, (a, b) in enumerate(zip(mine, expected)):
            assert_same(f"{name}[{i}]", a, b)


class TinyModel(torch.nn.Module):
    """A small conv net with a timestep embedding; 2C outputs for learned variances."""

    def __init__(self, channels=2, learned=False):
        super().__init__()
        out = channels * (2 if learned else 1)
        self.conv = torch.nn.Conv2d(channels, out, 3, padding=1)
        self.emb = torch.nn.Linear(1, out)
        self.learned = learned
        self.seen_t = []

    def forward(self, x, t, **kwargs):
        self.seen_t.append(t.detach().clone())
        h = self.conv(x) + self.emb(t.float().view(-1, 1) / 1000.0)[..., None, None]
        if self.learned:
            c = x.shape[1]
            return torch.cat([1.5 * torch.tanh(h[:, :c]), torch.tanh(h[:, c:])], dim=1)
        return 1.5 * torch.tanh(h)


def load_script(relative_path):
    """A script of the repository (benchmarks/..., scripts/...) imported as a
    module: they are not in a package."""
    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_close_to_diffusers(ours, theirs, equal_nan=False):
    # diffusers forms 1 - alphas_cumprod and the step coefficients in float32,
    # we in float64 from the same float32 alphas_cumprod: near t = 0 the
    # cancellation in 1 - abar makes that ~1e-4 relative, so the two agree to
    # that, not to float32's last bit.
    torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=2e-4, equal_nan=equal_nan)


def tiny_unet():
    """A small random diffusers UNet2DModel (8x8, 3 channels), seeded, for the
    pipeline tests."""
    import diffusers

    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3,
                                 block_out_channels=(8, 16), layers_per_block=1,
                                 norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"))


class NoHostSync:
    """Fails on what makes the host wait for a GPU: a device tensor's value
    read on the host (.item(), int(), bool(), a Python branch on it), an
    operator whose output shape depends on device values (nonzero,
    masked_select, unique), and a blocking copy of host data to the device (a
    CPU tensor .to(device), torch.tensor(data, device=...): PyTorch
    synchronizes the stream after such a copy). Run the code on meta tensors
    under it (`with NoHostSync():`): what it does there is what it would do on
    CUDA, which this machine has not. (Host scalars a kernel takes as
    arguments, as in x * 2.0, copy nothing.) A dispatch mode sees the
    operators; torch.tensor / torch.as_tensor from Python data on a device
    never reach one, so those two are wrapped while it is active."""

    _DATA_DEPENDENT = ("aten::nonzero", "aten::masked_select", "aten::_unique2",
                       "aten::unique_consecutive", "aten::unique_dim")

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = func._schema.name
                on_device = [a for a in args if isinstance(a, torch.Tensor)
                             and a.device.type != "cpu"]
                if name == "aten::_local_scalar_dense" and on_device:
                    raise AssertionError("a host sync: a device tensor's value read on the host")
                if name in NoHostSync._DATA_DEPENDENT and on_device:
                    raise AssertionError(f"a host sync: {name} (its output shape is "
                                         "the device's data)")
                if name == "aten::_to_copy" and args[0].device.type == "cpu" and \
                        kwargs.get("device") is not None and \
                        torch.device(kwargs["device"]).type != "cpu":
                    raise AssertionError("a host sync: a blocking copy of a CPU tensor to "
                                         f"{kwargs['device']}")
                if name == "aten::copy_" and args[0].device.type != "cpu" and \
                        args[1].device.type == "cpu":
                    raise AssertionError("a host sync: a blocking copy of a CPU tensor into "
                                         "a device tensor")
                return func(*args, **kwargs)

        def from_data(make):
            def wrapped(data, *args, **kwargs):
                device = kwargs.get("device")
                if device is not None and torch.device(device).type != "cpu" and \
                        not isinstance(data, torch.Tensor):
                    raise AssertionError(f"a host sync: {make.__name__} of Python data on "
                                         f"{device} (a blocking copy)")
                return make(data, *args, **kwargs)
            return wrapped

        self._saved = torch.tensor, torch.as_tensor
        torch.tensor, torch.as_tensor = (from_data(f) for f in self._saved)
        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            return self._mode.__exit__(*exc)
        finally:
            torch.tensor, torch.as_tensor = self._saved


_SAVED_PIPELINE_LOADS = """
import json, os, sys
import diffusers
index = json.load(open(os.path.join(sys.argv[1], "model_index.json")))
assert index["scheduler"] == ["diffusers", sys.argv[3]], index
pipe = getattr(diffusers, sys.argv[2]).from_pretrained(sys.argv[1])
assert type(pipe.scheduler) is getattr(diffusers, sys.argv[3]), type(pipe.scheduler)
assert "torch_ddpm" not in sys.modules
print(json.dumps({k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}))
"""


def saved_pipeline_config_without_us(path, pipeline, scheduler):
    """Loads the pipeline saved at path in another process that cannot import
    torch_ddpm (plain diffusers), asserts its model_index.json and its loaded
    scheduler name diffusers' class `scheduler`, and returns that scheduler's
    public config."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if "python_bindings" not in p)
    done = subprocess.run([sys.executable, "-c", _SAVED_PIPELINE_LOADS, str(path), pipeline,
                           scheduler], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
