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
import re

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
    table = next(a.name for a in op.arguments if a.name.startswith("sqrt_recip") or a.name == "sigmas")
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


# ---- bad arguments, named ----------------------------------------------------------------
BAD_T = [
    (lambda t: t.int(), r"t to be an int64 tensor, got Int"),
    (lambda t: t.double(), r"t to be an int64 tensor, got Double"),
    (lambda t: t[:1], r"t to have shape \[2\] \(one timestep per sample\)"),
    (lambda t: t[None], r"t to have shape \[2\]"),
    (lambda t: t[0], r"t to have shape \[2\]"),
    (lambda t: t.to("meta"), r"t on cpu like the data, got meta"),
]


@pytest.mark.parametrize("op", params([op for op in OVERLOADS if with_t(op)]))
@pytest.mark.parametrize("bad", range(len(BAD_T)))
def test_bad_timesteps_are_named(op, bad):
    change, message = BAD_T[bad]
    values = sc.build(op)
    values["t"] = change(values["t"])
    with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: expected {message}"):
        sc.call(op, values)


def table_names(op, values):
    return [a.name for a in op.arguments if torch.is_tensor(values[a.name])
            and values[a.name].dim() == 1 and values[a.name].shape[0] == sc.T
            and values[a.name].is_floating_point()]


def table_cases():
    return [pytest.param(op, name, id=f"{op}-{name}") for op in OVERLOADS
            for name in table_names(op, sc.build(op))]


@pytest.mark.parametrize("op,table", table_cases())
def test_a_bad_table_is_named(op, table):
    good = sc.build(op)
    first = table_names(op, good)[0]
    cases = [
        (good[table].view(4, 5), rf"expected {table} to be a 1-D schedule table of length T"),
        (good[table].bfloat16(), rf"expected {table} to be float32 or float64, got BFloat16"),
        (good[table][:0], rf"expected {table} to have at least one timestep"),
        (good[table].to("meta"), rf"expected {table} on cpu like the data, got meta"),
    ]
    if table != first:
        cases += [(good[table][:7], rf"expected {table} to have length {sc.T} like {first}, "
                                    r"got 7"),
                  (good[table].float(), rf"expected {table} to have dtype Double like {first}")]
    for bad, message in cases:
        values = dict(good, **{table: bad})
        with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: {message}"):
            sc.call(op, values)


def data_cases():
    return [pytest.param(op, name, id=f"{op}-{name}") for op in OVERLOADS for name in
            [a.name for a in op.arguments if a.name in sc.DATA | {"grad"}
             and a.name not in op.outputs and torch.is_tensor(sc.build(op)[a.name])]]


@pytest.mark.parametrize("op,name", data_cases())
def test_a_data_argument_of_a_bad_dtype_or_device_is_named(op, name):
    values = sc.build(op)
    # (the argument the others are checked against, x_t or x_start, is named as
    # the reference: "expected noise on meta like x_start")
    cases = [(values[name].int(), r"to (have dtype|be the loss's gradient, a Float)")]
    # a shape or a device is wrong only against another data argument's
    if len([a for a in op.arguments if a.name in sc.DATA | {"grad"}
            and torch.is_tensor(values[a.name]) and a.name not in op.outputs]) > 1:
        cases += [(values[name].to("meta"), r"(on|to be the loss's gradient.*on) (cpu|meta)"),
                  (values[name][:, None] if values[name].dim() > 1 else values[name][None],
                   r"to (have shape|be the loss's gradient)")]
    for bad, message in cases:
        with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: expected \w+ {message}") as e:
            sc.call(op, dict(values, **{name: bad}))
        assert re.search(rf"\b{name}\b", str(e.value)), str(e.value)


def constant_cases():
    """(op, the argument): a table (or another constant tensor) of a
    differentiable overload, and any tensor of an out= overload."""
    cases = []
    for op in DIFFERENTIABLE:
        values = sc.build(op, weight=torch.rand(sc.T, dtype=torch.float64)) if op.takes(
            "weight") else sc.build(op)
        cases += [pytest.param(op, n, id=f"{op}-{n}") for n in table_names(op, values)]
    for op in OVERLOADS:
        if op.outputs:
            cases += [pytest.param(op, n, id=f"{op}-{n}")
                      for n, v in sc.tensors_of(op, sc.build(op, dtype=torch.float64)).items()
                      if v.is_floating_point()]
    return cases


@pytest.mark.parametrize("op,name", constant_cases())
def test_an_argument_without_a_gradient_that_requires_grad_is_named(op, name):
    values = sc.build(op, dtype=torch.float64)
    if op.takes("weight"):
        values["weight"] = torch.rand(sc.T, dtype=torch.float64)
    if not op.outputs:  # a differentiable input requires grad too: a graph is built
        first = next(a.name for a in op.arguments if a.name in sc.DATA)
        values[first] = values[first].clone().requires_grad_()
    values[name] = values[name].clone().requires_grad_()
    qualified = f"ddpm.{op.name}" + (f".{op.fn._schema.overload_name}" if op.outputs else "")
    if name in op.outputs:
        message = rf"{name} requires grad, and an output= tensor is written in place"
    elif op.outputs:
        message = (rf"{name} requires grad, but the out= and sample= overloads are not "
                   rf"differentiable .* pass {name}.detach\(\)")
    else:
        message = rf"{name} requires grad, but ddpm\.{op.name} has no gradient for it"
    with pytest.raises(RuntimeError, match=rf"{re.escape(qualified)}: {message}"):
        sc.call(op, values)
    if name not in op.outputs:
        with torch.no_grad():  # nothing to refuse where no graph is built
            sc.call(op, values)
