"""torch_ddpm: fused PyTorch operators for denoising diffusion models."""
from ._load import load_library

load_library()
