#!/usr/bin/env bash
# A user's install, checked as a user does it: `pip wheel .` (pip's isolated
# build, with the in-tree backend that finds the installed torch), the wheel
# installed into a fresh virtual environment that has torch (this python's,
# through --system-site-packages), torch_ddpm imported from outside the
# source tree, one operator run, and the library checked for debug info.
# TORCH_DDPM_BUILD_TEMP=<an earlier build's temp dir> lets the wheel reuse its
# object files (scripts/test.sh passes the torch2 build's).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=build/wheel
rm -rf "$out"
mkdir -p "$out"
echo "== pip wheel . ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
"$py" -m pip wheel --no-deps -w "$out/dist" . >"$out/pip-wheel.log" 2>&1 \
  || { tail -40 "$out/pip-wheel.log"; echo "pip wheel failed"; exit 1; }
wheel=$(ls "$out"/dist/torch_ddpm-*.whl)
"$py" -m venv --system-site-packages "$out/venv"
"$out/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"
venv_python=$PWD/$out/venv/bin/python
cd /tmp
"$venv_python" - "$PWD" <<'PY'
import os, subprocess, sys
import torch, torch_ddpm
from torch_ddpm.schedules import schedule_tables, cosine_betas
lib = torch_ddpm.library_path()
assert os.path.realpath(lib).startswith(os.path.realpath(sys.prefix)), (lib, sys.prefix)
assert "python_bindings" not in torch_ddpm.__file__, torch_ddpm.__file__
tab = schedule_tables(cosine_betas(10))
x, noise, t = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0, 5, 9])
got = torch.ops.ddpm.q_sample(x, t, noise, tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
want = tab["sqrt_alphas_cumprod"][t, None] * x + tab["sqrt_one_minus_alphas_cumprod"][t, None] * noise
torch.testing.assert_close(got, want.float())
sections = subprocess.run(["readelf", "-S", "-W", lib], capture_output=True, text=True, check=True).stdout
debug = [line.split()[1] for line in sections.splitlines() if ".debug_" in line]
assert not debug, f"the library carries debug info: {debug}"
print(f"wheel installed: torch_ddpm {torch_ddpm.__version__} from {os.path.dirname(torch_ddpm.__file__)}; "
      f"q_sample ran; {os.path.basename(lib)} {os.path.getsize(lib) / 2**20:.1f} MiB, no debug sections")
PY
