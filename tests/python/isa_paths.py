"""Every CPU operator, forward and backward, over all dtypes and step modes, on
shapes with vector tails and a non-contiguous input: what test_isa.py runs on
emulated CPUs (qemu-user) to compare the loop clones and noise generators that
this machine never picks with the ones it does.

python3 isa_paths.py OUT.pt [TABLES.pt]  saves compute(), the loop clone and
the generator. TABLES.pt: schedule tables made elsewhere (ATen's own float64
log and sqrt can differ in the last bit between instruction sets).
"""
import itertools
import sys

import torch

import noise_paths  # also puts torch_ddpm on the path
import reference as ref
from torch_ddpm.tables import step_tables

MEAN_TYPES = ["epsilon", "start_x", "previous_x", "v"]
VAR_TYPES = ["fixed_small", "fixed_large", "learned", "learned_range"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# 3 * 67 = 201 elements per sample: every vector width leaves a tail
SHAPE = (4, 3, 67)


def _grads(outputs, inputs, g):
    weights = [noise_paths.exact_random(o.shape, g).to(o.dtype) for o in outputs]
    loss = sum((o.float() * w.float()).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(loss, inputs)


def compute(tab=None):
    """tab: the schedule tables (default ref.make_tables(100))."""
    g = torch.Generator().manual_seed(7)
    tab = ref.make_tables(100) if tab is None else tab
    q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
    step = step_tables("p_sample", tab)
    ddim = step_tables("ddim_sample", tab)
    results = {}
    t = torch.tensor([0, 1, 50, 99])
    for dtype in DTYPES:
        def data(shape):
            return noise_paths.exact_random(shape, g).to(dtype).requires_grad_()
        x0, x, noise = data(SHAPE), data(SHAPE), data(SHAPE)
        # a transposed (non-contiguous) x_start
        x0_strided = noise_paths.exact_random(SHAPE[::-1], g).to(dtype).permute(
            2, 1, 0).requires_grad_()
        out = data((SHAPE[0], 2 * SHAPE[1], SHAPE[2]))
        key = str(dtype)
        q = torch.ops.ddpm.q_sample(x0_strided, t, noise, *q_tabs)
        results["q-" + key] = (q,) + _grads([q], [x0_strided, noise], g)
        post = torch.ops.ddpm.posterior_mean_variance(
            x0, x, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])
        results["post-" + key] = post + _grads([post[0]], [x0, x], g)
        for mean_type, var_type in itertools.product(MEAN_TYPES, VAR_TYPES):
            learned = var_type.startswith("learned")
            model_output = out if learned else out[:, :SHAPE[1]]
            for clip in (True, False):
                step_out = torch.ops.ddpm.p_sample(
                    model_output, x, t, noise, *step, mean_type, var_type, clip)
                results[f"p-{mean_type}-{var_type}-{clip}-{key}"] = (
                    step_out + _grads(step_out, [out, x], g))
            # the loops that skip pred_xstart (sample_out), explicit and in-kernel noise
            with torch.no_grad():
                sample = torch.empty(SHAPE, dtype=dtype)
                torch.ops.ddpm.p_sample(model_output, x, t, noise, *step, mean_type, var_type,
                                        True, sample=sample)
                philox_sample = torch.empty(SHAPE, dtype=dtype)
                torch.ops.ddpm.p_sample_philox(model_output, x, t, 5, 12, *step, mean_type,
                                               var_type, True, sample=philox_sample)
            results[f"p-sample_out-{mean_type}-{var_type}-{key}"] = (sample, philox_sample)
        for eta in (0.0, 0.5):
            step_out = torch.ops.ddpm.ddim_sample(
                out[:, :SHAPE[1]], x, t, noise, *ddim, eta, "epsilon", "fixed_small", True)
            results[f"ddim-{eta}-{key}"] = step_out + _grads(step_out, [out, x], g)
    results = {k: tuple(v.detach() for v in vs) for k, vs in results.items()}
    results.update(noise_paths.compute(tab))
    return results


if __name__ == "__main__":
    tables = torch.load(sys.argv[2]) if len(sys.argv) > 2 else None
    torch.save({"loop_clone": torch.ops.ddpm._cpu_loop_clone(),
                "generator": torch.ops.ddpm._cpu_noise_generator(),
                "results": compute(tables)}, sys.argv[1])
