"""Every functional operator overload under torch.export with the batch size
as a dimension: the operators' checks compare sizes as symbols (sym_sizes),
so a program exported at one batch size runs at others with eager's results.
Built from the registry (schema_calls), so a new operator is covered."""
import pytest
import torch

import schema_calls

if not (hasattr(torch, "export") and hasattr(torch.export, "Dim")):
    pytest.skip(f"torch.export with dynamic shapes needs torch 2.x (this is {torch.__version__})",
                allow_module_level=True)

BATCH, OTHER_BATCHES = 2, (3, 1)


def _functional():
    return [op for op in schema_calls.overloads()
            if not op.outputs and not op.takes("generator")]


class Call(torch.nn.Module):
    """op with the batch-sized tensors as inputs, everything else fixed."""

    def __init__(self, op, values, batched):
        super().__init__()
        self.op, self.values, self.batched = op, values, batched

    def forward(self, *tensors):
        values = dict(self.values, **dict(zip(self.batched, tensors)))
        return schema_calls.call(self.op, values)


# the arguments whose first dimension is the batch (the rest are tables,
# scalars and modes)
PER_SAMPLE = schema_calls.DATA | {"t", "grad", "clip_bound", "noise_offset"}


def _batched_names(values):
    return [name for name, value in values.items() if name in PER_SAMPLE and torch.is_tensor(value)]


def _values(op, batch):
    overrides = {}
    if op.takes("noise_offset"):
        overrides["noise_offset"] = torch.randn(batch, 3)
    if op.takes("clip_bound"):
        overrides["clip_bound"] = torch.rand(batch, dtype=torch.float64) + 0.5
    return schema_calls.build(op, batch=batch, shape=(3, 4), **overrides)


@pytest.mark.parametrize("op", _functional(), ids=str)
def test_an_exported_call_runs_at_other_batch_sizes(op):
    values = _values(op, BATCH)
    batched = _batched_names(values)
    assert batched, f"{op}: no batch-sized argument"
    module = Call(op, {k: v for k, v in values.items() if k not in batched}, batched)
    dim = torch.export.Dim("batch", min=1)
    exported = torch.export.export(module, tuple(values[k] for k in batched),
                                   dynamic_shapes=(tuple({0: dim} for _ in batched),))
    for batch in OTHER_BATCHES:
        other = _values(op, batch)
        got = exported.module()(*(other[k] for k in batched))
        want = module(*(other[k] for k in batched))
        got = got if isinstance(got, (tuple, list)) else (got,)
        want = want if isinstance(want, (tuple, list)) else (want,)
        for g, w in zip(got, want):
            assert g.shape[0] == batch
            # bit for bit, NaN where eager has NaN (a zero-SNR timestep)
            torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True,
                                       msg=f"{op} at batch {batch}")


def test_torch_compile_with_dynamic_shapes_traces_once_for_every_batch_size():
    from torch._dynamo.testing import CompileCounter

    tab = schema_calls.ref.make_tables(schema_calls.T)

    def train_and_sample(x, t, noise):
        x_t = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"],
                                      tab["sqrt_one_minus_alphas_cumprod"])
        return torch.ops.ddpm.p_sample(
            x_t, x_t, t, noise, tab["sqrt_recip_alphas_cumprod"],
            tab["sqrt_recipm1_alphas_cumprod"], tab["posterior_mean_coef1"],
            tab["posterior_mean_coef2"], tab["posterior_log_variance_clipped"], tab["betas"])[0]

    counter = CompileCounter()
    compiled = torch.compile(train_and_sample, backend=counter, dynamic=True, fullgraph=True)
    g = torch.Generator().manual_seed(0)
    for batch in (2, 3, 4, 7):
        # (t < T - 1: these tables end at zero SNR, where an epsilon output has
        # no x_0 and the step is NaN by design)
        args = (torch.randn(batch, 3, 8, generator=g),
                torch.randint(0, schema_calls.T - 1, (batch,), generator=g),
                torch.randn(batch, 3, 8, generator=g))
        assert torch.equal(compiled(*args), train_and_sample(*args))
    assert counter.frame_count == 1
