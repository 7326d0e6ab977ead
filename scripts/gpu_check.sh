#!/usr/bin/env bash
# On a machine with a GPU, torch 2.x and nvcc: builds the CUDA extension
# (WITH_CUDA=1; TORCH_CUDA_ARCH_LIST unset builds for the visible GPU, the
# default a user gets), runs the whole pytest suite
# with the CUDA cases enabled (every op, mode and dtype against the float64
# reference and against CPU; gradcheck on CUDA; opcheck; torch.compile of a
# p_sample step; CUDA-graph capture and replay) and prints a short table last.
# Writes the full log to ${OUT:-build}/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build}
mkdir -p "$out" build
log="$out/gpu_check.log"
{
  date -u +"date: %Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
  python3 -c "import torch; print('torch:', torch.__version__, 'cuda', torch.version.cuda)"
  nvcc --version | tail -1
} | tee "$log"
start=$(date +%s)
WITH_CUDA=1 MAX_JOBS=$(nproc) python3 setup.py -q build_ext --build-lib build/gpu/lib --build-temp build/gpu/temp \
  >>"$log" 2>&1 || { tail -40 "$log"; echo "BUILD FAILED"; exit 1; }
echo "build: $(( $(date +%s) - start )) s" | tee -a "$log"
lib=$(ls "$PWD"/build/gpu/lib/torch_ddpm/_C*.so)
TORCH_DDPM_LIBRARY=$lib PYTHONPATH=$PWD/python_bindings python3 -m pytest tests/python -q -rs \
  -p no:cacheprovider --junitxml="$out/gpu_junit.xml" >>"$log" 2>&1
status=$?
python3 - "$out/gpu_junit.xml" <<'PY' | tee -a "$log"
import collections, sys, xml.etree.ElementTree as ET
rows = collections.OrderedDict()
for case in ET.parse(sys.argv[1]).iter("testcase"):
    name = case.get("classname").split(".")[-1] + "::" + case.get("name").split("[")[0]
    cuda = "cuda" in case.get("name") or "test_cuda" in case.get("classname")
    key = (name, "cuda" if cuda else "cpu")
    r = rows.setdefault(key, collections.Counter())
    kind = "skipped" if case.find("skipped") is not None else \
        "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
    r[kind] += 1
print(f"{'test':58} {'dev':4} {'pass':>5} {'fail':>5} {'skip':>5}")
tot = collections.Counter()
for (name, dev), r in rows.items():
    tot.update(r)
    print(f"{name[:58]:58} {dev:4} {r['passed']:5} {r['failed']:5} {r['skipped']:5}")
print(f"{'TOTAL':58} {'':4} {tot['passed']:5} {tot['failed']:5} {tot['skipped']:5}")
PY
tail -3 "$log" | head -1
exit $status
