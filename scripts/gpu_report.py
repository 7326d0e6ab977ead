"""The table of a GPU battery run (scripts/gpu_check.sh writes it as <date>.txt):
the machine and versions, the tests by file and device, the benchmark's
ratios and bandwidths, the in-kernel-noise ratios and the demo's verdict.
Runs anywhere on the files a run left:

    python3 scripts/gpu_report.py --junit D-junit.xml --bench D-bench.json \\
        --bench-noise D-bench-noise.json --demo metrics.json --log D.log
"""
import argparse
import collections
import json
import os
import re
import xml.etree.ElementTree as ET


def machine(log_path):
    lines = []
    if log_path and os.path.exists(log_path):
        with open(log_path, errors="replace") as f:
            for line in f:
                if re.match(r"^(== GPU battery|gpu: |python |prepared: |library: |"
                            r"(memcheck|racecheck|synccheck|tests|bench|bench-noise|demo): exit|"
                            r"compute-sanitizer: |!!|verdict)", line):
                    lines.append(line.rstrip())
    return lines


def tests(junit_path):
    if not junit_path or not os.path.exists(junit_path):
        return ["tests: no junit file (the run stopped before the tests)"]
    rows = collections.OrderedDict()
    failures = []
    for case in ET.parse(junit_path).iter("testcase"):
        module = case.get("classname", "").split(".")[-1]
        name = case.get("name", "")
        device = "cuda" if ("cuda" in name or module == "test_cuda") else "cpu"
        counts = rows.setdefault((module, device), collections.Counter())
        if case.find("skipped") is not None:
            counts["skipped"] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failures.append(f"{module}::{name}")
        else:
            counts["passed"] += 1
    out = [f"{'tests (file)':34} {'dev':4} {'pass':>5} {'fail':>5} {'skip':>5}"]
    total = collections.Counter()
    for (module, device), c in rows.items():
        total.update(c)
        out.append(f"{module:34} {device:4} {c['passed']:5} {c['failed']:5} {c['skipped']:5}")
    out.append(f"{'TOTAL':34} {'':4} {total['passed']:5} {total['failed']:5} {total['skipped']:5}")
    out += [f"FAILED {f}" for f in failures[:40]]
    return out


def load_json(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def bench(path):
    data = load_json(path)
    if data is None:
        return ["benchmark: no results"]
    out = ["benchmark (median; vs = time of the other over ours; copy = device-to-device copy "
           "of the bytes the op must move)",
           f"{'op':42} {'shape':>14} {'dtype':>8} {'ms':>8} {'GB/s':>7} {'%copy':>6} "
           f"{'vs improved':>11} {'vs lean':>8} {'vs compile':>10} {'sample=':>8}"]
    for r in data["rows"]:
        ratio = lambda v: f"{r[f'speedup_vs_{v}']:.1f}x" if f"speedup_vs_{v}" in r else "-"  # noqa: E731
        sample = f"{r['fused_sample_GBps'] / r['copy_GBps'] * 100:.0f}%" if "fused_sample_GBps" in r else "-"
        out.append(f"{r['op'][:42]:42} {r['shape']:>14} {r['dtype']:>8} {r['fused_s'] * 1e3:8.3f} "
                   f"{r['fused_GBps']:7.0f} {100 * r['best_fused_over_copy_bw']:5.0f}% "
                   f"{ratio('improved'):>11} {ratio('lean'):>8} {ratio('compiled'):>10} {sample:>8}")
    return out


def bench_noise(path):
    data = load_json(path)
    if data is None:
        return ["in-kernel noise: no results"]
    out = ["in-kernel noise (paired ratios, randn_like + fused over the in-kernel step)"]
    for r in data.get("rows", []):
        keys = sorted(k for k in r if "ratio" in k or "speedup" in k)
        out.append(f"{r.get('shape', '?'):>14} {r.get('dtype', '?'):>8} "
                   + " ".join(f"{k}={r[k]:.2f}" for k in keys if isinstance(r[k], (int, float))))
    return out


def demo(path):
    m = load_json(path)
    if m is None:
        return ["demo: no metrics"]
    return [f"demo --device cuda: verdict: {m.get('verdict')}"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--junit")
    p.add_argument("--bench")
    p.add_argument("--bench-noise")
    p.add_argument("--demo")
    p.add_argument("--log")
    a = p.parse_args()
    for block in (machine(a.log), tests(a.junit), bench(a.bench), bench_noise(a.bench_noise),
                  demo(a.demo)):
        print("\n".join(block))
        print()


if __name__ == "__main__":
    main()
