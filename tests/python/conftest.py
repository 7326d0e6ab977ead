import os
import sys

import pytest
import torch

# Import the package from the sources unless PYTHONPATH already provides it
# (scripts/test.sh points TORCH_DDPM_LIBRARY at a per-torch build).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "python_bindings") not in sys.path:
    sys.path.append(os.path.join(ROOT, "python_bindings"))

import torch_ddpm  # noqa: E402,F401  (registers torch.ops.ddpm)

TORCH_2 = int(torch.__version__.split(".")[0]) >= 2


def cuda_ops_available():
    """True when a GPU is present and the library was built with WITH_CUDA=1."""
    if not torch.cuda.is_available():
        return False
    try:
        x = torch.zeros(1, 1, device="cuda")
        t = torch.zeros(1, dtype=torch.long, device="cuda")
        tab = torch.ones(2, dtype=torch.float64, device="cuda")
        torch.ops.ddpm.q_sample(x, t, x, tab, tab)
        return True
    except (RuntimeError, NotImplementedError):
        return False


CUDA = cuda_ops_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])

requires_torch2 = pytest.mark.skipif(
    not TORCH_2, reason=f"needs torch 2.x (this is torch {torch.__version__})"
)
requires_cuda = pytest.mark.skipif(
    not CUDA, reason="needs a GPU and a WITH_CUDA=1 build"
)


def pytest_report_header(config):
    return (
        f"torch {torch.__version__}; ddpm library {torch_ddpm.library_path()}; "
        f"devices {DEVICES}"
    )
