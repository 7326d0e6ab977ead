"""Property-based fuzzing of every operator and overload (hypothesis).

Each example draws an operator and overload, a data dtype and a table dtype,
a shape (empty batches and samples of one element included), contiguous or
strided inputs, a schedule (T from 1; linear, cosine or zero terminal SNR),
timesteps, modes, a Philox key, and for the out= and sample= overloads an
output that is new memory, one of the inputs, or a view overlapping one.
Steps also draw the limit on x_0 (none, [-1, 1], a per-sample clip_bound,
with or without clip_rescale) and DDIM's use_clipped_model_output.
Sometimes one argument is broken (a timestep out of range, a wrong dtype,
shape or length, an unknown mode, a negative eta). The call must then either
- match the float64 reference (tests/python/reference.py) within rounding,
  and, for an output written in place, the functional result bit for bit, or
- raise an error whose message starts with the operator's name and names the
  argument (the broken one, or the output and input that may not alias).

CI runs a fixed set of examples (derandomized); TORCH_DDPM_FUZZ_EXAMPLES=N
runs N random examples per test instead (e.g. 20000 for a long run).
"""
import os
import re

import pytest
import torch
from torch_ddpm.tables import STEP_TABLES  # noqa: E402

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import reference as ref  # noqa: E402
from helpers import DTYPES, MEAN_TYPES, VAR_TYPES, assert_within_rounding  # noqa: E402
from torch_ddpm.schedules import cosine_betas, linear_betas, schedule_tables  # noqa: E402

_LONG = os.environ.get("TORCH_DDPM_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_LONG) if _LONG else 120, derandomize=not _LONG,
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

Q_TABLES = ("sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")
POST_TABLES = ("posterior_mean_coef1", "posterior_mean_coef2", "posterior_variance",
               "posterior_log_variance_clipped")
# each step's tables, by ddim


class Broken(Exception):
    """The example breaks `arg` on purpose: the call must raise naming it."""


# ---- drawing inputs ----------------------------------------------------------------------
@st.composite
def schedules(draw):
    kind = draw(st.sampled_from(["linear", "cosine", "zero_snr"]))
    # (a linear schedule scales its betas by 1000/T: T >= 50 keeps them below 1)
    T = draw(st.integers(50, 80) if kind == "linear" else st.integers(1, 40))
    return kind, T


def tables_of(kind, T):
    betas = linear_betas(T) if kind == "linear" else cosine_betas(T)
    if kind == "zero_snr":
        betas[-1] = 1.0
    tabs = schedule_tables(betas)
    ref.add_sigma_chain(tabs)
    return tabs


def table_dtypes(dtype):
    """float32 tables round every coefficient to float32: within the rounding
    of float32 and 16-bit data, not of float64 data."""
    return st.sampled_from([torch.float64] if dtype == torch.float64
                           else [torch.float64, torch.float32])


@st.composite
def shapes(draw):
    batch = draw(st.integers(0, 4))
    channels = draw(st.integers(1, 3))
    spatial = draw(st.lists(st.integers(1, 9), min_size=0, max_size=2))
    return (batch, channels, *spatial)


def make_data(draw, shape, dtype, name, scale=2.0):
    """A tensor of `shape` in `dtype`: contiguous, a strided view, or expanded
    along the batch."""
    layout = draw(st.sampled_from(["contiguous", "strided", "expanded"]), label=f"{name} layout")
    seed = draw(st.integers(0, 2**31 - 1), label=f"{name} seed")
    g = torch.Generator().manual_seed(seed)
    if layout == "strided":
        return (torch.randn(*shape, 2, generator=g) * scale).to(dtype)[..., 1]
    if layout == "expanded" and len(shape) >= 1 and shape[0] > 1:
        return (torch.randn(1, *shape[1:], generator=g) * scale).to(dtype).expand(shape)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def make_timesteps(draw, batch, T, kind, mean_type=None, sigma_steps=0):
    """sigma_steps: how many sigmas from t on a sigma-space step reads (Euler
    1, DPM-Solver of order k: k), none of which may be a zero-SNR schedule's
    infinite one."""
    top = T - 1
    if kind == "zero_snr" and (mean_type == "epsilon" or sigma_steps):
        # epsilon has no x_0 at abar = 0 (see test_small_schedules.py); a
        # sigma-space step none at sigma = inf
        top = T - 1 - max(1, sigma_steps)
        if top < 0:
            return None
    values = draw(st.lists(st.integers(0, top), min_size=batch, max_size=batch), label="t")
    return torch.tensor(values, dtype=torch.long)


def maybe_break(draw, args, names, T):
    """Breaks at most one argument of `args` (a dict) in place; returns the
    name of the broken one, or None. names: (data tensors, tables)."""
    data_names, table_names = names
    what = draw(st.sampled_from(["none"] * 6 + ["t_value", "dtype", "shape", "table_length",
                                                "table_dtype"]), label="break")
    if what == "none":
        return None
    if what == "t_value":
        if args["t"].numel() == 0:
            return None
        t = args["t"].clone()
        t[draw(st.integers(0, t.numel() - 1))] = draw(st.sampled_from([-1, T, T + 7]))
        args["t"] = t
        return "t"
    if what == "dtype":
        name = draw(st.sampled_from(data_names + ["t"]))
        args[name] = args[name].to(torch.int32 if name == "t" else torch.int64)
        return name
    if what == "shape":
        name = draw(st.sampled_from(data_names[1:] + ["t"]))  # the first sets the shape
        x = args[name]
        args[name] = torch.zeros(x.shape[0] + 1, *x.shape[1:], dtype=x.dtype)
        return name
    name = draw(st.sampled_from(table_names[1:]))  # the first sets T and the dtype
    tab = args[name]
    args[name] = tab[:-1] if what == "table_length" else tab.half()
    return name


def expect_error_naming(op, name, call):
    with pytest.raises((RuntimeError, ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert op in message, message
    assert re.search(rf"\b{re.escape(name)}\b", message), (name, message)


def draw_linear_case(draw, data_names, table_names):
    """What q_sample and the posterior take: two data tensors of one shape, t and
    tables, at most one of them broken. Returns (args, the float64 tables,
    shape, dtype, the broken argument's name or None)."""
    kind, T = draw(schedules())
    tab64 = tables_of(kind, T)
    shape = draw(shapes())
    dtype = draw(st.sampled_from(DTYPES))
    table_dtype = draw(table_dtypes(dtype))
    args = {name: make_data(draw, shape, dtype, name) for name in data_names}
    args["t"] = make_timesteps(draw, shape[0], T, kind)
    args.update({k: tab64[k].to(table_dtype) for k in table_names})
    broken = maybe_break(draw, args, (list(data_names), list(table_names)), T)
    return args, tab64, shape, dtype, broken


# ---- q_sample ----------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_q_sample(data):
    draw = data.draw
    args, tab64, shape, dtype, broken = draw_linear_case(draw, ["x_start", "noise"], Q_TABLES)
    order = ["x_start", "t", "noise", *Q_TABLES]
    variant = draw(st.sampled_from(["functional", "out"]))
    call = lambda **kw: torch.ops.ddpm.q_sample(*(args[k] for k in order), **kw)  # noqa: E731
    if broken:
        return expect_error_naming("ddpm.q_sample", broken, call)
    want, mag = ref.q_sample(args["x_start"], args["t"], args["noise"], tab64)
    if variant == "functional":
        return assert_within_rounding(call(), want, mag, dtype)
    check_out_variant(draw, "ddpm.q_sample", args, call, {"out": shape},
                      {"out": {"x_start": True, "noise": False}}, dtype)


# ---- posterior ---------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_posterior_mean_variance(data):
    draw = data.draw
    args, tab64, shape, dtype, broken = draw_linear_case(draw, ["x_start", "x_t"], POST_TABLES)
    order = ["x_start", "x_t", "t", *POST_TABLES]
    call = lambda **kw: torch.ops.ddpm.posterior_mean_variance(*(args[k] for k in order), **kw)  # noqa: E731
    if broken:
        return expect_error_naming("ddpm.posterior_mean_variance", broken, call)
    variant = draw(st.sampled_from(["functional", "out"]))
    if variant == "functional":
        mean, var, log_var = call()
        e_mean, e_var, e_log_var, mag = ref.posterior_mean_variance(args["x_start"], args["x_t"],
                                                                    args["t"], tab64)
        assert_within_rounding(mean, e_mean, mag, dtype, "mean")
        assert_within_rounding(var, e_var, e_var.abs(), dtype, "variance")
        finite = torch.isfinite(e_log_var)  # log 0 at t = 0 of a one-step schedule
        assert torch.equal(torch.isfinite(log_var), finite)
        assert_within_rounding(log_var[finite], e_log_var[finite], e_log_var[finite].abs(), dtype)
        return
    check_out_variant(draw, "ddpm.posterior_mean_variance", args, call, {"mean": shape},
                      {"mean": {"x_start": False, "x_t": True}}, dtype, first_only=True)


# ---- the steps ---------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_fuzz_steps(data):
    draw = data.draw
    step = draw(st.sampled_from(sorted(STEP_TABLES)), label="step")
    ddim, euler, dpm = step == "ddim_sample", step == "euler_sample", step == "dpm_solver_sample"
    philox = draw(st.booleans(), label="philox")
    op = "ddpm." + step + ("_philox" if philox else "")
    kind, T = draw(schedules())
    tab64 = tables_of(kind, T)
    shape = draw(shapes())
    dtype = draw(st.sampled_from(DTYPES))
    # a DDIM step forms 1 - abar from the tables: float32 ones lose that where
    # abar is near 1 (docs/operators.md), which is not the kernel's rounding
    table_dtype = torch.float64 if ddim else draw(table_dtypes(dtype))
    mean_type = draw(st.sampled_from([m for m in MEAN_TYPES
                                      if not ((euler or dpm) and m == "previous_x")]))
    var_type = draw(st.sampled_from(VAR_TYPES))
    # the limit on x_0: none, [-1, 1], a per-sample bound, or a bound that also
    # divides (thresholding); DDIM's direction term from either noise prediction
    clip_kind = draw(st.sampled_from(["none", "unit", "bound", "rescale"]), label="clip")
    clip = clip_kind != "none"
    use_clipped = draw(st.booleans(), label="use_clipped_model_output") if ddim else True
    eta = draw(st.sampled_from([0.0, 0.3, 1.0])) if ddim or euler else None
    learned = var_type in ref.LEARNED
    out_shape = (shape[0], shape[1] * (2 if learned else 1), *shape[2:])
    # DPM-Solver's order, form and algorithm
    solver = (draw(st.integers(1, 3), label="solver_order"),
              draw(st.sampled_from(["midpoint", "heun"]), label="solver_type"),
              draw(st.sampled_from(["dpmsolver++", "sde-dpmsolver++"]),
                   label="algorithm_type")) if dpm else None
    if dpm:
        table_dtype = torch.float64  # (it forms log differences of its sigmas)
        if solver[0] > 1:  # the last step (to sigma 0) is first order: end above it
            tab64["sigmas_next"][0] = tab64["sigmas"][0] / 2
    t = make_timesteps(draw, shape[0], T, kind, mean_type,
                       1 if euler else solver[0] if dpm else 0)
    if t is None:
        return
    args = {"model_output": make_data(draw, out_shape, dtype, "model_output"),
            "x_t": make_data(draw, shape, dtype, "x_t"), "t": t}
    if learned:  # plausible variance halves
        half = args["model_output"][:, shape[1]:].float()
        half = half.clamp(-1, 1) if var_type == "learned_range" else half.clamp(-8, 1)
        args["model_output"] = torch.cat([args["model_output"][:, :shape[1]],
                                          half.to(dtype)], dim=1)
    if philox:
        args["seed"] = draw(st.integers(-2**63, 2**63 - 1), label="seed")
        args["offset"] = 4 * draw(st.integers(0, 2**40), label="offset / 4")
    else:
        args["noise"] = make_data(draw, shape, dtype, "noise", scale=1.0)
    tables = STEP_TABLES[step]
    args.update({k: tab64[k].to(table_dtype) for k in tables})
    bound = None
    if clip_kind in ("bound", "rescale"):  # positive, any float dtype, maybe strided
        values = draw(st.lists(st.floats(0.25, 4.0), min_size=shape[0], max_size=shape[0]),
                      label="clip_bound")
        bound = torch.tensor(values, dtype=torch.float64).to(
            draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16])))
        if draw(st.booleans(), label="strided clip_bound"):
            bound = torch.stack([bound, -bound], dim=1)[:, 0]
    data_names = ["x_t", "model_output"] + ([] if philox else ["noise"])
    history = []
    if dpm:
        history = [make_data(draw, shape, dtype, f"pred_xstart_{i + 1}")
                   for i in range(solver[0] - 1)]
        for i, h in enumerate(history):
            args[f"pred_xstart_{i + 1}"] = h
        data_names += [f"pred_xstart_{i + 1}" for i in range(len(history))]
    broken = maybe_break(draw, args, (data_names, list(tables)), T)
    modes = [mean_type, var_type]
    mode_break = draw(st.sampled_from([None] * 8 + ["model_mean_type", "model_var_type", "eta",
                                                    "clip_bound"]), label="mode break")
    if not broken and mode_break == "eta" and eta is not None:
        eta, broken = -0.5, "eta"
    elif not broken and mode_break in ("model_mean_type", "model_var_type"):
        modes[0 if mode_break == "model_mean_type" else 1] = "gaussian"
        broken = mode_break
    elif not broken and mode_break == "clip_bound":
        clip, broken = True, "clip_bound"
        bound = draw(st.sampled_from([torch.ones(shape[0] + 1), torch.ones(shape[0], 1),
                                      torch.ones(shape[0], dtype=torch.int64)]),
                     label="broken clip_bound")
    options = {"clip_bound": bound, "clip_rescale": clip_kind == "rescale" and bound is not None}
    if ddim:
        options["use_clipped_model_output"] = use_clipped
    order = (["model_output", "x_t", "t"] + (["seed", "offset"] if philox else ["noise"])
             + list(tables) + [f"pred_xstart_{i + 1}" for i in range(len(history))])
    extra = [eta] if eta is not None else []
    if dpm:
        extra = [None] * (2 - len(history)) + list(solver)
    fn = getattr(torch.ops.ddpm, op.split(".")[1])

    def call(**kw):
        return fn(*(args[k] for k in order), *extra, *modes, clip, **options, **kw)

    if broken:
        return expect_error_naming(op, broken, call)
    # in-kernel noise is drawn in float32 for every dtype, rounded once with the result
    noise = (torch.ops.ddpm.philox_normal(args["x_t"].float(), args["seed"], args["offset"])
             if philox else args["noise"])
    ref_clip = (bound, options["clip_rescale"]) if bound is not None else clip
    if dpm:
        want = ref.dpm_solver_sample(args["model_output"], args["x_t"], t, noise, tab64,
                                     [args.get(f"pred_xstart_{i + 1}") for i in range(2)],
                                     *solver, mean_type, var_type, ref_clip)
    elif euler:
        want = ref.euler_sample(args["model_output"], args["x_t"], t, noise, tab64, eta,
                                mean_type, var_type, ref_clip)
    elif ddim:
        want = ref.ddim_sample(args["model_output"], args["x_t"], t, noise, tab64, eta,
                               mean_type, var_type, ref_clip,
                               use_clipped_model_output=use_clipped)
    else:
        want = ref.p_sample(args["model_output"], args["x_t"], t, noise, tab64, mean_type,
                            var_type, ref_clip)
    variant = draw(st.sampled_from(["functional", "out", "sample_out"]))
    if variant == "functional":
        sample, pred = call()
        e_sample, e_pred, s_mag, p_mag, (s_slack, p_slack) = want
        assert_within_rounding(pred, e_pred, p_mag, dtype, "pred_xstart", p_slack)
        assert_within_rounding(sample, e_sample, s_mag, dtype, "sample", s_slack)
        return
    sample_may = {"model_output": False, "x_t": True, "noise": False}
    pred_may = {"model_output": False, "x_t": False, "noise": False, "sample": False}
    if variant == "sample_out":
        check_out_variant(draw, op, args, call, {"sample": shape}, {"sample": sample_may},
                          dtype, first_only=True)
    else:
        check_out_variant(draw, op, args, call, {"sample": shape, "pred_xstart": shape},
                          {"sample": sample_may, "pred_xstart": pred_may}, dtype)


# ---- outputs that are, or overlap, inputs ------------------------------------------------
def check_out_variant(draw, op, args, call, out_shapes, may_alias, dtype, first_only=False):
    """Calls `call(**outputs)` with each output new, an input (or an earlier
    output) itself, or a view overlapping one, drawn. Allowed: the result is
    the functional one bit for bit. Refused: an error naming both."""
    want = call()
    want = (want,) if torch.is_tensor(want) else tuple(want)
    # fresh copies of the data inputs, which an output may then be or overlap
    inputs = {k: args[k].clone() for k in ("x_start", "x_t", "noise", "model_output")
              if k in args}
    # refused: every (output, input or output, how) that the call must refuse; it
    # names one of them
    outputs, refused = {}, []
    for name, shape in out_shapes.items():
        candidates = ["new"] + [k for k in list(inputs) + list(outputs)
                                if k in may_alias[name]] + ["overlap"]
        choice = draw(st.sampled_from(candidates), label=f"{name} is")
        if choice == "new":
            outputs[name] = torch.full(shape, float("nan"), dtype=dtype)
        elif choice == "overlap":
            numel = int(torch.tensor(shape).prod())
            # an input, or an earlier output in memory of its own
            victims = [k for k in inputs if k in may_alias[name]] + [
                k for k in outputs if k in may_alias[name]
                and not any(outputs[k] is v for v in inputs.values())]
            victim_name = draw(st.sampled_from(victims), label="victim")
            victim = inputs.get(victim_name, outputs.get(victim_name))
            if numel == 0 or victim.numel() < 2 or not victim.is_contiguous():
                outputs[name] = torch.full(shape, float("nan"), dtype=dtype)
                continue
            # the output starts at the victim's second element: some memory shared, not all
            big = torch.empty(victim.numel() + numel, dtype=dtype)
            big[: victim.numel()] = victim.reshape(-1)
            replaced = big[: victim.numel()].view(victim.shape)
            if victim_name in inputs:
                inputs[victim_name] = replaced
            else:  # an earlier output moved into new memory: what it shared is gone
                outputs[victim_name] = replaced
                refused = [r for r in refused if r[0] != victim_name]
            outputs[name] = big[1: 1 + numel].view(shape)
            refused.append((name, victim_name, "overlaps"))
        else:
            victim = inputs.get(choice, outputs.get(choice))
            if victim.shape != torch.Size(shape) or not victim.is_contiguous():
                outputs[name] = torch.full(shape, float("nan"), dtype=dtype)
                continue
            taken = [k for k, v in outputs.items() if v is victim]  # an earlier output's too
            outputs[name] = victim
            if taken and victim.numel() > 0:
                refused.append((name, taken[0], "is"))
            elif not may_alias[name][choice] and victim.numel() > 0:  # empty: no memory shared
                refused.append((name, choice, "is"))
    args.update(inputs)

    def run():
        return call(**outputs)

    if refused:
        with pytest.raises(RuntimeError) as info:
            run()
        message = str(info.value)
        assert op in message and any(out_name in message and in_name in message
                                     for out_name, in_name, _ in refused), (refused, message)
        return
    run()
    for i, name in enumerate(out_shapes):
        assert torch.equal(outputs[name], want[i]) or (
            want[i].numel() == 0 and outputs[name].numel() == 0), name
        if first_only:
            break


# ---- every operator and overload, drawn from the registered schemas -----------------------
def _twin(generator):
    """A new CPU generator in generator's state."""
    twin = torch.Generator()
    twin.set_state(generator.get_state())
    return twin


def _same(got, want):
    got = (got,) if torch.is_tensor(got) else tuple(got)
    want = (want,) if torch.is_tensor(want) else tuple(want)
    return all(g.shape == w.shape and torch.equal(g.isnan(), w.isnan())
               and torch.equal(g.nan_to_num(), w.nan_to_num()) for g, w in zip(got, want))


@FUZZ
@given(data=st.data())
def test_fuzz_every_overload(data):
    """Any overload (schema_calls.overloads(): what is registered, so a new one
    is drawn without editing this), its call built by argument name and then
    varied: dtypes, strided data and tables, empty samples, NaN and inf in the
    data, a table that requires grad, t of another dtype or out of range, an
    output over any other argument. It must complete, with the functional
    overload's result for an out= one and the seeded operator's for a
    .generator one, or raise an error naming the operator and the argument."""
    import schema_calls as sc
    from torch_ddpm.noise import philox_seed_offset

    draw = data.draw
    op = draw(st.sampled_from(sc.overloads()), label="overload")
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.integers(0, 3))
    shape = draw(st.sampled_from([(3, 4), (2, 1, 5), (0,), (1,)]))
    values = sc.build(op, batch=batch, shape=shape, dtype=dtype,
                      table_dtype=draw(table_dtypes(dtype)), seed=draw(st.integers(0, 1000)))
    names = [a.name for a in op.arguments]
    # the options, drawn where the operator has them (learned variances, which
    # change the model output's shape, are the step fuzzer's)
    options = {
        "weight": lambda: draw(st.sampled_from([None, torch.rand(sc.T, dtype=torch.float64)
                                                .to(values["sqrt_alphas_cumprod"].dtype)])),
        "noise_offset": lambda: draw(st.sampled_from(
            [None] + ([torch.randn(batch, shape[0]).to(dtype)] if shape[0] > 0 else []))),
        "target": lambda: draw(st.sampled_from(["epsilon", "start_x", "v"])),
        "model_mean_type": lambda: draw(st.sampled_from(
            [m for m in MEAN_TYPES if not (op.name.startswith(("euler", "dpm")) and
                                           m == "previous_x")])),
        "model_var_type": lambda: draw(st.sampled_from(["fixed_small", "fixed_large"])),
        "eta": lambda: draw(st.sampled_from([0.0, 0.5, 1.0])),
        "use_clipped_model_output": lambda: draw(st.booleans()),
        "clip_bound": lambda: draw(st.sampled_from([None, torch.rand(batch) * 3 + 0.1])),
    }
    for name in names:
        if name in options:
            values[name] = options[name]()
    if values.get("clip_bound") is not None:
        values["clip_denoised"] = True
        values["clip_rescale"] = draw(st.booleans(), label="clip_rescale")
    inputs = [k for k in names if torch.is_tensor(values[k]) and k not in op.outputs]
    tables = [k for k in inputs if values[k].dim() == 1 and values[k].shape[0] == sc.T
              and values[k].is_floating_point()]
    for name in [k for k in inputs if k in sc.DATA or k == "grad"]:
        if draw(st.booleans(), label=f"{name} strided"):
            values[name] = torch.stack([values[name], values[name]], dim=-1)[..., 0]
        if values[name].numel() and draw(st.integers(0, 9), label=f"{name} non-finite") == 0:
            values[name] = values[name].clone()
            values[name].view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf")]))
    for name in tables:
        if draw(st.booleans(), label=f"{name} strided"):
            values[name] = torch.stack([values[name], -values[name]], dim=1)[:, 0]
    broken = ()
    what = draw(st.sampled_from(["none"] * 5 + ["t_dtype", "t_range", "table_grad", "output"]),
                label="break")
    if what == "t_dtype" and "t" in values:
        values["t"], broken = values["t"].int(), ("t",)
    elif what == "t_range" and "t" in values and batch > 0:
        t = values["t"].clone()
        t[draw(st.integers(0, batch - 1))] = draw(st.sampled_from([-1, sc.T, sc.T + 9]))
        values["t"], broken = t, ("t",)
    elif (what == "table_grad" and tables and op.name != "scale_by_timestep"
          and not op.name.endswith("_backward")):  # (backward operators have no gradient)
        name = draw(st.sampled_from(tables))
        values[name], broken = values[name].detach().clone().requires_grad_(), (name,)
    elif what == "output" and op.outputs:
        out = draw(st.sampled_from(op.outputs))
        size = values[out].element_size()
        victims = [k for k in names if k != out and torch.is_tensor(values[k])
                   and values[k].numel() * values[k].element_size() > size]
        if victims and values[out].numel() > 0:
            victim = draw(st.sampled_from(victims))
            x, o = values[victim], values[out]
            x_bytes, out_bytes = x.numel() * x.element_size(), o.numel() * size
            buffer = torch.zeros(max(x_bytes, size + out_bytes), dtype=torch.uint8)
            values[victim] = buffer[:x_bytes].view(x.dtype).view(x.shape).copy_(x)
            values[out] = buffer[size:size + out_bytes].view(o.dtype).view(o.shape)
            broken = (out, victim)
    state = values["generator"].get_state() if "generator" in values else None
    if broken:
        with pytest.raises((RuntimeError, ValueError)) as info:
            sc.call(op, values)
        message = str(info.value)
        assert f"ddpm.{op.name}" in message, message
        for name in broken:
            assert re.search(rf"\b{re.escape(name)}\b", message), (name, message)
        if state is not None:  # a refused call draws no key
            assert torch.equal(values["generator"].get_state(), state)
        return
    with torch.no_grad():
        got = sc.call(op, values)
    if op.outputs:  # the functional overload's result, written where asked
        functional = next(o for o in sc.overloads() if o.name == op.name and not o.outputs
                          and o.takes("generator") == op.takes("generator")
                          and o.takes("key") == op.takes("key"))
        fresh = {k: v for k, v in values.items() if k not in op.outputs}
        if state is not None:
            fresh["generator"] = _twin(values["generator"])
            fresh["generator"].set_state(state)
        assert _same(got, sc.call(functional, fresh)), op
    if "key" in values and torch.is_tensor(values["key"]):  # the seeded operator, that key
        seeded = next(o for o in sc.overloads() if o.name == op.name and o.takes("seed")
                      and o.outputs == op.outputs)
        args = {k: v for k, v in values.items() if k != "key"}
        args["seed"], args["offset"] = (int(v) for v in values["key"].cpu())
        args.update({k: torch.empty_like(values[k]) for k in op.outputs})
        assert _same(got, sc.call(seeded, args)), op
    if state is not None:  # the seeded operator with the key the generator gives
        seeded = next(o for o in sc.overloads() if o.name == op.name and o.takes("seed")
                      and o.outputs == op.outputs)
        twin = _twin(values["generator"])
        twin.set_state(state)
        args = {k: v for k, v in values.items() if k != "generator"}
        args["seed"], args["offset"] = philox_seed_offset(twin)
        args.update({k: torch.empty_like(values[k]) for k in op.outputs})
        assert _same(got, sc.call(seeded, args)), op
