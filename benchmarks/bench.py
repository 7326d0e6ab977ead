"""Runs the torch-ddpm benchmark: the same as `python3 -m torch_ddpm bench`.

    python3 benchmarks/bench.py --threads 1 2 --backward --output results.json
    python3 benchmarks/bench.py --device cuda --backward      # on a GPU machine
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python_bindings"))

from torch_ddpm.tools.bench import main  # noqa: E402

if __name__ == "__main__":
    main()
