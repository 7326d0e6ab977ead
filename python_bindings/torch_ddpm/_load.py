"""Finds and loads the compiled operator library (it registers torch.ops.ddpm)."""
import glob
import importlib.machinery
import os

import torch

_loaded = False


def library_path():
    """Path of the compiled extension torch_ddpm._C next to this file."""
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
