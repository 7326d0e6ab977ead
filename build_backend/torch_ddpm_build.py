"""setuptools' PEP 517 backend, able to see the installed torch.

`pip install .` builds in an isolated environment whose sys.path leaves out
the environment's own site-packages, and with them the torch that setup.py
compiles against. This backend appends the site-packages directory that holds
that torch to the end of sys.path (the isolated setuptools still comes
first), so the build uses the torch the package will run with. Nothing is
added where torch is importable already (--no-build-isolation).
"""
import os
import site
import sys
import sysconfig


def _installed_site_packages():
    paths = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    paths += site.getsitepackages() if hasattr(site, "getsitepackages") else []
    paths.append(site.getusersitepackages())
    return paths


def _expose_installed_torch():
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    for path in _installed_site_packages():
        if os.path.isdir(os.path.join(path, "torch")) and path not in sys.path:
            sys.path.append(path)
            return


_expose_installed_torch()

from setuptools.build_meta import *  # noqa: E402,F401,F403
from setuptools.build_meta import __all__  # noqa: E402,F401
