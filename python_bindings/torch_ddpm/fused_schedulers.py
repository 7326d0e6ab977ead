"""A diffusers-style DDPMScheduler on the fused operators.

Same constructor options, attributes and methods as diffusers' DDPMScheduler
(add_noise, step returning prev_sample and pred_original_sample,
get_velocity, set_timesteps with "linspace" / "leading" / "trailing"
spacing), and the tables are built the way diffusers builds them (float32
betas and alphas_cumprod), so the same inputs and noise give the same outputs.
Unlike the usual one, `step` also accepts a per-sample timestep tensor [B].

Covered: prediction_type epsilon / sample / v_prediction; every variance_type
(learned: diffusers reads the model's variance half as the variance itself, so
the step hands the operator its log); clip_sample with any clip_sample_range
and thresholding (dynamic_thresholding_ratio, sample_max_value), both inside
the one fused pass as a per-sample clip bound (thresholding's bound is the
quantile of the unclipped x_0, computed first); beta_schedule linear,
scaled_linear, squaredcos_cap_v2, sigmoid or trained_betas. fixed_large_log
differs on purpose: diffusers takes the square root of log(beta_t) and returns
NaN (diffusers #14569); here it is a noise of standard deviation
exp(log(beta_t) / 2), the same step as fixed_large. Not covered here
(NotImplementedError): rescale_betas_zero_snr and laplace, which
torch_ddpm.diffusers.DDPMScheduler (a real diffusers scheduler: from_config,
save_pretrained, pipelines) takes from diffusers' own helpers.
"""
from collections import OrderedDict

import numpy as np
import torch

from .losses import diffusion_mse
from .operators import in_common_dtype, step_overload
from .tables import cached_on, step_tables
from .thresholding import step_threshold_bound
from .schedules import chain_tables, cosine_betas

__all__ = ["DDPMScheduler", "DDPMSchedulerOutput", "DDIMScheduler", "DDIMSchedulerOutput",
           "denoising_loop"]

_MEAN_TYPES = {"epsilon": "epsilon", "sample": "start_x", "v_prediction": "v"}
# fixed_large_log: diffusers takes the square root of log(beta_t) and steps to
# NaN (diffusers #14569); its meaning, a noise of standard deviation
# exp(log(beta_t) / 2), is fixed_large's
# learned: diffusers reads the model's variance half as the variance itself
# (its square root scales the noise); the operator's learned reads a
# log-variance, so the step hands it the log of that half
# Any other name steps as fixed_small, as diffusers' step does (its variance
# falls through to the posterior variance).
_VAR_TYPES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small",
              "fixed_large": "fixed_large", "fixed_large_log": "fixed_large",
              "learned": "learned", "learned_range": "learned_range"}
_LEARNED = ("learned", "learned_range")


class _StepOutput(OrderedDict):
    """A step's output as diffusers' BaseOutput behaves, without diffusers:
    fields by attribute (out.prev_sample), by key (out["prev_sample"]) or by
    position (out[0], out.to_tuple()), in field order; as a dict it iterates
    its field names."""

    def __init__(self, prev_sample, pred_original_sample):
        super().__init__(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def to_tuple(self):
        return tuple(self.values())

    def __reduce__(self):
        return type(self), self.to_tuple()


_FILLED_DIRECTLY = {}


def _step_output(cls, prev_sample, pred_original_sample):
    """cls(prev_sample=..., pred_original_sample=...), the object a step
    returns. diffusers' output classes (dataclasses over OrderedDict) build it
    with a dataclass __init__ and a __post_init__ that walks the fields, which
    costs as much as the step's operator at sampling shapes; for them the same
    object, each field an item (in field order) and an attribute, is filled
    directly. A test holds the two alike."""
    direct = _FILLED_DIRECTLY.get(cls)
    if direct is None:
        import dataclasses

        direct = _FILLED_DIRECTLY[cls] = (
            issubclass(cls, OrderedDict) and dataclasses.is_dataclass(cls)
            and [f.name for f in dataclasses.fields(cls)] == list(_OUTPUT_FIELDS))
    if not direct:
        return cls(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
    out = cls.__new__(cls)
    for name, value in zip(_OUTPUT_FIELDS, (prev_sample, pred_original_sample)):
        OrderedDict.__setitem__(out, name, value)
        object.__setattr__(out, name, value)
    return out


_OUTPUT_FIELDS = ("prev_sample", "pred_original_sample")


class DDPMSchedulerOutput(_StepOutput):
    """prev_sample, pred_original_sample."""


class DDIMSchedulerOutput(_StepOutput):
    """prev_sample, pred_original_sample."""


class _Config(dict):
    __getattr__ = dict.__getitem__


def _randn(shape, dtype, device, generator):
    """Normal noise of that shape, dtype and device, drawn as diffusers'
    randn_tensor draws it: with a CPU generator on the CPU, then moved to the
    device; with a list of generators (a pipeline's generator=[...]), one
    sample from each, in order (a list of one is that generator)."""
    first = generator[0] if isinstance(generator, list) else generator
    rand_device = device
    if first is not None and first.device.type != device.type:
        if first.device.type != "cpu":
            raise ValueError(f"Cannot generate a {device} tensor from a generator of type "
                             f"{first.device.type}.")
        rand_device = torch.device("cpu")
    if isinstance(generator, list) and len(generator) == 1:
        generator = generator[0]
    if isinstance(generator, list):
        one = (1,) + tuple(shape[1:])
        noise = torch.cat([torch.randn(one, generator=generator[i], device=rand_device,
                                       dtype=dtype) for i in range(shape[0])])
    else:
        noise = torch.randn(shape, generator=generator, device=rand_device, dtype=dtype)
    return noise if rand_device is device else noise.to(device)


def _timestep_batch(owner, value, batch, device):
    """[B] int64 on device, all `value`: made once per (value, batch, device)
    and kept in owner (the operators only read it), outside inference mode
    (autograd may save it later)."""
    made = owner.__dict__.setdefault("_timestep_batches", {})
    key = (value, batch, str(device))
    t = made.get(key)
    if t is None:
        with torch.inference_mode(False):
            t = made[key] = torch.full((batch,), value, dtype=torch.long, device=device)
    return t


def _check_inference_steps(num_inference_steps, T):
    if not isinstance(num_inference_steps, (int, np.integer)) or num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be a positive integer (at most {T}), got "
                         f"{num_inference_steps!r}")


def _spaced_timesteps(config, num_inference_steps):
    """The sampling chain's timesteps (int64, descending) as diffusers' DDPM and
    DDIM schedulers space them."""
    T, spacing = config.num_train_timesteps, config.timestep_spacing
    if spacing == "linspace":
        return np.linspace(0, T - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        step_ratio = T // num_inference_steps
        timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy()
        return timesteps.astype(np.int64) + config.steps_offset
    if spacing == "trailing":
        step_ratio = T / num_inference_steps
        return np.round(np.arange(T, 0, -step_ratio)).astype(np.int64) - 1
    raise ValueError(f"{spacing} is not supported. Please make sure to choose one of 'leading', "
                     "'trailing' or 'linspace'.")


class _FusedDDPMSteps:
    """The scheduler's state and methods, from its config (self.config): shared by
    this look-alike and torch_ddpm.diffusers.DDPMScheduler, the real diffusers one."""
    order = 1
    _OUTPUT = DDPMSchedulerOutput
    # the real diffusers subclass also rescales to zero terminal SNR (diffusers' helper)
    _ZERO_SNR = False

    def _schedule_from_config(self):
        """Refuses what the config asks that is not covered, then builds the
        schedule and the untouched chain (every training timestep)."""
        config = self.config
        unsupported = []
        if config.prediction_type not in _MEAN_TYPES:
            unsupported.append(f"prediction_type={config.prediction_type!r}")
        if config.rescale_betas_zero_snr and not self._ZERO_SNR:
            unsupported.append("rescale_betas_zero_snr=True")
        if unsupported:
            raise NotImplementedError(f"torch_ddpm {type(self).__name__} does not cover "
                                      + ", ".join(unsupported))
        self.betas = self._betas(config)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = torch.from_numpy(
            np.arange(0, config.num_train_timesteps)[::-1].copy().astype(np.int64))
        # (trained_betas may be shorter than num_train_timesteps, as diffusers
        # allows: the tables have one entry per beta, and a later timestep is
        # refused by the step as out of range)

    def _setup_from_config(self):
        self._schedule_from_config()
        self.one = torch.tensor(1.0)
        self.custom_timesteps = False
        self.variance_type = self.config.variance_type  # (diffusers' attribute; the step reads the config)
        self._build_tables()

    def _betas(self, config):
        """float32 betas, built as diffusers builds them."""
        T, start, end = config.num_train_timesteps, config.beta_start, config.beta_end
        if config.trained_betas is not None:
            return torch.tensor(config.trained_betas, dtype=torch.float32)
        if config.beta_schedule == "linear":
            return torch.linspace(start, end, T, dtype=torch.float32)
        if config.beta_schedule == "scaled_linear":
            return torch.linspace(start**0.5, end**0.5, T, dtype=torch.float32) ** 2
        if config.beta_schedule == "squaredcos_cap_v2":
            return cosine_betas(T).float()
        if config.beta_schedule == "sigmoid":
            return torch.sigmoid(torch.linspace(-6, 6, T)) * (end - start) + start
        raise NotImplementedError(f"beta_schedule={config.beta_schedule!r} is not covered")

    def __len__(self):
        return self.config.num_train_timesteps

    def scale_model_input(self, sample, timestep=None):
        return sample

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None):
        """The timesteps of the sampling chain, as diffusers chooses them."""
        T = self.config.num_train_timesteps
        if num_inference_steps is not None and timesteps is not None:
            raise ValueError("Can only pass one of `num_inference_steps` or `custom_timesteps`.")
        if timesteps is not None:
            if any(timesteps[i] >= timesteps[i - 1] for i in range(1, len(timesteps))):
                raise ValueError("`custom_timesteps` must be in descending order.")
            if timesteps[0] >= T:
                raise ValueError("`timesteps` must start before `self.config.train_timesteps`")
            timesteps = np.array(timesteps, dtype=np.int64)
            self.custom_timesteps = True
        else:
            _check_inference_steps(num_inference_steps, T)
            if num_inference_steps > T:
                raise ValueError(f"`num_inference_steps`: {num_inference_steps} cannot be larger than {T}")
            self.num_inference_steps = num_inference_steps
            self.custom_timesteps = False
            timesteps = _spaced_timesteps(self.config, num_inference_steps)
        self.timesteps = torch.from_numpy(timesteps).to(device)
        self._timesteps_host = tuple(int(v) for v in timesteps)  # (what a graph's key reads)
        self._build_tables()

    def _graph_chain(self, device):
        """(what identifies this chain for a captured loop, what a captured
        loop reads that it did not make): the timesteps by value; the
        timesteps and tables on device."""
        return self._timesteps_host, (self.timesteps, self._on(device),
                                      self._step_tables(self._STEP_OP, device))

    def previous_timestep(self, timestep):
        if self.custom_timesteps or self.num_inference_steps:
            index = (self.timesteps == timestep).nonzero(as_tuple=True)[0][0]
            if index == self.timesteps.shape[0] - 1:
                return torch.tensor(-1)
            return self.timesteps[index + 1]
        return timestep - 1

    def _build_tables(self):
        """Per-train-timestep tables for the step t -> previous_timestep(t), in float64
        from diffusers' float32 alphas_cumprod; indexed by t in the kernels."""
        prev = torch.arange(len(self.alphas_cumprod), dtype=torch.long) - 1
        if self.custom_timesteps or self.num_inference_steps:
            ts = self.timesteps.cpu().long()
            after = torch.cat([ts[1:], ts.new_tensor([-1])])
            inside = ts < len(prev)  # (trained betas fewer than the timesteps)
            prev[ts[inside]] = after[inside]
        ab = self.alphas_cumprod.double()
        ab_prev = torch.where(prev >= 0, ab[prev.clamp(min=0)], torch.ones_like(ab))
        current_beta = 1 - ab / ab_prev
        tab = chain_tables(current_beta, ab, ab_prev)
        self._tables_cpu = {
            **{k: tab[k] for k in ("sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                                   "posterior_mean_coef1", "posterior_mean_coef2",
                                   "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod")},
            # the step's last two tables: diffusers clamps the variance before
            # its log; its betas are the chain's (between the spaced steps)
            "posterior_log_variance_clipped": torch.log(tab["posterior_variance"].clamp(min=1e-20)),
            "betas": current_beta,
            "neg_sqrt_one_minus_alphas_cumprod": -tab["sqrt_one_minus_alphas_cumprod"],
        }
        self._tables_version = getattr(self, "_tables_version", 0) + 1

    def _on(self, device):
        """The tables of the current chain on `device` (made again after set_timesteps)."""
        return cached_on(self, device, lambda: self._tables_cpu, key=self._tables_version)

    def _step_tables(self, kind, device):
        """step_tables(kind) of the current chain on device, formed once per
        chain and device (a step is called hundreds of times per image)."""
        key = (kind, device, self._tables_version)
        hit = self.__dict__.get("_step_tables_hit")
        if hit is None or hit[0] != key:
            hit = self.__dict__["_step_tables_hit"] = (key, step_tables(kind, self._on(device)))
        return hit[1]

    def _timesteps(self, timesteps, batch, device):
        """[B] int64 on device: a per-sample tensor, or one timestep (an int, a
        0-d tensor, a tensor of one element) for the whole batch, as diffusers
        broadcasts it."""
        if torch.is_tensor(timesteps) and timesteps.dim() == 0:
            if timesteps.device.type == "cpu":  # a pipeline's timestep, read on the host
                return _timestep_batch(self, int(timesteps), batch, device)
            if timesteps.dtype == torch.long and timesteps.device == device:
                return timesteps.expand(batch)  # (never read on the host)
        t = torch.as_tensor(timesteps, device=device).long()
        if t.numel() == 1 and batch != 1:
            t = t.reshape(()).expand(batch)
        if t.numel() != batch:
            raise ValueError(f"expected one timestep or one per sample ({batch}), got a tensor "
                             f"of shape {tuple(t.shape)}")
        return t.reshape(batch).contiguous()

    def step(self, model_output, timestep, sample, generator=None, return_dict=True, noise=None):
        """One reverse step. timestep: an int, a 0-d tensor, or a tensor [B] of
        per-sample timesteps. noise: optional explicit noise (else drawn as
        diffusers does: randn of the sample's shape from `generator`, and only
        when a scalar timestep is > 0).

        No host synchronization: a timestep on a GPU is never read on the host
        (diffusers reads it, #9475), so its noise is drawn at t = 0 too, where
        the operator adds none; only the generator's state after the last step
        differs from diffusers' then. An int or CPU timestep is read as there."""
        t = self._timesteps(timestep, sample.shape[0], sample.device)
        if noise is None:
            host_scalar = not torch.is_tensor(timestep) or (
                timestep.dim() == 0 and timestep.device.type == "cpu")
            if host_scalar and int(timestep) <= 0:
                noise = torch.zeros_like(sample)  # diffusers draws nothing at t = 0
            else:  # as diffusers draws it: the sample's shape, the model output's dtype
                noise = _randn((sample.shape[0], sample.shape[1], *sample.shape[2:]),
                               model_output.dtype, sample.device, generator)
        # a 16-bit output (autocast) with a float32 sample: computed in float32,
        # as diffusers' formulas promote
        if not model_output.dtype == sample.dtype == noise.dtype:
            model_output, sample, noise = in_common_dtype(model_output, sample, noise)
        channels = sample.shape[1]
        # read from the config at each step, as diffusers' variance is (a
        # register_to_config after construction takes effect)
        variance_type = self.config.variance_type
        if model_output.shape[1] == 2 * channels and variance_type not in _LEARNED:
            model_output = model_output[:, :channels]
        if variance_type == "learned":
            if model_output.shape[1] != 2 * channels:
                raise ValueError(f"variance_type='learned' needs a model output of {2 * channels} "
                                 f"channels (the mean, then the variance), got "
                                 f"{model_output.shape[1]}")
            model_output = torch.cat([model_output[:, :channels],
                                      torch.log(model_output[:, channels:])], dim=1)
        clip, bound, rescale = self._clip_args(model_output, sample, t)
        prev_sample, pred_original_sample = step_overload("p_sample")(
            model_output, sample, t, noise, *self._step_tables("p_sample", sample.device),
            _MEAN_TYPES[self.config.prediction_type], _VAR_TYPES.get(variance_type, "fixed_small"),
            clip, bound, rescale)
        if not return_dict:
            return prev_sample, pred_original_sample
        return _step_output(self._OUTPUT, prev_sample, pred_original_sample)

    def _get_variance(self, t, predicted_variance=None, variance_type=None):
        """diffusers' helper (custom pipelines call it; the step does not): the
        variance of the step from t, from the float32 alphas_cumprod, by
        variance_type (default: the config's)."""
        prev_t = self.previous_timestep(t)
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
        # the posterior variance, kept above 0 for its log
        variance = torch.clamp((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t,
                               min=1e-20)
        variance_type = variance_type or self.config.variance_type
        if variance_type == "fixed_small_log":
            return torch.exp(0.5 * torch.log(variance))
        if variance_type == "fixed_large":
            return current_beta_t
        if variance_type == "fixed_large_log":
            return torch.log(current_beta_t)
        if variance_type == "learned":
            return predicted_variance
        if variance_type == "learned_range":
            frac = (predicted_variance + 1) / 2
            return frac * torch.log(current_beta_t) + (1 - frac) * torch.log(variance)
        return variance  # fixed_small, and any other name

    def _clip_args(self, model_output, sample, t):
        """The step operator's (clip_denoised, clip_bound, clip_rescale) for
        diffusers' limit on x_0: thresholding (the bound from the unclipped
        x_0's quantile, computed here first from the output's prediction half;
        clamp and divide in the step), clip_sample_range (a bound of r for
        every sample), or [-1, 1]."""
        config = self.config
        if config.thresholding:
            prediction = model_output[:, :sample.shape[1]]
            bound = step_threshold_bound(self._STEP_OP, prediction, sample, t,
                                         self._step_tables(self._STEP_OP, sample.device),
                                         _MEAN_TYPES[self.config.prediction_type],
                                         self.config.dynamic_thresholding_ratio,
                                         self.config.sample_max_value)
            return True, bound, True
        # (formed once per setting, batch and device; the config is read at
        # every step, as diffusers reads it)
        key = (config.clip_sample, config.clip_sample_range, sample.shape[0], sample.device)
        hit = self.__dict__.get("_clip_args_hit")
        if hit is not None and hit[0] == key:
            return hit[1]
        if config.clip_sample and config.clip_sample_range != 1.0:
            with torch.inference_mode(False):  # (kept: autograd may save it later)
                bound = torch.full((sample.shape[0],), float(config.clip_sample_range),
                                   dtype=torch.float64, device=sample.device)
            args = (True, bound, False)
        else:
            args = (bool(config.clip_sample), None, False)
        self.__dict__["_clip_args_hit"] = (key, args)
        return args

    _STEP_OP = "p_sample"  # the step operator

    def add_noise(self, original_samples, noise, timesteps, noise_offset=None):
        """sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise, per sample, the coefficients
        from float64 tables and the result rounded once: a 16-bit sample gets its
        noise at small t too, where diffusers casts alphas_cumprod to the
        sample's dtype first and adds none (diffusers #9004).

        noise_offset ([B, C], beyond diffusers): the noise is noise +
        noise_offset[b, c], in the same pass: the scripts' --noise_offset
        (``noise += s * randn(B, C, 1, 1)``) without the full-size add; pass
        it to training_loss too."""
        tab = self._on(original_samples.device)
        t = self._timesteps(timesteps, original_samples.shape[0], original_samples.device)
        original_samples, noise = in_common_dtype(original_samples, noise)  # (as diffusers)
        if noise_offset is not None:
            noise_offset = noise_offset.reshape(original_samples.shape[:2]).to(
                original_samples.dtype)
        return torch.ops.ddpm.q_sample(original_samples, t, noise, tab["sqrt_alphas_cumprod"],
                                       tab["sqrt_one_minus_alphas_cumprod"], noise_offset)

    def get_velocity(self, sample, noise, timesteps):
        """v = sqrt(abar_t) noise - sqrt(1 - abar_t) sample (q_sample with a negated table)."""
        tab = self._on(sample.device)
        t = self._timesteps(timesteps, sample.shape[0], sample.device)
        sample, noise = in_common_dtype(sample, noise)  # (as diffusers)
        return torch.ops.ddpm.q_sample(noise, t, sample, tab["sqrt_alphas_cumprod"],
                                       tab["neg_sqrt_one_minus_alphas_cumprod"])

    def training_loss(self, model_output, original_samples, noise, timesteps, weight=None,
                      noise_offset=None):
        """The training loss per sample of a model predicting
        config.prediction_type from add_noise(original_samples, noise,
        timesteps): weight[t] * mean((model_output - target)**2) in one pass
        (torch_ddpm.diffusion_mse), [B], float32 (float64 for float64 data).
        weight: a [T] table (torch_ddpm.loss_weights(self, "min_snr", ...)) or
        None. noise_offset: add_noise's. A 16-bit model output (autocast) is
        compared in the wider type, as diffusers' scripts do with .float()
        (the front end's rule). In place of the target and
        F.mse_loss(...).mean(dims) of diffusers' training scripts."""
        tab = self._on(original_samples.device)
        t = self._timesteps(timesteps, original_samples.shape[0], original_samples.device)
        if weight is not None:
            weight = weight.to(device=original_samples.device, dtype=torch.float64)
        if noise_offset is not None:
            noise_offset = noise_offset.reshape(original_samples.shape[:2])
        return diffusion_mse(model_output, original_samples, noise, t,
                             tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"],
                             weight, self.config.prediction_type, noise_offset)


class DDPMScheduler(_FusedDDPMSteps):
    """The look-alike: diffusers' constructor and methods without diffusers (no
    from_config / save_pretrained; torch_ddpm.diffusers.DDPMScheduler has them)."""

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                 beta_schedule="linear", trained_betas=None, variance_type="fixed_small",
                 clip_sample=True, prediction_type="epsilon", thresholding=False,
                 dynamic_thresholding_ratio=0.995, clip_sample_range=1.0, sample_max_value=1.0,
                 timestep_spacing="leading", steps_offset=0, rescale_betas_zero_snr=False):
        self.config = _Config(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule, trained_betas=trained_betas, variance_type=variance_type,
            clip_sample=clip_sample, prediction_type=prediction_type, thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range, sample_max_value=sample_max_value,
            timestep_spacing=timestep_spacing, steps_offset=steps_offset,
            rescale_betas_zero_snr=rescale_betas_zero_snr)
        self._setup_from_config()


class _FusedDDIMSteps(_FusedDDPMSteps):
    """diffusers' DDIMScheduler state and methods on the fused ddim_sample
    operator: shared by the look-alike below and torch_ddpm.diffusers'.
    add_noise, get_velocity, training_loss, scale_model_input and the
    thresholding are the DDPM scheduler's."""
    _OUTPUT = DDIMSchedulerOutput

    def _setup_from_config(self):
        self._schedule_from_config()
        # the target of the last step: 1, or the first alphas_cumprod
        self.final_alpha_cumprod = (torch.tensor(1.0) if self.config.set_alpha_to_one
                                    else self.alphas_cumprod[0])
        self._build_tables()

    def set_timesteps(self, num_inference_steps, device=None):
        """The timesteps of the sampling chain, as diffusers' DDIMScheduler chooses them."""
        T = self.config.num_train_timesteps
        _check_inference_steps(num_inference_steps, T)
        if num_inference_steps > T:
            raise ValueError(f"`num_inference_steps`: {num_inference_steps} cannot be larger than "
                             f"`self.config.train_timesteps`: {T}")
        self.num_inference_steps = num_inference_steps
        timesteps = _spaced_timesteps(self.config, num_inference_steps)
        ts = torch.from_numpy(timesteps)
        ts = ts[ts < len(self.alphas_cumprod)]
        zero_snr = ts[self.alphas_cumprod[ts] == 0]
        if self.config.prediction_type == "epsilon" and len(zero_snr):
            # x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) divides by 0 there
            # (diffusers' step returns NaN or inf, #3851)
            why = ("rescale_betas_zero_snr=True sets the last one to 0"
                   if self.config.rescale_betas_zero_snr else
                   f"the schedule's betas reach {float(self.betas.max()):.3g}: products of "
                   "1 - beta underflow or cross 0")
            raise ValueError(
                "torch_ddpm DDIMScheduler: epsilon prediction has no x_0 where alphas_cumprod is "
                f"0, and this {num_inference_steps}-step '{self.config.timestep_spacing}' chain "
                f"steps from t = {zero_snr.tolist()[:4]} where it is ({why}): a model trained "
                "there predicts v (prediction_type='v_prediction') or x_0 ('sample')")
        self.timesteps = torch.from_numpy(timesteps).to(device)
        self._timesteps_host = tuple(int(v) for v in timesteps)  # (what a graph's key reads)
        self._build_tables()

    def _prev_alphas_cumprod(self):
        """Per train timestep t, float64: alphas_cumprod at t - T // n (diffusers'
        prev_timestep, whatever the spacing), or final_alpha_cumprod below 0."""
        T = self.config.num_train_timesteps
        ab = self.alphas_cumprod.double()
        step = T // self.num_inference_steps if self.num_inference_steps else 1
        prev = torch.arange(len(ab), dtype=torch.long) - step
        final = self.final_alpha_cumprod.double()
        return torch.where(prev >= 0, ab[prev.clamp(min=0)], final)

    def _build_tables(self):
        ab = self.alphas_cumprod.double()
        ab_prev = self._prev_alphas_cumprod()
        sqrt_one_minus = (1 - ab).sqrt()
        self._tables_cpu = {
            "sqrt_recip_alphas_cumprod": 1 / ab.sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / ab - 1).sqrt(),
            # (read by the previous_x prediction only, which diffusers has not)
            "posterior_mean_coef1": torch.zeros_like(ab),
            "posterior_mean_coef2": torch.zeros_like(ab),
            "alphas_cumprod": ab,
            "alphas_cumprod_prev": ab_prev,
            "sqrt_alphas_cumprod": ab.sqrt(),
            "sqrt_one_minus_alphas_cumprod": sqrt_one_minus,
            "neg_sqrt_one_minus_alphas_cumprod": -sqrt_one_minus,
        }
        self._tables_version = getattr(self, "_tables_version", 0) + 1

    def _get_variance(self, timestep, prev_timestep):
        alpha_prod_t = self.alphas_cumprod[timestep]
        alpha_prod_t_prev = (self.alphas_cumprod[prev_timestep] if prev_timestep >= 0
                             else self.final_alpha_cumprod)
        return (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)

    _STEP_OP = "ddim_sample"

    def step(self, model_output, timestep, sample, eta=0.0, use_clipped_model_output=False,
             generator=None, variance_noise=None, return_dict=True):
        """One DDIM step, as diffusers' DDIMScheduler.step, in one fused pass:
        the limit on x_0 (clip_sample_range, or thresholding's per-sample bound,
        a quantile computed first) and the noise prediction of the direction
        term (the model's own, diffusers' default, or the one re-derived from
        the limited x_0 with use_clipped_model_output=True) are the
        operator's. timestep: an int, a 0-d
        tensor or a tensor [B] (one per sample). Noise is drawn only for
        eta > 0, as diffusers draws it (randn of model_output's shape and
        dtype from `generator`), or taken from variance_noise. On purpose
        unlike diffusers: at zero terminal SNR and eta = 1 the direction
        term's 1 - alpha_bar_prev - sigma^2 (0 in exact arithmetic) is kept
        at 0, where diffusers' float32 can round it below 0 and return NaN
        (diffusers #5969)."""
        if self.num_inference_steps is None:
            raise ValueError("Number of inference steps is 'None', you need to run "
                             "'set_timesteps' after creating the scheduler")
        t = self._timesteps(timestep, sample.shape[0], sample.device)
        if eta > 0:
            if variance_noise is not None and generator is not None:
                raise ValueError("Cannot pass both generator and variance_noise. Please make sure "
                                 "that either `generator` or `variance_noise` stays `None`.")
            if variance_noise is None:
                variance_noise = _randn(model_output.shape, model_output.dtype, model_output.device,
                                        generator)
        else:
            variance_noise = None
        # a 16-bit output (autocast) with a float32 sample: computed in float32,
        # as diffusers' formulas promote
        noise = variance_noise
        if model_output.dtype != sample.dtype or (noise is not None and noise.dtype != sample.dtype):
            model_output, sample, noise = in_common_dtype(model_output, sample, noise)
        if noise is None:
            # eta = 0: sigma is 0, no noise is drawn or added; the sample stands in
            # for the noise argument (no full-size zeros written per step)
            noise = sample
        # the limit on x_0 (a clip range or thresholding's bound) and which noise
        # prediction the direction term uses are the operator's: one pass
        clip, bound, rescale = self._clip_args(model_output, sample, t)
        prev_sample, pred_original_sample = step_overload("ddim_sample")(
            model_output, sample, t, noise, *self._step_tables("ddim_sample", sample.device),
            float(eta),
            _MEAN_TYPES[self.config.prediction_type], "fixed_small", clip, bound, rescale,
            bool(use_clipped_model_output))
        if not return_dict:
            return prev_sample, pred_original_sample
        return _step_output(self._OUTPUT, prev_sample, pred_original_sample)


class DDIMScheduler(_FusedDDIMSteps):
    """The look-alike of diffusers' DDIMScheduler without diffusers (no
    from_config / save_pretrained; torch_ddpm.diffusers.DDIMScheduler has them)."""

    def __init__(self, num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                 beta_schedule="linear", trained_betas=None, clip_sample=True,
                 set_alpha_to_one=True, steps_offset=0, prediction_type="epsilon",
                 thresholding=False, dynamic_thresholding_ratio=0.995, clip_sample_range=1.0,
                 sample_max_value=1.0, timestep_spacing="leading", rescale_betas_zero_snr=False):
        self.config = _Config(
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
            beta_schedule=beta_schedule, trained_betas=trained_betas, clip_sample=clip_sample,
            set_alpha_to_one=set_alpha_to_one, steps_offset=steps_offset,
            prediction_type=prediction_type, thresholding=thresholding,
            dynamic_thresholding_ratio=dynamic_thresholding_ratio,
            clip_sample_range=clip_sample_range, sample_max_value=sample_max_value,
            timestep_spacing=timestep_spacing, rescale_betas_zero_snr=rescale_betas_zero_snr)
        self._setup_from_config()


def denoising_loop(model, scheduler, latents, generator=None, cuda_graph=False,
                   step_kwargs=None, **model_kwargs):
    """The loop of diffusers' pipelines: for each of scheduler.timesteps
    (set_timesteps first), the model's output on
    scheduler.scale_model_input(latents, t) (its .sample, for a diffusers
    model) then scheduler.step(...).prev_sample; returns the last latents
    (give them already scaled by init_noise_sigma, as pipelines prepare
    them). The chain starts anew at each call (a multistep scheduler's
    history too). step_kwargs: the step's own (eta, ...). The scheduler: one
    of ours, DDPM, DDIM, Euler, Euler ancestral or DPM-Solver++.

    cuda_graph=True (CUDA; our schedulers, whose steps never read a device
    value on the host): the whole loop, model included, as one CUDA graph
    (torch_ddpm.GraphedLoop), captured on the first call for these shapes and
    settings and replayed after; the latents and the model's tensor keyword
    arguments (encoder_hidden_states, ...) are its inputs. generator: a CUDA
    torch.Generator, or None for the default one. Put the timesteps on the
    latents' device (set_timesteps(n, device=...)) so that the loop has no
    host work; the same latents as the eager loop from the same generator
    state."""
    step_kwargs = dict(step_kwargs or {})

    def run(latents, *tensors):
        kwargs = {**model_kwargs, **dict(zip(tensor_names, tensors))}
        restart = getattr(scheduler, "_restart_chain", None)
        if restart is not None:  # (a stateful scheduler: each run, a capture's too, from the top)
            restart()
        for t in scheduler.timesteps:
            out = model(scheduler.scale_model_input(latents, t), t, **kwargs)
            out = getattr(out, "sample", out)
            latents = scheduler.step(out, t, latents, generator=generator,
                                     **step_kwargs).prev_sample
        return latents

    tensor_names = sorted(k for k, v in model_kwargs.items() if torch.is_tensor(v))
    tensors = [model_kwargs[k] for k in tensor_names]
    if not cuda_graph:
        return run(latents, *tensors)
    from .graphs import GraphedLoop, check_graphable, graphed_for, memory_key

    check_graphable("denoising_loop", latents.device)
    if not hasattr(scheduler, "_graph_chain"):
        raise ValueError("denoising_loop(cuda_graph=True): the scheduler must be one of ours "
                         "(torch_ddpm.diffusers' or fused_schedulers'); diffusers' own steps read "
                         f"the timestep on the host, got {type(scheduler).__name__}")
    chain, reads = scheduler._graph_chain(latents.device)
    fixed = tuple(sorted((k, v) for k, v in model_kwargs.items() if k not in tensor_names))
    # the chain's timesteps and config by value (a pipeline sets the same
    # timesteps again for each image: one capture serves them all), the model
    # by where its weights lie
    key = ("denoising_loop", id(model), memory_key(model), id(generator),
           type(scheduler), chain, repr(dict(scheduler.config)),
           tuple(sorted(step_kwargs.items())), tuple(tensor_names), fixed)
    def make():
        # the graph reads the chain's timesteps and tables where they lie when
        # it is captured: they are kept with it
        keep = (model, *reads)
        return GraphedLoop(run, () if generator is None else (generator,), latents.device, keep)

    return graphed_for(scheduler, key, make)(latents, *tensors)

