"""Finds and loads the compiled operator library (it registers torch.ops.ddpm)."""
import glob
import importlib.machinery
import os

import torch

_loaded = False


def library_path():
    """Path of the compiled operator library.

    $TORCH_DDPM_LIBRARY if set (a build kept apart from the sources, e.g. one
    per PyTorch version), else the extension torch_ddpm._C next to this file.
    """
    override = os.environ.get("TORCH_DDPM_LIBRARY")
    if override:
        if not os.path.exists(override):
            raise ImportError(f"torch_ddpm: TORCH_DDPM_LIBRARY={override!r} does not exist")
        return override
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_C" + suffix)
        if os.path.exists(path):
            return path
    candidates = glob.glob(os.path.join(here, "_C*.so"))
    if candidates:
        return candidates[0]
    raise ImportError(
        "torch_ddpm: the compiled operator library _C was not found next to "
        f"{here}; build it with `python3 setup.py build_ext --inplace` or "
        "install the package with pip"
    )


def load_library():
    global _loaded
    if not _loaded:
        torch.ops.load_library(library_path())
        _loaded = True
