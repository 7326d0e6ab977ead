"""Every CUDA kernel of the library, once or more, on small inputs, for
compute-sanitizer (scripts/gpu_check.sh runs it under memcheck, racecheck and
synccheck).

What it calls comes from the operator registry (tests/python/schema_calls.py
builds a valid call of any overload from its schema), so an operator added
later is launched without editing this file:
- every public overload, on four dtypes and three shapes: a tail (3x2x37),
  tiny samples (200x1x3: many samples per chunk), several chunks per block
  and several loss tiles per sample (2x3x6000), the data a misaligned view
  in the first;
- each optional operand on and off: clip_bound with and without
  clip_rescale, DDIM's model-noise term (use_clipped_model_output=False), a
  noise_offset, a loss weight, every loss target;
- the step kinds' plain overload and its backward on every mean and
  variance type;
- the .generator overloads also captured in a CUDA graph and replayed.

    python3 scripts/gpu_sanitize.py               # on the GPU (cuda)
    python3 scripts/gpu_sanitize.py --device cpu  # the same calls on the CPU

Prints one line: the launches and the overloads and variants they covered.
tests/python/integration/test_gpu_battery.py runs it on the CPU and holds
what it covers against the registry.
"""
import argparse
import itertools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python_bindings"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))

import torch  # noqa: E402

import torch_ddpm  # noqa: E402,F401
import schema_calls  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (batch, channels, length)
SHAPES = [(3, 2, 37), (200, 1, 3), (2, 3, 6000)]
MEAN_TYPES = ["epsilon", "start_x", "previous_x", "v"]
VAR_TYPES = ["fixed_small", "fixed_large", "learned", "learned_range"]
LOSS_TARGETS = ["epsilon", "start_x", "v"]


def is_step(op):
    return op.takes("model_var_type")


def misaligned(tensor):
    """The same values in a view 2 bytes or more off a 16-byte boundary."""
    base = torch.empty(tensor.numel() + 1, dtype=tensor.dtype, device=tensor.device)
    view = base[1:].view(tensor.shape)
    view.copy_(tensor)
    return view


def variants(op, batch, channels, dtype, device):
    """(label, overrides) for each way op is called; label names the variant."""
    if is_step(op):
        plain = not op.qualified.count(".") and "philox" not in op.name
        # (the sigma-space steps have no posterior mean for previous_x to invert)
        means = [m for m in MEAN_TYPES if not (op.takes("sigmas") and m == "previous_x")]
        # (a sigma-space step reads no variance: learned only widens its input)
        var_types = ["fixed_small", "learned"] if op.takes("sigmas") else VAR_TYPES
        modes = (itertools.product(means, var_types) if plain
                 else [("epsilon", "fixed_small"), ("v", "learned_range")])
        for mean, var in modes:
            yield f"{mean}/{var}", {"model_mean_type": mean, "model_var_type": var}
        bound = torch.rand(batch, dtype=torch.float64, device=device) + 0.5
        yield "clip_bound", {"clip_bound": bound}
        yield "clip_bound+rescale", {"clip_bound": bound, "clip_rescale": True}
        yield "no clip", {"clip_denoised": False}
        if op.takes("use_clipped_model_output"):
            yield "model_noise", {"use_clipped_model_output": False}
        if op.takes("solver_order"):  # each count of earlier pred_x0 read (0 to 2)
            yield "order 1 sde-dpmsolver++", {"solver_order": 1,
                                              "algorithm_type": "sde-dpmsolver++"}
            yield "order 2 heun", {"solver_order": 2, "solver_type": "heun"}
            yield "order 3 sde-dpmsolver++", {"solver_order": 3,
                                              "algorithm_type": "sde-dpmsolver++"}
        return
    yield "plain", {}
    if op.takes("noise_offset"):
        yield "noise_offset", {"noise_offset": torch.randn(batch, channels, device=device)
                               .to(dtype)}
    if op.takes("target"):
        for target in LOSS_TARGETS[1:]:
            yield f"target={target}", {"target": target}
    if op.takes("weight"):
        yield "weight", {"weight": torch.rand(schema_calls.T, dtype=torch.float64,
                                              device=device)}


def values_for(op, shape, dtype, device, overrides, misalign):
    batch, channels, length = shape
    values = schema_calls.build(op, batch=batch, shape=(channels, length), dtype=dtype,
                                device=device, **overrides)
    var = values.get("model_var_type")
    if isinstance(var, str) and var.startswith("learned") and op.takes("model_output"):
        # a learned variance's model output carries the variance half
        values["model_output"] = torch.randn(batch, 2 * channels, length,
                                             device=device).to(dtype) * 0.5
    if misalign:
        for name, value in list(values.items()):
            if (name in schema_calls.DATA or name in op.outputs) and torch.is_tensor(value) \
                    and value.dim() == 3:
                values[name] = misaligned(value)
    return values


def capture_and_replay(op, values):
    """op with the default CUDA generator, captured in a graph, then replayed
    twice: a replay reads the generator's key on the device."""
    values = dict(values, generator=None)
    schema_calls.call(op, values)  # warm up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        schema_calls.call(op, values)
    graph.replay()
    graph.replay()
    return 3


def run(device, dtypes=DTYPES, shapes=SHAPES, graphs=None):
    """Calls everything; returns (launches, {overload: set of variant labels})."""
    graphs = device == "cuda" if graphs is None else graphs
    covered = {}
    calls = 0
    for op in schema_calls.overloads():
        for dtype, shape in itertools.product(dtypes, shapes):
            misalign = shape == shapes[0]
            for label, overrides in variants(op, shape[0], shape[1], dtype, device):
                values = values_for(op, shape, dtype, device, overrides, misalign)
                schema_calls.call(op, values)
                calls += 1
                covered.setdefault(op.qualified, set()).add(label)
            if graphs and op.takes("generator") and shape == shapes[0]:
                values = values_for(op, shape, dtype, device, {}, False)
                calls += capture_and_replay(op, values)
                covered[op.qualified].add("graph")
    if device == "cuda":
        torch.cuda.synchronize()
    return calls, covered


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", nargs="+", default=[str(d).split(".")[-1] for d in DTYPES],
                        help="a subset of the four (racecheck and synccheck, which watch "
                             "shared memory and barriers, need not see every dtype)")
    args = parser.parse_args(argv)
    dtypes = [getattr(torch, name) for name in args.dtypes]
    calls, covered = run(args.device, dtypes=dtypes)
    labels = sum(len(v) for v in covered.values())
    print(f"gpu_sanitize: {calls} operator calls on {args.device}: {len(covered)} overloads, "
          f"{labels} (overload, variant) pairs, {len(dtypes)} dtypes, {len(SHAPES)} shapes")


if __name__ == "__main__":
    main()
