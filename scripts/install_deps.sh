#!/usr/bin/env bash
# Installs what building and testing torch-ddpm needs on Debian 12, and skips
# whatever is already there: the toolchain, GoogleTest and qemu-user, Debian's torch
# 1.13 (python3-torch, libtorch-dev) for /usr/bin/python3, and torch 2.11
# from PyPI (with diffusers and scikit-learn) for the default python3.
set -euo pipefail

PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# qemu-user: test_isa.py runs the AVX2 and SSE2 code on emulated CPUs
# python3-hypothesis, python3-venv: the fuzz test and the wheel check
apt_packages=(cmake ninja-build g++ libgtest-dev python3-torch libtorch-dev
              python3-pytest python3-numpy python3-setuptools python3-dev qemu-user
              python3-hypothesis python3-venv)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt-get install ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! "$PY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null \
   || ! "$PY" -c "import pytest, ninja, numpy, setuptools, diffusers, sklearn, hypothesis, denoising_diffusion_pytorch" 2>/dev/null; then
  echo "== pip install torch==$TORCH_VERSION (PyPI) and the test tools into $("$PY" -c 'import sys; print(sys.executable)')"
  # diffusers: the scheduler tests hold torch_ddpm's DDPMScheduler against it;
  # scikit-learn: the demo trains on the digits it ships; hypothesis: the fuzz test;
  # denoising-diffusion-pytorch: patch() is held against lucidrains' GaussianDiffusion
  # (it would upgrade torch if torch were not pinned in the same command).
  "$PY" -m pip install -q "torch==$TORCH_VERSION" ninja pytest numpy setuptools diffusers \
    scikit-learn hypothesis "denoising-diffusion-pytorch==2.3.4"
  "$PY" -c "import sys, torch; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '$TORCH_VERSION' else f'install_deps: pip changed torch to {v}')"
fi
