"""A valid call of every ddpm operator overload, built from its registered
schema alone: each argument's value comes from its name (x_t is data, t
timesteps, a schedule table's name that table, seed an int, ...). The tests
that hold a rule for every overload (refusals, empty batches, outputs over
inputs, generators) and the fuzzer's every-overload test iterate over
overloads(): an operator added to the library is covered without editing
them. An argument name not known here fails loudly (KeyError), so a new
kind of argument is noticed."""
import os
from dataclasses import dataclass
from typing import Dict, List

import torch

import reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
T = 20
SCALAR_DEFAULTS = {"seed": 3, "offset": 8, "eta": 0.5, "model_mean_type": "epsilon",
                   "model_var_type": "fixed_small", "clip_denoised": True,
                   "clip_rescale": False, "use_clipped_model_output": True, "target": "epsilon",
                   "solver_order": 3, "solver_type": "midpoint", "algorithm_type": "dpmsolver++"}
# data tensors shaped like the samples (a backward's gradients too; a
# multistep step's earlier pred_xstart)
DATA = {"x_start", "x_t", "input", "noise", "grad_mean", "grad_sample", "grad_pred_xstart",
        "model_output", "pred_xstart_1", "pred_xstart_2"}
OPTIONAL_ABSENT = {"clip_bound", "weight", "noise_offset"}  # None unless a test sets them


@dataclass
class Overload:
    qualified: str  # "p_sample.sample_out"
    schema: torch._C.FunctionSchema

    @property
    def name(self):
        return self.schema.name.split("::", 1)[1]

    @property
    def fn(self):
        packet = getattr(torch.ops.ddpm, self.name)
        return getattr(packet, self.schema.overload_name or "default")

    @property
    def arguments(self):
        return list(self.schema.arguments)

    @property
    def outputs(self) -> List[str]:
        """The arguments it writes (out=, sample=)."""
        return [a.name for a in self.schema.arguments
                if a.alias_info is not None and a.alias_info.is_write]

    def takes(self, name):
        return any(a.name == name for a in self.schema.arguments)

    def __str__(self):
        return self.qualified


def _registered_names():
    if hasattr(torch._C, "_dispatch_get_all_op_names"):
        return [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ddpm::")]
    with open(os.path.join(HERE, "published_schemas.txt")) as f:  # torch 1.13
        return [line.split("(", 1)[0] for line in f if line.strip()]


def overloads() -> List[Overload]:
    """Every public ddpm operator overload, sorted by name."""
    found = []
    for full in sorted(_registered_names()):
        qualified = full[len("ddpm::"):]
        if qualified.startswith("_"):
            continue
        name, _, overload = qualified.partition(".")
        fn = getattr(getattr(torch.ops.ddpm, name), overload or "default")
        found.append(Overload(qualified, fn._schema))
    return found


def value_of(op: Overload, arg, batch, shape, dtype, device, tables, seed=0):
    """A valid value of one argument (by its name and type)."""
    name = arg.name
    g = torch.Generator().manual_seed(seed + sum(map(ord, name)))
    full = (batch, *shape)
    if name == "grad" and op.name == "diffusion_mse_backward":  # the loss's gradient, [B]
        loss_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        return torch.randn(batch, generator=g, dtype=loss_dtype).to(device)
    if name in DATA or name == "grad" or name in op.outputs:
        if name in op.outputs:
            return torch.full(full, float("nan"), dtype=dtype, device=device)
        return torch.randn(full, generator=g).to(device=device, dtype=dtype)
    if name == "t":
        return torch.randint(0, T, (batch,), generator=g).to(device)
    if name in tables:
        return tables[name]
    if name == "table":
        return tables["sqrt_alphas_cumprod"]
    if name == "key":  # (seed, offset) as an int64 tensor, on the data's device
        return torch.tensor([seed + 3, 8], dtype=torch.long, device=device)
    if name == "generator":
        return torch.Generator(device=device if device != "meta" else "cpu").manual_seed(seed)
    if name in OPTIONAL_ABSENT:
        return None
    return SCALAR_DEFAULTS[name]


def build(op: Overload, batch=2, shape=(3, 4), dtype=torch.float32, device="cpu",
          table_dtype=torch.float64, seed=0, **override) -> Dict[str, object]:
    """{argument name: value} for every argument of op, in schema order;
    override sets some by name."""
    tables = ref.make_tables(T, "cosine", device, table_dtype)
    if op.takes("sigmas_1"):  # (order 3 reads both earlier steps: no chain end at sigma 0)
        tables["sigmas_next"][0] = tables["sigmas"][0] / 2
    values = {}
    for arg in op.arguments:
        values[arg.name] = (override[arg.name] if arg.name in override else
                            value_of(op, arg, batch, shape, dtype, device, tables, seed))
    unknown = set(override) - set(values)
    assert not unknown, f"{op} has no argument {unknown}"
    return values


def call(op: Overload, values):
    """Calls op with values (positional up to the keyword-only outputs)."""
    positional = [values[a.name] for a in op.arguments if not a.kwarg_only]
    keywords = {a.name: values[a.name] for a in op.arguments if a.kwarg_only}
    return op.fn(*positional, **keywords)


def tensors_of(op: Overload, values):
    """The tensor arguments given (not None), by name."""
    return {k: v for k, v in values.items() if torch.is_tensor(v)}
