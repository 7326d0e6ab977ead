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


# On a GPU machine (scripts/gpu_check.sh sets it) a CUDA case must run: with
# TORCH_DDPM_REQUIRE_CUDA=1, no usable GPU or a library built without CUDA
# kernels fails the CUDA cases instead of skipping them.
REQUIRE_CUDA = os.environ.get("TORCH_DDPM_REQUIRE_CUDA") == "1"


def _library_has_cuda_kernels():
    return "\nCUDA:" in torch._C._dispatch_dump("ddpm::q_sample")


def probe_case():
    """The probe's inputs: the vector path, a tail and several samples. Built
    on the CPU (test_cuda.py runs them there too, since the probe itself only
    runs where a GPU is visible)."""
    from torch_ddpm.schedules import linear_betas, schedule_tables

    tab = schedule_tables(linear_betas(100))
    x, noise = torch.randn(3, 1027), torch.randn(3, 1027)
    t = torch.tensor([0, 5, 99])
    return x, t, noise, (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])


def cuda_probe():
    """(state, message): "ok"; "absent" (no GPU, or a library without CUDA
    kernels: the CUDA cases skip, or fail under TORCH_DDPM_REQUIRE_CUDA=1);
    "broken" (CUDA kernels that fail to launch or give wrong values: the CUDA
    cases run, and fail). The probe runs the vector path, a tail and several
    samples, waits for the GPU and compares with the CPU."""
    if not torch.cuda.is_available():
        return "absent", "no GPU is visible"
    if not _library_has_cuda_kernels():
        return "absent", "the library was built without CUDA kernels (WITH_CUDA=1)"
    x, t, noise, args = probe_case()
    want = torch.ops.ddpm.q_sample(x, t, noise, *args)
    try:
        got = torch.ops.ddpm.q_sample(x.cuda(), t.cuda(), noise.cuda(),
                                      *(a.cuda() for a in args)).cpu()
        torch.cuda.synchronize()
    except Exception as error:  # noqa: BLE001 (a launch failure of any kind)
        return "broken", f"the CUDA kernels fail to run: {type(error).__name__}: {error}"
    if not torch.equal(got, want):
        return "broken", (f"the CUDA q_sample differs from the CPU's by "
                          f"{(got - want).abs().max().item():.3g}")
    return "ok", "the CUDA kernels run"


CUDA_STATE, CUDA_MESSAGE = cuda_probe()
# broken kernels are run (and fail) rather than skipped
CUDA = CUDA_STATE in ("ok", "broken")
DEVICES = ["cpu"] + (["cuda"] if CUDA or REQUIRE_CUDA else [])

requires_torch2 = pytest.mark.skipif(
    not TORCH_2, reason=f"needs torch 2.x (this is torch {torch.__version__})"
)
requires_cuda = pytest.mark.skipif(
    not CUDA and not REQUIRE_CUDA, reason=f"needs a GPU and a WITH_CUDA=1 build: {CUDA_MESSAGE}"
)


def pytest_runtest_setup(item):
    """Under TORCH_DDPM_REQUIRE_CUDA=1 a CUDA case without a usable GPU fails here,
    with the reason, instead of skipping (or failing obscurely inside)."""
    if not REQUIRE_CUDA or CUDA:
        return
    needs_gpu = any("needs a GPU" in str(m.kwargs.get("reason", ""))
                    for m in item.iter_markers("skipif"))
    params = getattr(item, "callspec", None)
    on_cuda = params is not None and "cuda" in [str(v) for v in params.params.values()]
    if needs_gpu or on_cuda:
        pytest.fail(f"TORCH_DDPM_REQUIRE_CUDA=1, but {CUDA_MESSAGE}", pytrace=False)


def pytest_report_header(config):
    return (
        f"torch {torch.__version__}; ddpm library {torch_ddpm.library_path()}; "
        f"devices {DEVICES}; CUDA: {CUDA_MESSAGE}"
        + ("; TORCH_DDPM_REQUIRE_CUDA=1" if REQUIRE_CUDA else "")
    )
