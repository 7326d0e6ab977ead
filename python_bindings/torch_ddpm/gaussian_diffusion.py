"""A drop-in GaussianDiffusion backed by the ddpm operators.

Same constructor, methods, argument names, return values and random-number
consumption as improved-diffusion's GaussianDiffusion (and guided-diffusion's
cond_fn hooks), so a script changes one import:

    from torch_ddpm.gaussian_diffusion import GaussianDiffusion, ModelMeanType, ...

q_sample, q_posterior_mean_variance, p_sample and ddim_sample/ddim_reverse_sample
run the fused operators; the schedule tables live on each device once (float64),
so no step copies anything from the host. A denoised_fn or cond_fn (Python
callbacks that act between the prediction of x_0 and the mean) takes the
unfused path, with the same formulas.
"""
import enum
import math
import weakref

import numpy as np
import torch

from . import formulas
from .losses import diffusion_mse, discretized_gaussian_log_likelihood, mean_flat, normal_kl
from .operators import in_common_dtype, mode_name, step_overload
from .tables import cached_on, step_tables
from .thresholding import DynamicThreshold, step_threshold_bound
from .graphs import GraphedLoop, check_graphable, graphed_for, memory_key
from .noise import as_philox_stream
from .schedules import betas_for_alpha_bar, schedule_tables

__all__ = ["GaussianDiffusion", "ModelMeanType", "ModelVarType", "LossType",
           "get_named_beta_schedule", "betas_for_alpha_bar"]


def get_named_beta_schedule(schedule_name, num_diffusion_timesteps):
    """'linear' or 'cosine' betas as a float64 numpy array (as improved-diffusion)."""
    from .schedules import get_named_beta_schedule as _named

    return _named(schedule_name, num_diffusion_timesteps).numpy()


class ModelMeanType(enum.Enum):
    PREVIOUS_X = enum.auto()  # the model predicts x_{t-1}
    START_X = enum.auto()  # the model predicts x_0
    EPSILON = enum.auto()  # the model predicts epsilon
    V = enum.auto()  # the model predicts v = sqrt(abar) eps - sqrt(1 - abar) x_0


class ModelVarType(enum.Enum):
    LEARNED = enum.auto()
    FIXED_SMALL = enum.auto()
    FIXED_LARGE = enum.auto()
    LEARNED_RANGE = enum.auto()


class LossType(enum.Enum):
    MSE = enum.auto()  # raw MSE loss (and KL when learning variances)
    RESCALED_MSE = enum.auto()  # MSE with the KL term rescaled as in the RESCALED_KL case
    KL = enum.auto()  # the variational lower bound
    RESCALED_KL = enum.auto()  # like KL, scaled to estimate the full bound

    def is_vb(self):
        return self == LossType.KL or self == LossType.RESCALED_KL


_TABLES = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
           "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
           "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
           "sqrt_recipm1_alphas_cumprod", "posterior_variance",
           "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2")


def _is_learned(var_type):
    return mode_name(var_type) in ("learned", "learned_range")


class GaussianDiffusion:
    """Utilities for training and sampling diffusion models (improved-diffusion API).

    :param betas: a 1-D array of betas for each diffusion timestep, from T to 1.
    :param model_mean_type: a ModelMeanType (what the model outputs).
    :param model_var_type: a ModelVarType (how the variance is output).
    :param loss_type: a LossType.
    :param rescale_timesteps: pass floating point timesteps scaled to [0, 1000) to the model.
    """

    def __init__(self, *, betas, model_mean_type, model_var_type, loss_type,
                 rescale_timesteps=False):
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        tables = schedule_tables(np.asarray(betas, dtype=np.float64))
        for name in _TABLES:  # numpy float64 attributes, as improved-diffusion has
            setattr(self, name, tables[name].numpy())
        self.alphas = 1.0 - self.betas
        self.num_timesteps = int(self.betas.shape[0])
        self._ddpm_cache = {}

    # ---- tables on the device, cached --------------------------------------------
    def _ddpm_tables(self, device):
        """Every table as float64 on `device`, moved there once."""
        return cached_on(self, device,
                         lambda: schedule_tables(np.asarray(self.betas, dtype=np.float64)))

    def _extract(self, name, t, shape):
        """table[t] as float32 broadcast to shape (improved-diffusion's _extract_into_tensor)."""
        res = self._ddpm_tables(t.device)[name][t].float()
        return res.view(-1, *([1] * (len(shape) - 1))).expand(shape)

    def _modes(self):
        return mode_name(self.model_mean_type), mode_name(self.model_var_type)

    def _model_output(self, model, x, t, model_kwargs):
        return self._model_caller(model, model_kwargs)(x, t)

    def _model_caller(self, model, model_kwargs):
        """(x, t[, step]) -> the model's output, as the steps read it: the model
        wrapped (respacing) and its keyword arguments bound once, so that a
        sampling loop makes them once, not per step; step: t's one value, where
        the caller knows it."""
        wrap = getattr(self, "_wrap_model", None)
        if wrap is not None:
            model = wrap(model)
        kwargs = model_kwargs or {}
        scale = self._scale_timesteps
        factor = 2 if _is_learned(self.model_var_type) else 1
        # our respacing wrapper: a loop that knows its step fills the original
        # timesteps at once (the same tensor the wrapper's lookup gives)
        original_timesteps = getattr(model, "original_timesteps", None)

        def call(x, t, step=None):
            if step is not None and original_timesteps is not None:
                out = model.model(x, original_timesteps(step, t), **kwargs)
            else:
                out = model(x, scale(t), **kwargs)
            if out.dtype != x.dtype and torch.promote_types(out.dtype, x.dtype) == x.dtype:
                # a 16-bit output (autocast) with a float32 x: used as its float32
                # value everywhere (an exact cast), as if the model had returned it
                out = out.to(x.dtype)
            if out.dim() != x.dim() or out.shape[0] != x.shape[0] or \
                    out.shape[1] != x.shape[1] * factor or out.shape[2:] != x.shape[2:]:
                raise AssertionError(
                    f"model output of shape {tuple(out.shape)}, expected "
                    f"{(x.shape[0], x.shape[1] * factor, *x.shape[2:])}")
            return out

        return call

    def _scale_timesteps(self, t):
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t

    # ---- forward process -----------------------------------------------------------
    def q_mean_variance(self, x_start, t):
        """(mean, variance, log_variance) of q(x_t | x_0)."""
        tab = self._ddpm_tables(x_start.device)
        mean = torch.ops.ddpm.q_sample(x_start, t, torch.zeros_like(x_start),
                                       tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
        variance = self._extract("alphas_cumprod", t, x_start.shape)
        variance = 1.0 - variance
        log_variance = self._extract("log_one_minus_alphas_cumprod", t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start, t, noise=None, philox=None):
        """Diffuse the data: a sample of q(x_t | x_0). noise ~ randn_like(x_start) if None.

        philox (an int seed, a torch.Generator or a PhiloxStream): draw the
        noise inside the kernel instead; returns (x_t, noise) then, the noise
        being the training target.
        """
        tab = self._ddpm_tables(x_start.device)
        stream = as_philox_stream(philox)
        if stream is not None:
            if noise is not None:
                raise ValueError("q_sample: pass noise or philox, not both")
            return torch.ops.ddpm.q_sample_philox(
                x_start, t, *stream.noise_args(x_start.device), tab["sqrt_alphas_cumprod"],
                tab["sqrt_one_minus_alphas_cumprod"])
        if noise is None:
            noise = torch.randn_like(x_start)
        return torch.ops.ddpm.q_sample(x_start, t, noise, tab["sqrt_alphas_cumprod"],
                                       tab["sqrt_one_minus_alphas_cumprod"])

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """(posterior_mean, posterior_variance, posterior_log_variance_clipped)."""
        tab = self._ddpm_tables(x_t.device)
        return torch.ops.ddpm.posterior_mean_variance(
            x_start, x_t, t, tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
            tab["posterior_variance"], tab["posterior_log_variance_clipped"])

    # ---- the reverse step ----------------------------------------------------------------
    def _fused_step(self, model_output, x, t, noise, clip_denoised, stream=None, sample=None):
        """The fused reverse step; with a PhiloxStream the noise is drawn in the kernel.
        With sample= (a tensor like x, x itself allowed): x_{t-1} alone, written there.
        A model output and x of different dtypes (autocast) are promoted, as
        improved-diffusion's formulas promote them."""
        return self._fused("p_sample", model_output, x, t, noise, clip_denoised, stream, sample)

    def _fused(self, kind, model_output, x, t, noise, clip_denoised, stream, sample, own_args=(),
               target="alphas_cumprod_prev"):
        """Step operator `kind` (DDIM's: towards tab[target], its eta in own_args)
        on the promoted inputs, its noise given or drawn from the stream."""
        model_output, x, noise = in_common_dtype(model_output, x, noise)
        tab = self._ddpm_tables(x.device)
        tables = step_tables(kind, tab) if kind == "p_sample" else \
            step_tables(kind, tab, alphas_cumprod_prev=tab[target])
        clip = self._clip_options(model_output, x, t, clip_denoised)
        op, noise_args = _step_call(kind, stream, noise, x.device, sample is not None)
        out = {} if sample is None else {"sample": sample}
        return op(model_output, x, t, *noise_args, *tables, *own_args, *self._modes(), *clip,
                  **out)

    def _clip_options(self, model_output, x, t, clip_denoised):
        """The step operators' (clip_denoised, clip_bound, clip_rescale) for a
        clip_denoised flag or a DynamicThreshold: its bound from the unclipped
        pred_xstart (one fused pass to get it), the clamp and division inside
        the step."""
        if not isinstance(clip_denoised, DynamicThreshold):
            return bool(clip_denoised), None, False
        bound = step_threshold_bound("p_sample", model_output, x, t,
                                     step_tables("p_sample", self._ddpm_tables(x.device)),
                                     mode_name(self.model_mean_type), clip_denoised.ratio,
                                     clip_denoised.max_value)
        return True, bound, True

    def _variance(self, model_output, x, t):
        """(variance, log_variance) for the configured variance type."""
        var_type = mode_name(self.model_var_type)
        if var_type in ("learned", "learned_range"):
            var_values = model_output[:, x.shape[1]:]
            if var_type == "learned":
                log_variance = var_values
            else:
                min_log = self._extract("posterior_log_variance_clipped", t, x.shape)
                max_log = torch.log(self._extract("betas", t, x.shape))
                log_variance = formulas.learned_range_log_variance(var_values, min_log, max_log)
            return torch.exp(log_variance), log_variance
        if var_type == "fixed_large":
            tab = self._ddpm_tables(t.device)
            variance = torch.cat([tab["posterior_variance"][1:2], tab["betas"][1:]])
            log_variance = torch.log(variance)
            shape = (-1,) + (1,) * (x.dim() - 1)
            return (variance[t].float().view(shape).expand(x.shape),
                    log_variance[t].float().view(shape).expand(x.shape))
        return (self._extract("posterior_variance", t, x.shape),
                self._extract("posterior_log_variance_clipped", t, x.shape))

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """Apply the model: dict of mean, variance, log_variance, pred_xstart of p(x_{t-1} | x_t)."""
        model_output = self._model_output(model, x, t, model_kwargs)
        return self._mean_variance_from_output(model_output, x, t, clip_denoised, denoised_fn)

    def _mean_variance_from_output(self, model_output, x, t, clip_denoised, denoised_fn):
        zeros = torch.zeros_like(x)
        if denoised_fn is None:
            # With zero noise the fused step's sample is the mean itself.
            mean, pred_xstart = self._fused_step(model_output, x, t, zeros, clip_denoised)
        else:
            _, pred_xstart = self._fused_step(model_output, x, t, zeros, False)
            pred_xstart = denoised_fn(pred_xstart)
            if isinstance(clip_denoised, DynamicThreshold):
                pred_xstart = clip_denoised.apply(pred_xstart)
            elif clip_denoised:
                pred_xstart = pred_xstart.clamp(-1, 1)
            if mode_name(self.model_mean_type) == "previous_x":
                mean = model_output[:, : x.shape[1]]
            else:
                mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        variance, log_variance = self._variance(model_output, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance,
                "pred_xstart": pred_xstart}

    def _predict_xstart_from_eps(self, x_t, t, eps):
        return (self._extract("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t
                - self._extract("sqrt_recipm1_alphas_cumprod", t, x_t.shape) * eps)

    def _predict_xstart_from_xprev(self, x_t, t, xprev):
        c1 = self._extract("posterior_mean_coef1", t, x_t.shape)
        c2 = self._extract("posterior_mean_coef2", t, x_t.shape)
        return xprev / c1 - (c2 / c1) * x_t

    def _predict_eps_from_xstart(self, x_t, t, pred_xstart):
        return ((self._extract("sqrt_recip_alphas_cumprod", t, x_t.shape) * x_t - pred_xstart)
                / self._extract("sqrt_recipm1_alphas_cumprod", t, x_t.shape))

    def _wrapped_cond_fn(self, cond_fn):
        """cond_fn as guided-diffusion's SpacedDiffusion calls it: through _wrap_model,
        so that it sees the original (and, if asked, rescaled) timesteps."""
        wrap = getattr(self, "_wrap_model", None)
        return cond_fn if wrap is None else wrap(cond_fn)

    def condition_mean(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """guided-diffusion's classifier guidance on the mean: mean + variance * grad."""
        cond_fn = self._wrapped_cond_fn(cond_fn)
        gradient = cond_fn(x, self._scale_timesteps(t), **(model_kwargs or {}))
        return p_mean_var["mean"].float() + p_mean_var["variance"] * gradient.float()

    def condition_score(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """guided-diffusion's score-based conditioning (for DDIM)."""
        cond_fn = self._wrapped_cond_fn(cond_fn)
        alpha_bar = self._extract("alphas_cumprod", t, x.shape)
        eps = self._predict_eps_from_xstart(x, t, p_mean_var["pred_xstart"])
        eps = eps - (1 - alpha_bar).sqrt() * cond_fn(x, self._scale_timesteps(t), **(model_kwargs or {}))
        out = p_mean_var.copy()
        out["pred_xstart"] = self._predict_xstart_from_eps(x, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(out["pred_xstart"], x, t)
        return out

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                 model_kwargs=None, philox=None):
        """Sample x_{t-1}: dict of sample and pred_xstart. Noise is randn_like(x), drawn after the model.

        philox (an int seed, a torch.Generator or a PhiloxStream): draw the
        noise in the kernel instead (torch_ddpm.noise), the same on CPU and CUDA.
        """
        stream = as_philox_stream(philox)
        if denoised_fn is None and cond_fn is None:
            model_output = self._model_output(model, x, t, model_kwargs)
            noise = torch.randn_like(x) if stream is None else None
            sample, pred_xstart = self._fused_step(model_output, x, t, noise, clip_denoised, stream)
            return {"sample": sample, "pred_xstart": pred_xstart}
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = torch.randn_like(x) if stream is None else stream.normal(x)
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs)
        sample = formulas.ancestral_sample(out["mean"], out["log_variance"], noise, t)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                      cond_fn=None, model_kwargs=None, device=None, progress=False, philox=None,
                      cuda_graph=False):
        """Generate samples: the final x_0 of the reverse chain.

        philox (an int seed, a torch.Generator or a PhiloxStream): x_T (when
        noise is None) and every step's noise are drawn in the kernels, one
        Philox offset after another: the same samples on CPU and CUDA.
        cuda_graph=True (CUDA): the whole loop, model included, runs as one CUDA
        graph, captured on the first call for this model, shape and settings and
        replayed after (torch_ddpm.graphs); the same samples as the eager loop
        from the same generator state. Noise from randn or philox=<a CUDA
        torch.Generator>; no progress bar, denoised_fn or cond_fn.
        """
        if cuda_graph:
            return self._graphed_chain("p_sample", clip_denoised, (), model, shape, noise,
                                       device, progress, philox, model_kwargs,
                                       (("denoised_fn", denoised_fn), ("cond_fn", cond_fn)))
        if self._plain_chain("p_sample", denoised_fn, cond_fn):
            return self._sample_chain("p_sample", clip_denoised, (), model, shape, noise,
                                      device, progress, philox, model_kwargs)
        return _last(self.p_sample_loop_progressive(
            model, shape, noise=noise, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs, device=device, progress=progress,
            philox=philox))["sample"]

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True,
                                  denoised_fn=None, cond_fn=None, model_kwargs=None,
                                  device=None, progress=False, philox=None):
        """Yield the dict of every step's p_sample, from t = T-1 down to 0."""
        return self._progressive(self.p_sample, model, shape, noise, device, progress,
                                 philox=philox, clip_denoised=clip_denoised,
                                 denoised_fn=denoised_fn, cond_fn=cond_fn,
                                 model_kwargs=model_kwargs)

    def _x_T(self, model, shape, noise, device, stream):
        """(x_T, device): noise, or drawn (randn, or Philox from the stream's first offset)."""
        if device is None:
            device = next(model.parameters()).device
        assert isinstance(shape, (tuple, list))
        if noise is not None:
            return noise, device
        if stream is not None:
            return stream.normal(torch.empty(*shape, device=device)), device
        return torch.randn(*shape, device=device), device

    def _progressive(self, step, model, shape, noise, device, progress, philox=None,
                     **step_kwargs):
        """The reverse chain from x_T (noise, or randn(*shape)) with `step`, yielding each result."""
        stream = as_philox_stream(philox)
        img, device = self._x_T(model, shape, noise, device, stream)
        if stream is not None:
            step_kwargs["philox"] = stream
        fused = self._progressive_step(step, model, stream, img.device, step_kwargs)
        # (one no_grad around the loop: the caller's code between steps runs
        # under it, as it does with improved-diffusion's no_grad per step, whose
        # yield is inside it)
        with torch.no_grad():
            for i in _progress(list(range(self.num_timesteps))[::-1], progress):
                t = _timestep_batch(i, shape[0], device)
                out = step(model, img, t, **step_kwargs) if fused is None else fused(img, t, i)
                yield out
                img = out["sample"]

    def _progressive_step(self, step, model, stream, device, step_kwargs):
        """(x, t, i) -> what `step` (our p_sample or ddim_sample, not overridden,
        without denoised_fn or cond_fn) returns, with the model, the overload,
        tables and modes resolved once for the loop; None for any other step."""
        kind = getattr(step, "__name__", None)
        if kind not in ("p_sample", "ddim_sample") or not self._plain_chain(
                kind, step_kwargs.get("denoised_fn"), step_kwargs.get("cond_fn")):
            return None
        call_model = self._model_caller(model, step_kwargs.get("model_kwargs"))
        own_args = () if kind == "p_sample" else (float(step_kwargs.get("eta", 0.0)),)
        step_on = self._loop_step(kind, step_kwargs.get("clip_denoised", True), own_args, stream,
                                  device, sample_out=False)

        def fused(x, t, i):
            model_output = call_model(x, t, i)
            noise = torch.randn_like(x) if stream is None else None
            if model_output.dtype != x.dtype:
                model_output, x, noise = in_common_dtype(model_output, x, noise)
            sample, pred_xstart = step_on(model_output, x, t, noise, None)
            return {"sample": sample, "pred_xstart": pred_xstart}

        return fused

    def _plain_chain(self, step_name, denoised_fn, cond_fn):
        """Whether a *_sample_loop may run _sample_chain: no denoised_fn or cond_fn, and
        neither the step nor the progressive loop overridden (by a subclass, or on a
        patched instance of another class: the instance's own methods are what run)."""
        def ours(name):
            return getattr(getattr(self, name), "__func__", None) is getattr(GaussianDiffusion, name)

        return (denoised_fn is None and cond_fn is None
                and ours(step_name) and ours(step_name + "_loop_progressive"))

    def _sample_chain(self, kind, clip_denoised, own_args, model, shape, noise, device,
                      progress, philox, model_kwargs):
        """The last sample of _progressive's chain, for the *_sample_loop methods: the same
        model calls and random numbers, in the same order, but each x_{t-1} written over
        x_t by the step's sample_out overload: no pred_xstart, no allocation per step.
        x_T itself is never written. What does not change from step to step (the
        wrapped model, the tables, the modes, the overload) is resolved once, so that
        a step's host time is close to a bare loop over the operator's."""
        stream = as_philox_stream(philox)
        img, device = self._x_T(model, shape, noise, device, stream)
        out = torch.empty_like(img, memory_format=torch.contiguous_format)
        call_model = self._model_caller(model, model_kwargs)
        step_into = self._loop_step(kind, clip_denoised, own_args, stream, img.device)
        with torch.no_grad():
            for i in _progress(list(range(self.num_timesteps))[::-1], progress):
                t = _timestep_batch(i, shape[0], device)
                model_output = call_model(img, t, i)
                step_noise = torch.randn_like(img) if stream is None else None
                if model_output.dtype != img.dtype:
                    model_output, img, step_noise = in_common_dtype(model_output, img, step_noise)
                    if out.dtype != img.dtype:  # a wider model output: the chain goes on in its dtype
                        out = torch.empty_like(img, memory_format=torch.contiguous_format)
                img = step_into(model_output, img, t, step_noise, out)
        return img

    def _graphed_chain(self, kind, clip_denoised, own_args, model, shape, noise, device,
                       progress, philox, model_kwargs, callbacks):
        """_sample_chain as one CUDA graph (see p_sample_loop's cuda_graph): captured
        once per model, shape and settings, kept with this diffusion (weakly: it
        pickles and frees as before). The noise given and the model's tensor
        keyword arguments are the graph's inputs, copied in at each call."""
        what = kind + "_loop"
        if device is None:
            device = noise.device if noise is not None else next(model.parameters()).device
        check_graphable(what, device, progress, callbacks, philox)
        if not self._plain_chain(kind, None, None):
            raise ValueError(f"{what}(cuda_graph=True): {kind} or its progressive loop is "
                             "overridden, which the graph would not run: pass cuda_graph=False")
        stream = as_philox_stream(philox)
        kwargs = dict(model_kwargs or {})
        tensor_names = sorted(k for k, v in kwargs.items() if torch.is_tensor(v))
        fixed = tuple(sorted((k, v) for k, v in kwargs.items() if k not in tensor_names))
        clip_key = (clip_denoised.ratio, clip_denoised.max_value) \
            if isinstance(clip_denoised, DynamicThreshold) else bool(clip_denoised)
        key = (kind, id(model), memory_key(model), tuple(shape), str(device), noise is not None,
               own_args, clip_key, None if stream is None else id(stream.generator),
               tuple(tensor_names), fixed)
        diffusion = weakref.ref(self)  # (the loop is kept by the diffusion, weakly)

        def make():
            def loop(*inputs):
                x_T = inputs[0] if noise is not None else None
                given = dict(zip(tensor_names, inputs[1 if noise is not None else 0:]))
                return diffusion()._sample_chain(kind, clip_denoised, own_args, model, shape,
                                                 x_T, device, False, stream,
                                                 {**dict(fixed), **given})
            return GraphedLoop(loop, () if stream is None else (stream.generator,), device,
                               keep=(model, self._ddpm_tables(torch.device(device))))

        inputs = ([noise] if noise is not None else []) + [kwargs[k] for k in tensor_names]
        return graphed_for(self, key, make)(*inputs)

    def _loop_step(self, kind, clip_denoised, own_args, stream, device, sample_out=True):
        """(model_output, x, t, noise, out) -> x_{t-1} written into out (sample_out),
        or (sample, pred_xstart): a loop's step with its overload, tables and
        modes taken once. A dynamic threshold's bound depends on each step's
        output: that step is formed per call."""
        if isinstance(clip_denoised, DynamicThreshold):
            return lambda mo, x, t, noise, out: self._fused(
                kind, mo, x, t, noise, clip_denoised, stream, out, own_args)
        tables = step_tables(kind, self._ddpm_tables(device))
        tail = (*tables, *own_args, *self._modes(), bool(clip_denoised), None, False)
        if stream is None:
            op = step_overload(kind, None, sample_out)
            if sample_out:
                return lambda mo, x, t, noise, out: op(mo, x, t, noise, *tail, sample=out)
            return lambda mo, x, t, noise, out: op(mo, x, t, noise, *tail)

        def drawn_in_kernel(mo, x, t, noise, out):
            op, key = _step_call(kind, stream, None, device, sample_out)
            return op(mo, x, t, *key, *tail, sample=out) if sample_out else op(mo, x, t, *key, *tail)

        return drawn_in_kernel

    # ---- DDIM -------------------------------------------------------------------------
    def _fused_ddim(self, model_output, x, t, noise, clip_denoised, eta, target, stream=None,
                    sample=None):
        """The fused DDIM step towards tab[target]; sample= and dtypes as in _fused_step."""
        return self._fused("ddim_sample", model_output, x, t, noise, clip_denoised, stream,
                           sample, (float(eta),), target)

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                    model_kwargs=None, eta=0.0, philox=None):
        """Sample x_{t-1} with DDIM: dict of sample and pred_xstart (philox: as p_sample)."""
        stream = as_philox_stream(philox)
        if denoised_fn is None and cond_fn is None:
            model_output = self._model_output(model, x, t, model_kwargs)
            noise = torch.randn_like(x) if stream is None else None
            sample, pred_xstart = self._fused_ddim(model_output, x, t, noise, clip_denoised, eta,
                                                   "alphas_cumprod_prev", stream)
            return {"sample": sample, "pred_xstart": pred_xstart}
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar = self._extract("alphas_cumprod", t, x.shape)
        alpha_bar_prev = self._extract("alphas_cumprod_prev", t, x.shape)
        sigma = formulas.ddim_sigma(eta, alpha_bar, alpha_bar_prev)
        noise = torch.randn_like(x) if stream is None else stream.normal(x)
        sample = formulas.ddim_sample(out["pred_xstart"], eps, alpha_bar_prev, sigma, noise, t)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_sample(self, model, x, t, clip_denoised=True, denoised_fn=None,
                            model_kwargs=None, eta=0.0):
        """x_{t+1} from x_t with the DDIM reverse ODE (eta must be 0)."""
        assert eta == 0.0, "Reverse ODE only for deterministic path"
        if denoised_fn is None:
            model_output = self._model_output(model, x, t, model_kwargs)
            # sigma is 0, so the noise argument is never used: pass x itself.
            sample, pred_xstart = self._fused_ddim(model_output, x, t, x, clip_denoised, 0.0,
                                                   "alphas_cumprod_next")
            return {"sample": sample, "pred_xstart": pred_xstart}
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar_next = self._extract("alphas_cumprod_next", t, x.shape)
        return {"sample": formulas.ddim_reverse_sample(out["pred_xstart"], eps, alpha_bar_next),
                "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                         cond_fn=None, model_kwargs=None, device=None, progress=False, eta=0.0,
                         philox=None, cuda_graph=False):
        """Generate samples with DDIM: the final x_0 (philox, cuda_graph: as p_sample_loop)."""
        if cuda_graph:
            return self._graphed_chain("ddim_sample", clip_denoised, (float(eta),), model, shape,
                                       noise, device, progress, philox, model_kwargs,
                                       (("denoised_fn", denoised_fn), ("cond_fn", cond_fn)))
        if self._plain_chain("ddim_sample", denoised_fn, cond_fn):
            return self._sample_chain("ddim_sample", clip_denoised, (float(eta),), model, shape,
                                      noise, device, progress, philox, model_kwargs)
        return _last(self.ddim_sample_loop_progressive(
            model, shape, noise=noise, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs, device=device, progress=progress,
            eta=eta, philox=philox))["sample"]

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True,
                                     denoised_fn=None, cond_fn=None, model_kwargs=None,
                                     device=None, progress=False, eta=0.0, philox=None):
        """Yield the dict of every DDIM step, from t = T-1 down to 0."""
        return self._progressive(self.ddim_sample, model, shape, noise, device, progress,
                                 philox=philox, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                                 cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta)

    # ---- losses -----------------------------------------------------------------------------
    def _vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        """The variational bound term of step t in bits per dimension (decoder NLL at t = 0)."""
        true_mean, _, true_log_variance_clipped = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
        kl = mean_flat(kl) / math.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"])
        assert decoder_nll.shape == x_start.shape
        decoder_nll = mean_flat(decoder_nll) / math.log(2.0)
        output = torch.where((t == 0), decoder_nll, kl)
        return {"output": output, "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        """Training losses for one step: dict with "loss" (and "mse", "vb" when used)."""
        if model_kwargs is None:
            model_kwargs = {}
        if noise is None:
            noise = torch.randn_like(x_start)
        x_t = self.q_sample(x_start, t, noise=noise)
        terms = {}
        loss_type = mode_name(self.loss_type)
        if loss_type in ("kl", "rescaled_kl"):
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False,
                                               model_kwargs=model_kwargs)["output"]
            if loss_type == "rescaled_kl":
                terms["loss"] *= self.num_timesteps
        elif loss_type in ("mse", "rescaled_mse"):
            model_output = self._model_output(model, x_t, t, model_kwargs)
            if _is_learned(self.model_var_type):
                channels = x_t.shape[1]
                model_output, model_var_values = torch.split(model_output, channels, dim=1)
                # The vb term learns the variance only: the mean is frozen.
                frozen_out = torch.cat([model_output.detach(), model_var_values], dim=1)
                terms["vb"] = self._vb_terms_bpd(
                    _Frozen(frozen_out), x_start, x_t, t, clip_denoised=False)["output"]
                if loss_type == "rescaled_mse":
                    terms["vb"] *= self.num_timesteps / 1000.0
            terms["mse"] = self._mse_term(model_output, x_start, x_t, t, noise)
            terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
        else:
            raise NotImplementedError(self.loss_type)
        return terms

    def _mse_term(self, model_output, x_start, x_t, t, noise):
        """mean_flat((target - model_output)**2), the target being what the
        model predicts; for epsilon, x_0 and v in one pass (diffusion_mse: the
        mean summed in float64, a float32 loss for 16-bit data)."""
        mean_type = mode_name(self.model_mean_type)
        if mean_type == "previous_x":
            target = self.q_posterior_mean_variance(x_start, x_t, t)[0]
            return mean_flat((target - model_output) ** 2)
        tab = self._ddpm_tables(x_start.device)
        # (the front end: a 16-bit output under autocast is compared in float32)
        return diffusion_mse(model_output, x_start, noise, t, tab["sqrt_alphas_cumprod"],
                             tab["sqrt_one_minus_alphas_cumprod"], None, mean_type)

    def _prior_bpd(self, x_start):
        """KL of q(x_T | x_0) from N(0, I), in bits per dimension."""
        batch_size = x_start.shape[0]
        t = _timestep_batch(self.num_timesteps - 1, batch_size, x_start.device)
        qt_mean, _, qt_log_variance = self.q_mean_variance(x_start, t)
        kl_prior = normal_kl(mean1=qt_mean, logvar1=qt_log_variance, mean2=0.0, logvar2=0.0)
        return mean_flat(kl_prior) / math.log(2.0)

    def calc_bpd_loop(self, model, x_start, clip_denoised=True, model_kwargs=None):
        """The whole variational bound, in bits per dimension, with its terms."""
        device = x_start.device
        batch_size = x_start.shape[0]
        vb, xstart_mse, mse = [], [], []
        for t in list(range(self.num_timesteps))[::-1]:
            t_batch = _timestep_batch(t, batch_size, device)
            noise = torch.randn_like(x_start)
            x_t = self.q_sample(x_start=x_start, t=t_batch, noise=noise)
            with torch.no_grad():
                out = self._vb_terms_bpd(model, x_start=x_start, x_t=x_t, t=t_batch,
                                         clip_denoised=clip_denoised, model_kwargs=model_kwargs)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
            eps = self._predict_eps_from_xstart(x_t, t_batch, out["pred_xstart"])
            mse.append(mean_flat((eps - noise) ** 2))
        vb = torch.stack(vb, dim=1)
        xstart_mse = torch.stack(xstart_mse, dim=1)
        mse = torch.stack(mse, dim=1)
        prior_bpd = self._prior_bpd(x_start)
        total_bpd = vb.sum(dim=1) + prior_bpd
        return {"total_bpd": total_bpd, "prior_bpd": prior_bpd, "vb": vb,
                "xstart_mse": xstart_mse, "mse": mse}


class _Frozen:
    """A 'model' that returns a fixed output (the frozen mean for the vb term)."""

    def __init__(self, output):
        self.output = output

    def __call__(self, *args, **kwargs):
        return self.output


def _last(iterable):
    final = None
    for final in iterable:
        pass
    return final


def _step_call(kind, stream, noise, device, sample_out):
    """(the step's overload, its noise arguments): the noise tensor, or the
    stream's key for the next call, (seed, offset) or (generator,)."""
    if stream is None:
        return step_overload(kind, None, sample_out), (noise,)
    noise_args = stream.noise_args(device)
    return step_overload(kind, noise_args, sample_out), noise_args


def _timestep_batch(t, batch_size, device):
    """[t] * batch_size as an int64 tensor on device, as improved-diffusion's
    torch.tensor([t] * batch_size, device=device) gives it, but filled there:
    that one is a blocking host-to-device copy (a host sync per step on a GPU)."""
    return torch.full((batch_size,), t, dtype=torch.long, device=device)


def _progress(indices, progress):
    if not progress:
        return indices
    try:
        from tqdm.auto import tqdm

        return tqdm(indices)
    except ImportError:
        return _PlainProgress(indices)


class _PlainProgress:
    """A progress line on stderr when tqdm is not installed."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        import sys
        import time

        n = len(self.items)
        start = time.perf_counter()
        for k, item in enumerate(self.items):
            yield item
            if (k + 1) % max(1, n // 20) == 0 or k + 1 == n:
                rate = (k + 1) / max(time.perf_counter() - start, 1e-9)
                sys.stderr.write(f"\r{k + 1}/{n} steps, {rate:.1f} it/s")
                sys.stderr.flush()
        sys.stderr.write("\n")
