"""Rules that hold for every operator overload, each call built from the
registered schema (schema_calls.py), so a new operator or overload is held
to them without editing this file:
- it runs, on the CPU and on meta tensors;
- a timestep outside [0, T) is refused by name, also where the samples are
  empty (no element reads it);
- an output (out=, sample=) that shares memory with any other argument, a
  schedule table, t or a clip bound included, is refused naming both;
- a .generator call that is refused leaves the generator as it was;
- an inference tensor in a differentiable call is refused naming the operator
  and the argument."""
import pytest
import torch

import schema_calls as sc
from conftest import TORCH_2

OVERLOADS = sc.overloads()
BY_NAME = {str(op): op for op in OVERLOADS}


def with_t(op):
    return op.takes("t")


def params(ops):
    return [pytest.param(op, id=str(op)) for op in ops]


@pytest.mark.parametrize("op", params(OVERLOADS))
def test_every_overload_runs_on_cpu_and_meta(op):
    values = sc.build(op)
    sc.call(op, values)
    meta = sc.build(op, device="meta")
    results = sc.call(op, meta)
    for r in (results,) if torch.is_tensor(results) else results:
        assert r.device.type == "meta"


@pytest.mark.parametrize("op", params([op for op in OVERLOADS if with_t(op)]))
@pytest.mark.parametrize("shape", [(3, 4), (0,)], ids=["samples", "empty-samples"])
def test_a_timestep_out_of_range_is_refused_by_name(op, shape):
    for bad in (-1, sc.T):
        values = sc.build(op, shape=shape, t=torch.tensor([1, bad]))
        with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: expected every t in "
                                               rf"\[0, {sc.T}\) \(the schedule length\), got "
                                               rf"t\[1\] = {bad}"):
            sc.call(op, values)


def overlapping(x, out_like):
    """(x again, an output like out_like) in one buffer, the output starting one
    of its elements after x starts: they share memory in part (never the same
    tensor, which an in-place form may allow); x keeps its values."""
    x_bytes, out_bytes = x.numel() * x.element_size(), out_like.numel() * out_like.element_size()
    start = out_like.element_size()
    assert start < x_bytes
    buffer = torch.zeros(max(x_bytes, start + out_bytes), dtype=torch.uint8)
    x_again = buffer[:x_bytes].view(x.dtype).view(x.shape)
    x_again.copy_(x)
    out = buffer[start:start + out_bytes].view(out_like.dtype)
    return x_again, out.view(out_like.shape)


def overlap_cases():
    cases = []
    for op in OVERLOADS:
        for output in op.outputs:
            values = sc.build(op, **({"clip_bound": torch.full((2,), 1.5)}
                                     if op.takes("clip_bound") else {}),
                              **({"noise_offset": torch.zeros(2, 3)}
                                 if op.takes("noise_offset") else {}))
            for name, x in sc.tensors_of(op, values).items():
                if name != output:
                    cases.append(pytest.param(op, output, name, id=f"{op}-{output}-over-{name}"))
    return cases


@pytest.mark.parametrize("op,output,victim", overlap_cases())
def test_an_output_over_any_other_argument_is_refused_naming_both(op, output, victim):
    values = sc.build(op, **({"clip_bound": torch.full((2,), 1.5)}
                             if op.takes("clip_bound") else {}),
                      **({"noise_offset": torch.zeros(2, 3)} if op.takes("noise_offset") else {}))
    values[victim], values[output] = overlapping(values[victim], values[output])
    before = {k: v.clone() for k, v in sc.tensors_of(op, values).items() if k not in op.outputs}
    with pytest.raises(RuntimeError) as info:
        with torch.no_grad():
            sc.call(op, values)
    message = str(info.value)
    assert f"ddpm.{op.name}" in message and output in message and victim in message, message
    for k, v in before.items():  # nothing was written
        if k != victim:
            assert torch.equal(values[k], v) or v.isnan().all(), k


GENERATOR_OPS = [op for op in OVERLOADS if op.takes("generator")]


@pytest.mark.parametrize("op", params([op for op in GENERATOR_OPS if with_t(op)]))
@pytest.mark.parametrize("shape", [(3, 4), (0,)], ids=["samples", "empty-samples"])
def test_a_refused_generator_call_leaves_the_generator(op, shape):
    g = torch.Generator().manual_seed(5)
    values = sc.build(op, shape=shape, t=torch.tensor([1, sc.T + 3]), generator=g)
    state = g.get_state()
    with pytest.raises(RuntimeError, match="expected every t in"):
        sc.call(op, values)
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("op", params([op for op in GENERATOR_OPS
                                       if op.takes("model_var_type") and not op.outputs]))
def test_a_learned_variance_step_refused_for_a_table_with_grad_leaves_the_generator(op):
    # (the one .generator path that draws its key before the kernel: a learned
    # variance's gradient runs the seeded operator)
    g = torch.Generator().manual_seed(5)
    values = sc.build(op, shape=(2, 4), dtype=torch.float64, generator=g,
                      model_var_type="learned_range")
    values["model_output"] = torch.cat([values["model_output"]] * 2, dim=1).requires_grad_()
    table = next(a.name for a in op.arguments if a.name.startswith("sqrt_recip"))
    values[table] = values[table].clone().requires_grad_()
    state = g.get_state()
    with pytest.raises(RuntimeError, match=f"{table} requires grad"):
        sc.call(op, values)
    assert torch.equal(g.get_state(), state)


DIFFERENTIABLE = [op for op in OVERLOADS
                  if not op.outputs and not op.name.endswith("_backward")
                  and op.name not in ("scale_by_timestep", "philox_normal")]


@pytest.mark.skipif(not TORCH_2 and not hasattr(torch, "inference_mode"),
                    reason="needs torch.inference_mode")
@pytest.mark.parametrize("op", params(DIFFERENTIABLE))
def test_an_inference_tensor_in_a_differentiable_call_is_named(op):
    # made under torch.inference_mode() (a cached table, a timestep), then used
    # where autograd must save it: the error names the operator and argument
    with torch.inference_mode():
        t = torch.tensor([1, 5])
    values = sc.build(op, dtype=torch.float64, t=t)
    first = next(a.name for a in op.arguments if a.name in sc.DATA)
    values[first] = values[first].clone().requires_grad_()
    with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: t is an inference tensor"):
        sc.call(op, values)
    # the same call without gradients runs
    with torch.no_grad():
        sc.call(op, values)


def test_the_front_ends_take_any_64_bit_seed_as_its_twos_complement():
    # The raw operators' seed is a schema int (int64): a seed in [2^63, 2^64)
    # is refused by PyTorch there; the front ends take [-2^63, 2^64) and pass
    # seed - 2^64 for the upper half, the same 64 key bits.
    import torch_ddpm

    x = torch.zeros(2, 8)
    for seed in (2**63, 2**64 - 1, 2**63 + 12345):
        got = torch_ddpm.philox_normal(x, seed, 4)
        assert torch.equal(got, torch.ops.ddpm.philox_normal(x, seed - 2**64, 4))
    with pytest.raises((RuntimeError, TypeError)):
        torch.ops.ddpm.philox_normal(x, 2**63, 4)
    for seed in (2**64, -2**63 - 1):
        with pytest.raises(ValueError, match="seed"):
            torch_ddpm.philox_normal(x, seed, 4)
