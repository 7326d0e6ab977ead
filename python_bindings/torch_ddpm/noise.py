"""In-kernel noise: Philox-4x32-10 normals keyed by (seed, offset, element).

The operators torch.ops.ddpm.{q_sample,p_sample,ddim_sample}_philox draw their
Gaussian noise inside the kernel instead of reading a tensor made by
torch.randn_like: one pass over memory and no separate random pass, and the
same numbers bit for bit on CPU and CUDA for the same (seed, offset), whatever
the thread count or GPU. philox_normal(x, seed, offset) returns that noise as
a tensor, so any step can be replayed or checked.

offset counts 32-bit draws per Philox subsequence, as PyTorch's CUDA generator
does; each call uses 4, so advance it by 4 per call for fresh noise (PhiloxStream
does that). Explicit noise (randn_like) stays the default everywhere for exact
parity with existing code; these are opt-in.

CUDA graphs: a (seed, offset) given as numbers would be fixed in a captured
graph, so the *_philox operators refuse capture with them. Their .generator
overloads (torch.ops.ddpm.p_sample_philox(model_output, x_t, t, generator,
...)), which a PhiloxStream built from a generator calls (philox=generator in
GaussianDiffusion's samplers), take the key from the generator when the call
runs; in a graph, the kernel reads the generator's seed and offset on the
device at each replay, as PyTorch's own random ops do, so every replay draws
anew. The generator must be one the graph knows (the default CUDA generator,
or one registered with graph.register_generator_state).
"""
import operator
from typing import Optional, Tuple

import torch

__all__ = ["PhiloxStream", "philox_normal", "philox_seed_offset", "as_philox_stream"]

OFFSET_PER_CALL = 4
_UINT64 = 1 << 64


def _integer(name: str, value) -> int:
    """value as a Python int (ints, numpy integers, integer 0-d tensors); bools
    and floats are refused."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None


def _as_int64(seed: int) -> int:
    """A 64-bit seed as the signed int the operator schema carries (same bits).
    Any int in [-2**63, 2**64) is a seed; a larger one is refused, not wrapped
    (two seeds would give the same noise)."""
    seed = _integer("seed", seed)
    if not -(1 << 63) <= seed < _UINT64:
        raise ValueError(f"seed: expected a 64-bit seed, an int in [-2**63, 2**64), got {seed}")
    return seed - _UINT64 if seed >= (1 << 63) else seed


def _checked_offset(offset: int) -> int:
    """offset as the operators take it: an int in [0, 2**63), a multiple of 4."""
    offset = _integer("offset", offset)
    if not 0 <= offset < (1 << 63) or offset % OFFSET_PER_CALL:
        raise ValueError(f"offset: expected a multiple of {OFFSET_PER_CALL} in [0, 2**63) "
                         f"(it counts 32-bit Philox draws; each call uses {OFFSET_PER_CALL}), "
                         f"got {offset}")
    return offset


def philox_seed_offset(generator: Optional[torch.Generator] = None, device=None,
                       increment: int = OFFSET_PER_CALL) -> Tuple[int, int]:
    """(seed, offset) for one operator call, taken from a torch.Generator.

    A CUDA generator is Philox: its seed stays and its offset advances by
    `increment`, exactly as PyTorch's own CUDA random ops advance it, so the
    in-kernel noise interleaves with torch.randn(..., device="cuda") calls
    without reusing numbers. A CPU generator (mt19937) has no counter: one
    64-bit seed is drawn from it (as any CPU random op would consume it) and
    the offset is 0. generator=None uses the default generator of `device`.
    For the same noise on CPU and CUDA, pass the same explicit (seed, offset)
    or a PhiloxStream instead of a generator.
    """
    if generator is None:
        device = torch.device(device if device is not None else "cpu")
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            generator = torch.cuda.default_generators[index]
        else:
            generator = torch.default_generator
    if generator.device.type == "cuda":
        offset = generator.get_offset()
        generator.set_offset(offset + increment)
        return _as_int64(generator.initial_seed()), int(offset)
    seed = torch.randint(-(1 << 63), (1 << 63) - 1, (), generator=generator, dtype=torch.int64)
    return int(seed), 0


class PhiloxStream:
    """A counter over (seed, offset): take() returns the key of the next call
    and advances the offset by 4. Built from an int seed (reproducible on any
    device) or from a torch.Generator (each take() draws from it)."""

    def __init__(self, seed=0, offset: int = 0):
        if isinstance(seed, torch.Generator):
            self.generator, self.seed, self.offset = seed, None, None
        else:
            self.generator, self.seed, self.offset = None, _as_int64(seed), _checked_offset(offset)

    def take(self, device=None) -> Tuple[int, int]:
        if self.generator is not None:
            return philox_seed_offset(self.generator, device)
        key = (self.seed, _checked_offset(self.offset))
        self.offset += OFFSET_PER_CALL
        return key

    def noise_args(self, device=None) -> tuple:
        """What the next *_philox operator call takes for its noise: (seed,
        offset), or (generator,) for a generator's stream: the operator's
        .generator overload then takes the key from it when it runs (the same
        numbers as take() would give), inside a CUDA graph at each replay."""
        if self.generator is not None:
            return (self.generator,)
        return self.take(device)

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        """The noise of the next call, shaped like `like`."""
        return torch.ops.ddpm.philox_normal(like, *self.noise_args(like.device))

    def __repr__(self):
        if self.generator is not None:
            return f"PhiloxStream(generator on {self.generator.device})"
        return f"PhiloxStream(seed={self.seed}, offset={self.offset})"


def as_philox_stream(philox) -> Optional[PhiloxStream]:
    """None, an int seed, a torch.Generator or a PhiloxStream -> a stream or None."""
    if philox is None or isinstance(philox, PhiloxStream):
        return philox
    if isinstance(philox, (int, torch.Generator)) and not isinstance(philox, bool):
        return PhiloxStream(philox)
    raise TypeError(f"philox: expected None, an int seed, a torch.Generator or a "
                    f"PhiloxStream, got {type(philox).__name__}")


def philox_normal(input: torch.Tensor, seed, offset: int = 0) -> torch.Tensor:
    """N(0, 1) noise shaped like input (its dtype and device), element e being
    the Philox normal of (seed, offset, e): what the *_philox operators add.
    seed may be a torch.Generator: the key is then taken from it as
    philox_seed_offset takes it (graph-safe on CUDA; offset unused)."""
    if isinstance(seed, torch.Generator):
        return torch.ops.ddpm.philox_normal(input, seed)
    return torch.ops.ddpm.philox_normal(input, _as_int64(seed), _checked_offset(offset))
