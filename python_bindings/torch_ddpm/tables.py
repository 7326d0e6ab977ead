"""The schedule tables as the adapters hand them to the operators: one copy
per device, made outside inference mode, and each step operator's tables in
its schema's order (ops/operators.cpp; a test holds the two together)."""
import torch

__all__ = ["STEP_TABLES", "step_tables", "sigma_step_tables", "cached_on"]

# Each step operator's tables, in its order: the variance-preserving steps'
# four (x_0 and the posterior mean), then the kind's own two; Euler's sigmas.
_COMMON = ("sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
           "posterior_mean_coef2")
STEP_TABLES = {
    "p_sample": _COMMON + ("posterior_log_variance_clipped", "betas"),
    "ddim_sample": _COMMON + ("alphas_cumprod", "alphas_cumprod_prev"),
    "euler_sample": ("sigmas", "sigmas_next"),
    "dpm_solver_sample": ("sigmas", "sigmas_next", "sigmas_1", "sigmas_2"),
}


def step_tables(kind, tables, **instead):
    """The tables of step operator `kind` ("p_sample", "ddim_sample", ...) from
    a {name: tensor} mapping, in its order; instead: a table to pass in a
    name's place (the DDIM step towards alphas_cumprod_next, say)."""
    return tuple(instead[name] if name in instead else tables[name] for name in STEP_TABLES[kind])


def sigma_step_tables(kind, sigmas):
    """The tables of a sigma-space step operator ("euler_sample",
    "dpm_solver_sample") over a chain of sigmas (length N + 1, the last the
    one the chain ends at, as diffusers' schedulers keep them), in float64, as
    {name: tensor} of length N: step t goes from sigmas[t] to sigmas[t + 1].
    DPM-Solver's earlier sigmas are NaN before the chain's first step, where
    orders 2 and 3 never read them."""
    sigmas = sigmas.double()
    n = len(sigmas) - 1
    tables = {"sigmas": sigmas[:-1], "sigmas_next": sigmas[1:]}
    if kind == "dpm_solver_sample":
        nan = sigmas.new_full((2,), float("nan"))
        tables["sigmas_1"] = torch.cat([nan[:1], sigmas[:-2]])[:n]
        tables["sigmas_2"] = torch.cat([nan, sigmas[:-3]])[:n]
    return {name: tables[name] for name in STEP_TABLES[kind]}


def cached_on(owner, device, make, key=None, slot="tables"):
    """{name: tensor}: make()'s tables moved to `device`, kept in owner's
    _ddpm_cache for that device and made again when `key` changes (a buffer
    replaced or written, a schedule rebuilt).

    Made with inference mode off, even when the first call is under
    torch.inference_mode() (sampling): a training step's autograd saves the
    tables later, which it cannot do with inference tensors."""
    cache = owner.__dict__.setdefault("_ddpm_cache", {})
    entry = cache.get((slot, str(device)))
    if entry is None or entry[0] != key:
        with torch.inference_mode(False):
            entry = (key, {name: table.to(device) for name, table in make().items()})
        cache[(slot, str(device))] = entry
    return entry[1]
