"""What the GPU battery (scripts/gpu_check.sh) runs before and after the GPU
does anything, checked here where no GPU is: a bug in these costs minutes of GPU time."""
import textwrap

import torch

from conftest import probe_case
from helpers import load_script


def _gpu_report():
    return load_script("scripts/gpu_report.py")


def test_the_cuda_probe_case_runs_on_the_cpu():
    # the probe only runs where a GPU is visible: inputs the checks refuse (a
    # schedule with betas above 1) would stop the battery there
    x, t, noise, args = probe_case()
    out = torch.ops.ddpm.q_sample(x, t, noise, *args)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_report_counts_a_cut_off_run_from_its_log_and_names_what_did_not_finish(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(textwrap.dedent("""\
        12 workers [4 items]
        [gw0] [ 25%] PASSED tests/python/ops/test_forward.py::test_q_sample[cuda-float32]
        [gw1] [ 50%] FAILED tests/python/integration/test_cuda.py::test_channels_last_inputs[dtype0]
        [gw2] [ 75%] SKIPPED tests/python/ops/test_forward.py::test_q_sample[cpu-float16]
        tests: exit 124 (200 s)
        """))
    collected = tmp_path / "collected.txt"
    collected.write_text(textwrap.dedent("""\
        tests/python/ops/test_forward.py::test_q_sample[cuda-float32]
        tests/python/ops/test_forward.py::test_q_sample[cpu-float16]
        tests/python/integration/test_cuda.py::test_channels_last_inputs[dtype0]
        tests/python/integration/test_cuda.py::test_compile_reduce_overhead

        4 tests collected in 3.00s
        """))
    lines = _gpu_report().tests(str(tmp_path / "absent.xml"), str(log), str(collected))
    text = "\n".join(lines)
    assert "from the log" in text
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[2:] if line[:4] == "test"}
    assert rows[("test_forward", "cuda")] == ["1", "0", "0"]
    assert rows[("test_forward", "cpu")] == ["0", "0", "1"]
    assert rows[("test_cuda", "cuda")] == ["0", "1", "0"]
    assert "FAILED tests/python/integration/test_cuda.py::test_channels_last_inputs[dtype0]" in lines
    assert "finished 3 of 4 collected" in lines
    assert "NOT FINISHED tests/python/integration/test_cuda.py::test_compile_reduce_overhead" in lines


def test_report_reads_junit_ids_like_the_collected_ones(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(textwrap.dedent("""\
        <testsuites><testsuite>
        <testcase classname="tests.python.integration.test_cuda" name="test_compile_reduce_overhead"/>
        <testcase classname="tests.python.ops.test_forward" name="test_q_sample[cpu-float16]">
          <skipped/></testcase>
        </testsuite></testsuites>
        """))
    collected = tmp_path / "collected.txt"
    collected.write_text("tests/python/integration/test_cuda.py::test_compile_reduce_overhead\n"
                         "tests/python/ops/test_forward.py::test_q_sample[cpu-float16]\n")
    lines = _gpu_report().tests(str(junit), None, str(collected))
    assert "finished 2 of 2 collected" in lines


def test_report_prints_the_paired_noise_ratios(tmp_path):
    path = tmp_path / "noise.json"
    path.write_text('{"rows": [{"op": "q_sample", "shape": "16x3x64x64", "dtype": "float32",'
                    ' "randn_fused_over_philox": 1.3,'
                    ' "randn_fused_over_philox_paired": [1.2, 1.31, 1.38]}]}')
    lines = _gpu_report().bench_noise(str(path))
    assert "randn_fused_over_philox 1.31x (1.20-1.38)" in lines[1]


def test_report_prints_the_training_ratios(tmp_path):
    path = tmp_path / "training.json"
    path.write_text('{"rows": [{"shape": "16x3x64x64", "dtype": "float32", "config": "epsilon",'
                    ' "fused_s": 0.0005, "eager_over_fused": 2.5, "compiled_over_fused": 1.5}]}')
    lines = _gpu_report().bench_training(str(path))
    assert "fused 0.500 ms  eager 2.50x  compiled 1.50x" in lines[1]


def test_the_sanitizer_run_calls_every_overload_of_the_registry_with_each_operand():
    # scripts/gpu_sanitize.py is what compute-sanitizer watches: every kernel
    # must be in it. It builds its calls from the registry; here they run on
    # the CPU (one dtype, one shape) and what they covered is held against it.
    import schema_calls

    sanitize = load_script("scripts/gpu_sanitize.py")
    calls, covered = sanitize.run("cpu", dtypes=[torch.float32], shapes=sanitize.SHAPES[:1])
    registry = {op.qualified: op for op in schema_calls.overloads()}
    assert set(covered) == set(registry) and len(registry) >= 33
    modes = {f"{m}/{v}" for m in sanitize.MEAN_TYPES for v in sanitize.VAR_TYPES}
    for name, op in registry.items():
        labels = covered[name]
        if sanitize.is_step(op):
            assert {"clip_bound", "clip_bound+rescale", "no clip"} <= labels, name
            if "." not in name and "philox" not in name:  # the plain overload and its backward
                # (a sigma-space step has no previous_x)
                # (a sigma-space step has no previous_x and reads no variance)
                want = ({m for m in modes if m.split("/")[1] in ("fixed_small", "learned")
                         and not m.startswith("previous_x")} if op.takes("sigmas") else modes)
                assert want <= labels, name
            if op.takes("use_clipped_model_output"):
                assert "model_noise" in labels, name
            if op.takes("solver_order"):  # each count of earlier pred_x0 the kernel reads
                assert {"order 1 sde-dpmsolver++", "order 2 heun",
                        "order 3 sde-dpmsolver++"} <= labels, name
        if op.takes("noise_offset"):
            assert "noise_offset" in labels, name
        if op.takes("target"):
            assert {"plain", "target=start_x", "target=v", "weight"} <= labels, name
    # on the GPU every generator overload is also captured in a CUDA graph
    captured = []
    sanitize.capture_and_replay = lambda op, values: captured.append(op.qualified) or 3
    generator_overloads = {name for name, op in registry.items() if op.takes("generator")}
    assert len(generator_overloads) >= 8
    calls, covered = sanitize.run("cpu", dtypes=[torch.float32], shapes=sanitize.SHAPES[:1],
                                  graphs=True)
    assert set(captured) == generator_overloads
    assert all("graph" in covered[name] for name in generator_overloads)


def test_the_first_tests_the_battery_runs_exist():
    # a path in FIRST_TESTS that is gone would make pytest stop with "file or
    # directory not found" on the GPU: the first phase lost
    import os
    import re

    from helpers import ROOT

    with open(os.path.join(ROOT, "scripts", "gpu_check.sh")) as f:
        text = f.read()
    block = re.search(r"FIRST_TESTS=\((.*?)\)", text, re.S).group(1)
    paths = block.split()
    assert len(paths) >= 5
    for path in paths:
        assert os.path.exists(os.path.join(ROOT, path)), path
