#!/usr/bin/env bash
# Runs a command with the package pointed at a library scripts/build.sh made:
#   scripts/with_build.sh TAG COMMAND...   (uses build/TAG/lib/torch_ddpm/_C*.so)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=$1
shift
lib=$(ls "$root/build/$tag"/lib/torch_ddpm/_C*.so 2>/dev/null | head -1)
[ -n "$lib" ] || { echo "no library in build/$tag: run scripts/build.sh first" >&2; exit 1; }
export TORCH_DDPM_LIBRARY="$lib"
export PYTHONPATH="$root/python_bindings${PYTHONPATH:+:$PYTHONPATH}"
exec "$@"
