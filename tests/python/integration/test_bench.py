"""The benchmarks compare like with like: every variant that `bench` and
`bench-noise` time computes the same result (and the same gradients) on the
same inputs, and both commands run end to end and write what they report."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import DEVICES, TORCH_2
from helpers import load_script
from torch_ddpm.tools import bench, bench_noise

SMALL = (3, 4, 6, 5)


def _as_tuple(outs):
    return outs if isinstance(outs, tuple) else (outs,)


def _cases(device, backward):
    for op in ("q_sample", "posterior_mean_variance"):
        yield bench.Case(op, SMALL, torch.float32, device, backward=backward)
    for mean_type, var_type in bench.P_MODES:
        yield bench.Case("p_sample", SMALL, torch.float32, device, mean_type, var_type, backward)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_bench_variants_compute_the_same_thing(device, backward):
    checked = 0
    for case in _cases(device, backward):
        variants = case.variants(compiled=False)
        results = {}
        for v in variants:
            inputs = case.make_inputs(torch.Generator().manual_seed(7))
            outs, wrt = getattr(case, v)(inputs)
            outs = _as_tuple(outs)
            if backward:
                wrt = tuple(w for w in wrt if w.requires_grad)
                grads = torch.autograd.grad(outs, wrt, (inputs["g1"], inputs["g2"])[: len(outs)])
                outs = outs + grads
            results[v] = [o.detach().double() for o in outs]
        for v in variants[1:]:
            # fused_sample writes the sample alone
            expected = results["fused"][:1] if v == "fused_sample" else results["fused"]
            assert len(results[v]) == len(expected), (case.name, v)
            for got, want in zip(results[v], expected):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5,
                                           msg=lambda m: f"{case.name} {v}: {m}")
        assert case.min_bytes() > 0
        checked += 1
    assert checked == 2 + len(bench.P_MODES)


def test_bench_noise_variants_compute_the_same_step():
    """randn+fused, randn+fused_out and randn+improved take the same draws
    from the global generator; philox draws philox_normal(x, 1, offset)."""
    for op in ("p_sample", "q_sample"):
        case = bench.Case(op, SMALL, torch.float32, "cpu")
        inputs = case.make_inputs(torch.Generator().manual_seed(3))
        results = {}
        for v in bench_noise.variants_for(op):
            torch.manual_seed(11)
            outs = bench_noise._step(case, v, inputs, 8)
            if isinstance(outs, dict):  # improved-diffusion's p_sample
                outs = outs["sample"]
            results[v] = [o.clone() for o in _as_tuple(outs)]
        for v in ("randn+fused_out", "randn+fused_sample", "randn+improved"):
            if v in results:
                torch.testing.assert_close(results[v][0], results["randn+fused"][0],
                                           rtol=1e-5, atol=1e-5)
        noise = torch.ops.ddpm.philox_normal(inputs["x"], 1, 8)
        tab = case.tab
        if op == "q_sample":
            want = torch.ops.ddpm.q_sample(inputs["x"], inputs["t"], noise,
                                           tab["sqrt_alphas_cumprod"],
                                           tab["sqrt_one_minus_alphas_cumprod"])
        else:
            want = case.ours._fused_step(inputs["other"], inputs["x"], inputs["t"], noise, True)[0]
        torch.testing.assert_close(results["philox"][0], want, rtol=1e-6, atol=1e-6)
        for v in ("philox_out", "philox_sample"):
            if op == "p_sample":
                assert torch.equal(results[v][0], results["philox"][0]), v
            else:
                assert v not in results, v


def test_paired_ratio_is_the_median_of_per_repetition_ratios():
    # repetitions 2 to 4 ran in a minute ten times slower for both variants,
    # and in 4 the denominator alone was fast: the ratio of the medians
    # (40 / 2 = 20) mixes minutes, the paired median (4) does not
    numerators = [4.0, 4.0, 40.0, 40.0, 40.0]
    denominators = [1.0, 1.0, 10.0, 10.0, 2.0]
    q1, median, q3 = bench_noise.paired_ratio(numerators, denominators)
    assert (q1, median, q3) == (4.0, 4.0, 4.0)
    q1, median, q3 = bench_noise.paired_ratio([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert q1 <= median <= q3 and median == 2.5 and (q1, q3) == (2.0, 4.0)


def _assert_records_the_code_that_ran(env):
    # the loader picks the loops and the generator per CPU: a results file says which
    assert env["cpu_loops"] == torch.ops.ddpm._cpu_loop_clone()
    assert env["cpu_noise"] == torch.ops.ddpm._cpu_noise_generator()
    assert env["command"] and env["rotation_bytes"] >= 0


def test_bench_noise_command_writes_every_ratio(tmp_path):
    out = tmp_path / "noise.json"
    rows = bench_noise.main(["--shapes", "latent4x4x64x64", "--dtypes", "float32",
                             "--reps", "4", "--warmup", "1", "--warm", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    _assert_records_the_code_that_ran(saved["env"])
    assert [r["op"] for r in rows] == ["p_sample", "q_sample"]
    p_row = rows[0]
    for key in ("randn_fused_over_philox", "randn_fused_over_philox_paired",
                "randn_fused_out_over_philox_out", "randn_fused_out_over_philox_out_paired",
                "randn_fused_sample_over_philox_sample_paired"):
        assert key in p_row, key
    q1, median, q3 = p_row["randn_fused_over_philox_paired"]
    assert 0 < q1 <= median <= q3
    assert "randn_fused_out_over_philox_out_paired" not in rows[1]  # q_sample has no out= row
    assert "randn_fused_sample_over_philox_sample_paired" not in rows[1]


def test_noise_context_script_times_every_case():
    # benchmarks/noise_context.py runs end to end
    from helpers import ROOT
    script = os.path.join(ROOT, "benchmarks", "noise_context.py")
    done = subprocess.run([sys.executable, script, "--reps", "1", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("after ")]
    assert len(lines) == 7
    for line in lines:
        assert all(float(v) > 0 for v in line.split()[-4:]), line


def test_bench_command_writes_every_ratio(tmp_path):
    out = tmp_path / "bench.json"
    result = bench.main(["--shapes", "latent4x4x64x64", "--dtypes", "float32", "--reps", "2",
                         "--warmup", "1", "--backward", "--no-compile", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    _assert_records_the_code_that_ran(saved["env"])
    names = [r["op"] for r in result["rows"]]
    assert "q_sample fwd+bwd" in names and "p_sample[epsilon,fixed_small]" in names
    for r in result["rows"]:
        assert r["fused_s"] > 0 and r["copy_GBps"] > 0
        assert r["speedup_vs_improved"] > 0 and r["speedup_vs_lean"] > 0
        assert ("fused_out_s" in r) == (not r["op"].endswith("fwd+bwd"))
        sample_row = r["op"].startswith("p_sample") and not r["op"].endswith("fwd+bwd")
        assert ("fused_sample_s" in r) == sample_row
        assert ("sample_speedup_vs_lean" in r) == sample_row
    assert TORCH_2 or "compiled" not in result["variants"]


def test_rotation_spans_twice_the_last_level_cache():
    llc = bench.last_level_cache_bytes("cpu")
    per_set = 5 * 16 * 3 * 64 * 64 * 4  # p_sample at 16x3x64x64, float32
    sets = bench.input_sets(per_set, "cpu")
    assert sets * per_set >= min(2 * llc, bench.MAX_INPUT_SETS * per_set)
    assert sets * per_set >= bench.MIN_ROTATION_BYTES
    assert bench.input_sets(1 << 40, "cpu") == 1  # one set larger than any cache
    import glob
    if glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        assert llc >= 1 << 20  # sysfs read: at least a megabyte


def test_scheduler_bench_compares_like_with_like(tmp_path):
    pytest.importorskip("diffusers", reason="needs diffusers from PyPI (pip install diffusers)")
    module = load_script("benchmarks/bench_scheduler.py")
    out = tmp_path / "scheduler.json"
    configs = list(module.CONFIGS)
    rows = module.main(["--shapes", "1x4x64x64", "--dtypes", "float32", "--reps", "2",
                        "--warmup", "1", "--schedulers", *configs, "--output", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert [row["scheduler"] for row in rows] == configs
    for row in rows:
        assert row["diffusers_s"] > 0 and row["torch_ddpm_s"] > 0
        # the same step: one fused operator against diffusers' chain
        assert row["max_abs_difference"] < 1e-3
        assert 0 < row["torch_ddpm_ops"] < row["diffusers_ops"]


def test_training_bench_compares_like_with_like(tmp_path):
    module = load_script("benchmarks/bench_training.py")
    out = tmp_path / "training.json"
    rows = module.main(["--shapes", "16x3x64x64", "--dtypes", "float32", "--reps", "2",
                        "--warmup", "0", "--no-compile", "--output", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert [r["config"] for r in rows] == ["epsilon", "v-min_snr"]
    for row in rows:
        assert row["eager_s"] > 0 and row["fused_s"] > 0
        # the same x_t, loss and gradient as the chain, to float32 rounding
        assert row["fused_max_rel_diff"] < 1e-5
        assert 0 < row["fused_ops"] < row["eager_ops"]


def test_loop_bench_raw_loops_compute_what_the_dropin_loops_compute():
    # bench-loops' minimal raw-operator loop is the drop-in's loop written
    # by hand: from one seed, the same samples bit for bit (so the ratio of
    # their times is the host's overhead of ours and nothing else)
    from torch_ddpm.tools import bench_loops

    cases = bench_loops._dropin_cases([2, 3, 4, 4], torch.device("cpu"))
    assert len(cases) == 8
    for name, steps, variants in cases:
        results = []
        for variant in ("raw", "ours"):
            torch.manual_seed(5)
            results.append(variants[variant]())
        assert torch.equal(results[0], results[1]), name


def test_loop_bench_command_writes_every_row(tmp_path):
    from torch_ddpm.__main__ import main

    out = tmp_path / "loops.json"
    assert main(["bench-loops", "--reps", "1", "--shape", "1", "3", "4", "4",
                 "--output", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [row["loop"] for row in rows]
    assert "p_sample_loop fixed_small" in names and "Sampler (scripted) fixed_small" in names
    for row in rows:
        assert row["ours_us"] > 0 and row["ours_over_raw"] > 0


def test_sampling_bench_runs_every_loop(tmp_path):
    pytest.importorskip("diffusers", reason="needs diffusers from PyPI (its UNet2DModel)")
    module = load_script("benchmarks/bench_sampling.py")
    out = tmp_path / "sampling.json"
    rows = module.run(["--tiny", "--device", "cpu", "--batches", "2", "--steps", "3",
                       "--reps", "1", "--output", str(out)])
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(rows))
    assert rows[0]["unpatched_s"] > 0 and rows[0]["patched_s"] > 0
