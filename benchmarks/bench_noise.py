"""A whole step with its noise: python3 -m torch_ddpm bench-noise (see --help)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python_bindings"))

from torch_ddpm.tools import bench_noise  # noqa: E402

if __name__ == "__main__":
    bench_noise.main()
