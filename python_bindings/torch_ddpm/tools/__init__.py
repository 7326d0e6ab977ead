"""Tooling around the library, not part of it: the benchmarks (bench,
bench_noise), the demo (train on scikit-learn's digits, sample, check) and its
PNG writer. `python3 -m torch_ddpm demo|steps|bench|bench-noise` runs them."""
