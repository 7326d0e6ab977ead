"""patch() for lucidrains' denoising-diffusion-pytorch GaussianDiffusion.

Duck-typed like the improved-diffusion patch: it reads the instance's own
float32 buffers (betas, alphas_cumprod, posterior coefficients), its
objective and its settings, and imports nothing from that package. Swapped:
q_sample (immiscible noise assignment included: it acts on the noise before
it), p_losses (so forward trains on the fused operators: q_sample, then the
model, then diffusion_mse with the instance's loss_weight table: the
target, the squared error, the mean and the weight in one pass; offset
noise drawn as the original draws it and added inside both operators, one
value per sample and channel, so a noise tensor passed to p_losses is left
as it was, where the original adds the offset to it in place; with immiscible
noise it is added first, as there; self-conditioning as the original),
p_sample (so interpolate samples on it), p_sample_loop (the same loop, its
step's tables and operator taken once, not per step: so sample runs on it)
and ddim_sample (the respaced DDIM loop with ddim_sampling_eta); sample as the
original, plus cuda_graph=True: the whole loop, model included, as one CUDA
graph, captured on the first call for a batch size and replayed after, the
same samples as the eager loop from the same generator state. The random
numbers are drawn where and as the original draws them (randn_like, none at
t = 0 and none at DDIM's last step), so a seed gives the same losses and
samples, to float32 rounding: the operators form their coefficients in
float64 from the instance's float32 tables, where the original multiplies in
float32. Everything else (the model, self-conditioning, loss weights,
auto-normalization, the 1-D variant's methods) is the instance's own.
"""
import random
import weakref

import torch

from ._bound import bind
from .graphs import GraphedLoop, check_graphable, graphed_for, memory_key
from .losses import diffusion_mse
from .operators import in_common_dtype, step_overload
from .tables import cached_on, step_tables

# lucidrains' objective -> the operators' mean type
_MEAN_TYPES = {"pred_noise": "epsilon", "pred_x0": "start_x", "pred_v": "v"}
_BUFFERS = ("betas", "alphas_cumprod", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
            "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
            "posterior_mean_coef2", "posterior_log_variance_clipped")
# read with the tables when the instance has it (p_losses' per-timestep weight)
_LOSS_WEIGHT = "loss_weight"
PATCHED_METHODS = ("q_sample", "p_losses", "p_sample", "p_sample_loop", "ddim_sample", "sample")


def looks_like_lucidrains(diffusion) -> bool:
    """A denoising-diffusion-pytorch GaussianDiffusion (or a subclass that keeps
    its buffers and objective): what patch() then swaps is said above."""
    return (all(hasattr(diffusion, name) for name in _BUFFERS + ("objective", "model",
                                                                 "p_losses", "model_predictions"))
            and not hasattr(diffusion, "model_mean_type"))


def patch_lucidrains(diffusion):
    if diffusion.objective not in _MEAN_TYPES:
        raise TypeError(f"torch_ddpm.patch: objective {diffusion.objective!r} is not one of "
                        f"{sorted(_MEAN_TYPES)} (denoising-diffusion-pytorch's GaussianDiffusion)")
    diffusion._ddpm_cache = {}
    for name in PATCHED_METHODS:
        bind(diffusion, name, globals()[f"_{name}"])
    diffusion._ddpm_patched = True
    return diffusion


def _table_names(self):
    return _BUFFERS + ((_LOSS_WEIGHT,) if hasattr(self, _LOSS_WEIGHT) else ())


def _buffers_key(self):
    """Changes when a table buffer is replaced, moved or written in place
    (module.to(), load_state_dict): the cached copies are made again."""
    return tuple((getattr(self, n).data_ptr(), getattr(self, n)._version)
                 for n in _table_names(self))


def _tables(self, device):
    """float64 copies of the instance's tables on device."""
    return cached_on(self, device,
                     lambda: {n: getattr(self, n).detach().double() for n in _table_names(self)},
                     key=_buffers_key(self))


def _q_sample(self, x_start, t, noise=None):
    if noise is None:
        noise = torch.randn_like(x_start)
    if getattr(self, "immiscible", False):
        noise = noise[self.noise_assignment(x_start, noise)]
    tabs = _tables(self, x_start.device)
    # the original runs in float32 under autocast (autocast disabled there)
    with torch.autocast("cuda", enabled=False):
        return torch.ops.ddpm.q_sample(x_start, t, noise, tabs["sqrt_alphas_cumprod"],
                                       tabs["sqrt_one_minus_alphas_cumprod"])


def _p_losses(self, x_start, t, noise=None, offset_noise_strength=None, loss_reduction="mean"):
    if noise is None:
        noise = torch.randn_like(x_start)
    if offset_noise_strength is None:
        offset_noise_strength = self.offset_noise_strength
    noise_offset = None
    if offset_noise_strength > 0.0:
        # drawn as the original draws it; then added inside q_sample and the
        # loss (one value per sample and channel), not to a full-size noise
        noise_offset = offset_noise_strength * torch.randn(x_start.shape[:2], device=self.device)
        if getattr(self, "immiscible", False):
            # the assignment reads the shifted noise: shift it first, as the
            # original does (in place: a noise passed in is changed too)
            noise += noise_offset.view(*x_start.shape[:2], 1, 1)
            noise_offset = None
    if noise_offset is None:
        x = self.q_sample(x_start=x_start, t=t, noise=noise)
    else:
        tabs = _tables(self, x_start.device)
        with torch.autocast("cuda", enabled=False):
            x = torch.ops.ddpm.q_sample(x_start, t, noise, tabs["sqrt_alphas_cumprod"],
                                        tabs["sqrt_one_minus_alphas_cumprod"],
                                        noise_offset.to(x_start.dtype))
    x_self_cond = None
    if self.self_condition and random.random() < 0.5:
        with torch.no_grad():
            x_self_cond = self.model_predictions(x, t).pred_x_start
            x_self_cond.detach_()
    model_out = self.model(x, t, x_self_cond)
    # (under autocast a 16-bit output is compared with the float32 target in
    # float32, the front end's rule, as autocast's mse_loss does)
    tabs = _tables(self, x_start.device)
    loss = diffusion_mse(model_out, x_start, noise, t, tabs["sqrt_alphas_cumprod"],
                         tabs["sqrt_one_minus_alphas_cumprod"], tabs.get(_LOSS_WEIGHT),
                         _MEAN_TYPES[self.objective], noise_offset)
    if loss_reduction == "none":
        return loss
    return loss.mean()


def _p_step(self, device):
    """(x, t, x_self_cond) -> (x_{t-1}, pred_xstart), the original p_sample,
    with the tables on `device` and the operator taken now (once per loop)."""
    tables = step_tables("p_sample", _tables(self, device))
    mean_type = _MEAN_TYPES[self.objective]
    op = step_overload("p_sample")
    times_device = self.device

    def step(x, t, x_self_cond=None):
        batched_times = torch.full((x.shape[0],), t, device=times_device, dtype=torch.long)
        model_output = self.model(x, batched_times, x_self_cond)
        # the original draws no noise at t = 0 (the operator adds none there either)
        noise = torch.randn_like(x) if t > 0 else torch.zeros_like(x)
        if model_output.dtype != x.dtype:
            # (under autocast a 16-bit output with the float32 image: promoted, as
            # the original's formulas do)
            model_output, x, noise = in_common_dtype(model_output, x, noise)
        return op(model_output, x, batched_times, noise, *tables, mean_type, "fixed_small", True)

    return step


@torch.inference_mode()
def _p_sample(self, x, t: int, x_self_cond=None):
    return _p_step(self, x.device)(x, t, x_self_cond)


@torch.inference_mode()
def _p_sample_loop(self, shape, return_all_timesteps=False):
    # the original's loop, its random numbers and progress bar, with one step
    device = self.device
    img = torch.randn(shape, device=device)
    imgs = [img]
    x_start = None
    step = _p_step(self, device)
    from tqdm.auto import tqdm

    for t in tqdm(reversed(range(0, self.num_timesteps)), desc="sampling loop time step",
                  total=self.num_timesteps):
        self_cond = x_start if self.self_condition else None
        img, x_start = step(img, t, self_cond)
        imgs.append(img)
    ret = img if not return_all_timesteps else torch.stack(imgs, dim=1)
    return self.unnormalize(ret)


@torch.inference_mode()
def _sample(self, batch_size=16, return_all_timesteps=False, cuda_graph=False):
    (h, w), channels = self.image_size, self.channels
    shape = (batch_size, channels, h, w)
    if not cuda_graph:
        sample_fn = self.p_sample_loop if not self.is_ddim_sampling else self.ddim_sample
        return sample_fn(shape, return_all_timesteps=return_all_timesteps)
    check_graphable("sample", self.device)
    # (moved or cast parameters, or replaced table buffers: captured anew)
    key = ("sample", shape, bool(return_all_timesteps), bool(self.is_ddim_sampling),
           memory_key(self), _buffers_key(self))
    diffusion = weakref.ref(self)  # (the loop is kept by the module, weakly)

    def make():
        def loop():
            owner = diffusion()
            sample_fn = owner.p_sample_loop if not owner.is_ddim_sampling else owner.ddim_sample
            return sample_fn(shape, return_all_timesteps=return_all_timesteps)
        return GraphedLoop(loop, device=self.device, keep=(_tables(self, self.device),))

    # (the progress bar advances once, during the capture)
    return graphed_for(self, key, make)()


def _ddim_pairs(total_timesteps, sampling_timesteps):
    # the original's (time, time_next) pairs, time_next = -1 at the end
    times = torch.linspace(-1, total_timesteps - 1, steps=sampling_timesteps + 1)
    times = list(reversed(times.int().tolist()))
    return list(zip(times[:-1], times[1:]))


def _ddim_tables(self, tabs, pairs):
    """alphas_cumprod_prev of the respaced chain: at each visited time, the
    alphas_cumprod of the next visited one (1 after the last: the step then
    returns pred_xstart, as the original does). Kept for these pairs and
    these buffers."""
    def make():
        ab = tabs["alphas_cumprod"]
        steps = [(time, time_next) for time, time_next in pairs if time_next >= 0]
        prev = torch.ones_like(ab)
        if steps:
            times, nexts = (torch.tensor(v, device=ab.device) for v in zip(*steps))
            prev[times] = ab[nexts]
        return {"alphas_cumprod_prev": prev}

    device = tabs["alphas_cumprod"].device
    return cached_on(self, device, make, key=(tuple(pairs), _buffers_key(self)),
                     slot="ddim")["alphas_cumprod_prev"]


@torch.inference_mode()
def _ddim_sample(self, shape, return_all_timesteps=False):
    batch, device = shape[0], self.device
    pairs = _ddim_pairs(self.num_timesteps, self.sampling_timesteps)
    tabs = _tables(self, device)
    prev = _ddim_tables(self, tabs, pairs)
    mean_type = _MEAN_TYPES[self.objective]
    tables = step_tables("ddim_sample", tabs, alphas_cumprod_prev=prev)
    eta = float(self.ddim_sampling_eta)
    op = step_overload("ddim_sample")
    img = torch.randn(shape, device=device)
    imgs = [img]
    x_start = None
    # the original's progress bar (tqdm: a dependency of that package)
    from tqdm.auto import tqdm

    for time, time_next in tqdm(pairs, desc="sampling loop time step"):
        time_cond = torch.full((batch,), time, device=device, dtype=torch.long)
        self_cond = x_start if self.self_condition else None
        model_output = self.model(img, time_cond, self_cond)
        # the original draws no noise before returning pred_xstart at the end
        noise = torch.randn_like(img) if time_next >= 0 else torch.zeros_like(img)
        if model_output.dtype != img.dtype:  # (as _p_step)
            model_output, img, noise = in_common_dtype(model_output, img, noise)
        img, x_start = op(model_output, img, time_cond, noise, *tables, eta, mean_type,
                          "fixed_small", True)
        imgs.append(img)
    ret = img if not return_all_timesteps else torch.stack(imgs, dim=1)
    return self.unnormalize(ret)
