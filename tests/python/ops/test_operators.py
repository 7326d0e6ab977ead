"""Generic checks of every operator in the registry (op_registry.py): forward
against the float64 reference over dtypes, layouts, modes and every class of
t; gradcheck; meta; opcheck (torch 2.x); the out=/sample= overloads; errors
naming each data argument; TorchScript. An operator added to the registry is
checked by all of them."""
import pytest
import torch

from conftest import DEVICES, requires_torch2
from helpers import DTYPES, assert_within_rounding
from op_registry import OPS, op_mode_params

SHAPES = [(4,), (4, 3), (5, 2, 5, 7)]


def shapes(op, mode):
    """Every shape, but [B, C, ...] ones for a step's learned variance (its
    model output has 2C channels)."""
    learned = op.needs_channels and mode[1] in ("learned", "learned_range")
    return [s for s in SHAPES if len(s) >= 3] if learned else SHAPES


def run(op, case, **kw):
    out = op.fn(*case.args, **kw)
    return (out,) if torch.is_tensor(out) else tuple(out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
@pytest.mark.parametrize("op,mode,table_dtype", [
    pytest.param(*p.values, table_dtype, id=f"{p.id}-{str(table_dtype)[6:]}-tables")
    for p in op_mode_params() for table_dtype in (torch.float64, torch.float32)
    # (a DDIM step takes float64 tables: it forms 1 - abar from them)
    if table_dtype == torch.float64 or p.values[0].float32_tables])
def test_forward_matches_the_float64_reference(op, mode, table_dtype, device, dtype,
                                               noncontiguous):
    for shape in shapes(op, mode):
        case = op.build(device, dtype, shape, mode, noncontiguous, table_dtype)
        outputs = run(op, case)
        # the float64 step of the same data; float32 tables round each
        # coefficient once more (2^-24 relative, a few of them per output)
        expected = op.build(device, dtype, shape, mode, noncontiguous).expected
        assert len(outputs) == len(expected)
        for i, (got, (want, mag, slack)) in enumerate(zip(outputs, expected)):
            assert got.device.type == device
            if table_dtype == torch.float32:
                slack = slack + 8 * 2.0**-24 * mag
            assert_within_rounding(got, want, mag, op.result_dtype(dtype), f"{op.name} output {i}",
                                   slack)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op,mode", op_mode_params())
def test_gradcheck(op, mode, device):
    case = op.build(device, torch.float64, (3, 2, 3), mode, False)
    args = list(case.args)
    if op.needs_channels and (len(mode) <= 3 or mode[3] is None):
        # a step clipping to [-1, 1]: not here, gradcheck's steps would cross
        # its kink; the per-sample bounds' modes keep theirs (and their
        # rescaling), their data lying clear of it
        var_type_at = next(i for i, a in enumerate(args) if isinstance(a, str) and a == mode[1])
        args[var_type_at + 1] = False  # clip_denoised
    inputs = [args[i].detach().clone().requires_grad_() for i in op.differentiable]

    def fn(*xs):
        full = list(args)
        for i, x in zip(op.differentiable, xs):
            full[i] = x
        out = op.fn(*full)
        return out if torch.is_tensor(out) else out[0]

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("op,mode", op_mode_params())
def test_meta_gives_the_real_shapes(op, mode):
    case = op.build("cpu", torch.float32, (5, 2, 5, 7), mode, False)
    real = run(op, case)
    meta_args = [a.to("meta") if torch.is_tensor(a) else a for a in case.args]
    meta = run(op, type(case)(tuple(meta_args), case.data, case.expected))
    for r, m in zip(real, meta):
        assert m.device.type == "meta" and m.shape == r.shape and m.dtype == r.dtype


@requires_torch2
@pytest.mark.parametrize("op,mode", op_mode_params())
def test_opcheck(op, mode):
    case = op.build("cpu", torch.float64, (3, 2, 5), mode, False)
    args = list(case.args)
    for i in op.differentiable:
        args[i] = args[i].detach().clone().requires_grad_()
    torch.library.opcheck(op.fn.default, tuple(args))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noncontiguous", [False, True])
@pytest.mark.parametrize("op", [op for op in OPS if op.out_overloads], ids=str)
def test_out_overloads_write_the_functional_results(op, device, dtype, noncontiguous):
    for mode in op.modes:
        case = op.build(device, dtype, (5, 2, 5, 7), mode, noncontiguous)
        want = run(op, case)
        for overload, names in op.out_overloads.items():
            outs = {n: torch.full_like(want[0], float("nan")) for n in names}
            got = getattr(op.fn, overload)(*case.args, **outs)
            for i, n in enumerate(names):
                assert torch.equal(outs[n], want[i]), (overload, n, mode)
            first = got if torch.is_tensor(got) else got[0]
            assert first.data_ptr() == outs[names[0]].data_ptr()


@pytest.mark.parametrize("op", OPS, ids=str)
def test_a_bad_dtype_is_named(op):
    case = op.build("cpu", torch.float32, (5, 2, 5, 7), op.modes[0], False)
    for position, name in case.data.items():
        args = list(case.args)
        args[position] = args[position].to(torch.int32)
        with pytest.raises(RuntimeError, match=rf"ddpm\.{op.name}: expected {name} to have dtype"):
            op.fn(*args)


@pytest.mark.parametrize("op", OPS, ids=str)
def test_torchscript_calls_it(op):
    case = op.build("cpu", torch.float32, (5, 2, 5, 7), op.modes[0], False)
    want = run(op, case)
    qualified = f"torch.ops.ddpm.{op.name}"
    types = {torch.Tensor: "torch.Tensor", bool: "bool", int: "int", float: "float", str: "str"}
    annotated = ", ".join(f"a{i}: {types[torch.Tensor if torch.is_tensor(a) else type(a)]}"
                          for i, a in enumerate(case.args))
    params = ", ".join(f"a{i}" for i in range(len(case.args)))
    unit = torch.jit.CompilationUnit(f"def f({annotated}):\n    return {qualified}({params})\n")
    scripted = unit.f
    got = scripted(*case.args)
    got = (got,) if torch.is_tensor(got) else tuple(got)
    assert f"ddpm::{op.name}" in str(scripted.graph)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
