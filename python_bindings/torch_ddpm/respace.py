"""Timestep respacing (improved-diffusion's respace.py semantics): sample with a
subset of the training steps, e.g. "ddim50" or section counts "10,15,20"."""
import numpy as np
import torch

from .gaussian_diffusion import GaussianDiffusion

__all__ = ["space_timesteps", "SpacedDiffusion"]


def space_timesteps(num_timesteps, section_counts):
    """The set of original steps to keep.

    section_counts: a list of step counts, one per equal section of the
    original process, or a comma-separated string of them, or "ddimN" for the
    fixed-stride spacing of the DDIM paper.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired_count = int(section_counts[len("ddim"):])
            for i in range(1, num_timesteps):
                if len(range(0, num_timesteps, i)) == desired_count:
                    return set(range(0, num_timesteps, i))
            raise ValueError(f"cannot create exactly {desired_count} steps with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count:
            raise ValueError(f"cannot divide section of {size} steps into {section_count}")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        taken_steps = []
        for _ in range(section_count):
            taken_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        all_steps += taken_steps
        start_idx += size
    return set(all_steps)


class SpacedDiffusion(GaussianDiffusion):
    """A diffusion process that skips steps of a base process.

    :param use_timesteps: the original timesteps to keep.
    :param kwargs: the keyword arguments of the base GaussianDiffusion.
    """

    def __init__(self, use_timesteps, **kwargs):
        self.use_timesteps = set(use_timesteps)
        self.timestep_map = []
        self.original_num_steps = len(kwargs["betas"])
        base_diffusion = GaussianDiffusion(**kwargs)
        last_alpha_cumprod = 1.0
        new_betas = []
        for i, alpha_cumprod in enumerate(base_diffusion.alphas_cumprod):
            if i in self.use_timesteps:
                new_betas.append(1 - alpha_cumprod / last_alpha_cumprod)
                last_alpha_cumprod = alpha_cumprod
                self.timestep_map.append(i)
        kwargs["betas"] = np.array(new_betas)
        super().__init__(**kwargs)

    def _wrap_model(self, model):
        if isinstance(model, _WrappedModel):
            return model
        # (the map's device copies are kept here: a wrapper is made per step)
        maps = self.__dict__.setdefault("_timestep_maps", {})
        return _WrappedModel(model, self.timestep_map, self.rescale_timesteps,
                             self.original_num_steps, maps)

    def _scale_timesteps(self, t):
        # Scaling is done by the wrapped model.
        return t


class _WrappedModel:
    """Calls the model with the original timesteps of the kept steps."""

    def __init__(self, model, timestep_map, rescale_timesteps, original_num_steps, maps=None):
        self.model = model
        self.timestep_map = timestep_map
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps
        # the map on each device and dtype it was asked for, made once (maps:
        # the diffusion's, shared by the wrappers it makes, one per step):
        # improved-diffusion copies it from the list at every model call (a
        # blocking host-to-device copy, a host sync per step on a GPU)
        self._maps = {} if maps is None else maps

    def _map_on(self, device, dtype):
        key = (device, dtype)
        if key not in self._maps:
            with torch.inference_mode(False):  # a cache outlives the call
                self._maps[key] = torch.tensor(self.timestep_map, device=device, dtype=dtype)
        return self._maps[key]

    def __call__(self, x, ts, **kwargs):
        return self.model(x, self._rescaled(self._map_on(ts.device, ts.dtype)[ts]), **kwargs)

    def original_timesteps(self, step, ts):
        """What __call__ hands the model for ts = [step] * B, without the
        lookup: a sampling loop knows its step (one fill instead of a gather)."""
        return self._rescaled(torch.full_like(ts, self.timestep_map[step]))

    def _rescaled(self, new_ts):
        if self.rescale_timesteps:
            return new_ts.float() * (1000.0 / self.original_num_steps)
        return new_ts

    def parameters(self):
        return self.model.parameters()
