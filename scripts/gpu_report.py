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
                            r"(memcheck|racecheck|synccheck|tests|bench[a-z-]*|demo): exit|table written|gpu_sanitize: |"
                            r"compute-sanitizer: |!!|verdict)", line):
                    lines.append(line.rstrip())
    return lines


RESULT_LINE = re.compile(r"\[gw\d+\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)")


def outcomes_from_junit(junit_path):
    """{test id: passed | failed | skipped} from pytest's junit file."""
    found = {}
    for case in ET.parse(junit_path).iter("testcase"):
        classname = case.get("classname", "")
        path = classname.replace(".", "/") + ".py"
        test_id = f"{path}::{case.get('name', '')}"
        if case.find("skipped") is not None:
            found[test_id] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            found[test_id] = "failed"
        else:
            found[test_id] = "passed"
    return found


def outcomes_from_log(log_path):
    """The same from pytest -v's lines under xdist, for a run cut off before
    it wrote the junit file."""
    found = {}
    kind = {"PASSED": "passed", "XPASS": "passed", "XFAIL": "skipped", "SKIPPED": "skipped",
            "FAILED": "failed", "ERROR": "failed"}
    with open(log_path, errors="replace") as f:
        for line in f:
            m = RESULT_LINE.search(line)
            if m:
                found[m.group(2)] = kind[m.group(1)]
    return found


def tests(junit_path, log_path=None, collected_path=None):
    # the log names every finished case of both phases (CUDA, then CPU); the
    # junit file only the CUDA phase's, and only if it finished
    have_log = bool(log_path) and os.path.exists(log_path)
    found, source = (outcomes_from_log(log_path) if have_log else {}), "the log"
    if not found and junit_path and os.path.exists(junit_path):
        found, source = outcomes_from_junit(junit_path), "junit"
    if not found:
        if not have_log:
            return ["tests: no junit file and no log"]
        return ["tests: none finished according to the log (cut off before the first, or a "
                "log of pytest -q, from before the battery asked for -v)"]
    rows = collections.OrderedDict()
    for test_id, outcome in found.items():
        module = os.path.basename(test_id.split("::")[0]).removesuffix(".py")
        name = test_id.split("::", 1)[-1]
        device = "cuda" if ("cuda" in name or module == "test_cuda") else "cpu"
        rows.setdefault((module, device), collections.Counter())[outcome] += 1
    out = [f"tests, from {source}",
           f"{'tests (file)':34} {'dev':4} {'pass':>5} {'fail':>5} {'skip':>5}"]
    total = collections.Counter()
    for (module, device), c in sorted(rows.items()):
        total.update(c)
        out.append(f"{module:34} {device:4} {c['passed']:5} {c['failed']:5} {c['skipped']:5}")
    out.append(f"{'TOTAL':34} {'':4} {total['passed']:5} {total['failed']:5} {total['skipped']:5}")
    out += [f"FAILED {t}" for t, o in found.items() if o == "failed"][:40]
    if collected_path and os.path.exists(collected_path):
        with open(collected_path) as f:
            collected = [line.strip() for line in f if "::" in line]
        short = {t.split("tests/python/")[-1] for t in found}
        unfinished = [t for t in collected if t.split("tests/python/")[-1] not in short]
        out.append(f"finished {len(collected) - len(unfinished)} of {len(collected)} collected")
        out += [f"NOT FINISHED {t}" for t in unfinished[:40]]
        if len(unfinished) > 40:
            out.append(f"... and {len(unfinished) - 40} more")
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
    out = ["benchmark (median; % = a device-to-device copy's time for the same bytes over the "
           "column's time, each % beside its own time; vs = the other's time over the allocating "
           "form's)",
           f"{'op':42} {'shape':>14} {'dtype':>8} {'ms':>8} {'%copy':>6} {'out= ms':>8} "
           f"{'%copy':>6} {'copy TB/s':>9} {'vs improved':>11} {'vs lean':>8} {'vs compile':>10} "
           f"{'sample=':>8}"]
    for r in data["rows"]:
        ratio = lambda v: f"{r[f'speedup_vs_{v}']:.1f}x" if f"speedup_vs_{v}" in r else "-"  # noqa: E731
        share = lambda key: f"{100 * r['copy_s'] / r[key]:5.0f}%" if key in r else "     -"  # noqa: E731
        out_ms = f"{r['fused_out_s'] * 1e3:8.3f}" if "fused_out_s" in r else f"{'-':>8}"
        # (the sample-only form moves fewer bytes: its bandwidth over the copy's)
        sample = (f"{100 * r['fused_sample_GBps'] / r['copy_GBps']:.0f}%"
                  if "fused_sample_GBps" in r else "-")
        out.append(f"{r['op'][:42]:42} {r['shape']:>14} {r['dtype']:>8} {r['fused_s'] * 1e3:8.3f} "
                   f"{share('fused_s')} {out_ms} {share('fused_out_s')} "
                   f"{r['copy_GBps'] / 1e3:9.2f} {ratio('improved'):>11} {ratio('lean'):>8} "
                   f"{ratio('compiled'):>10} {sample:>8}")
    return out


def bench_noise(path):
    data = load_json(path)
    if data is None:
        return ["in-kernel noise: no results"]
    out = ["in-kernel noise (paired ratios, randn_like + fused over the in-kernel step)"]
    for r in data.get("rows", []):
        # "<a>_over_<b>_paired" holds [low, median, high] of the paired ratios
        cells = []
        for k in sorted(k for k in r if k.endswith("_paired")):
            low, mid, high = r[k]
            cells.append(f"{k[:-len('_paired')]} {mid:.2f}x ({low:.2f}-{high:.2f})")
        out.append(f"{r.get('op', '?'):>9} {r.get('shape', '?'):>12} {r.get('dtype', '?'):>8}  "
                   + "  ".join(cells))
    return out


def bench_training(path):
    data = load_json(path)
    if data is None:
        return ["training step (q_sample + loss, forward and backward): no results"]
    out = ["training step (q_sample + loss, forward and backward; ratios over fused)"]
    for r in data.get("rows", []):
        line = (f"{r.get('shape', '?'):>14} {r.get('dtype', '?'):>8} {r.get('config', '?'):>9}  "
                f"fused {r['fused_s'] * 1e3:.3f} ms  eager {r['eager_over_fused']:.2f}x")
        if "compiled_over_fused" in r:
            line += f"  compiled {r['compiled_over_fused']:.2f}x"
        out.append(line)
    return out


def demo(path):
    m = load_json(path)
    if m is None:
        return ["demo: no metrics"]
    return [f"demo --device cuda: verdict: {m.get('verdict')}"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--junit")
    p.add_argument("--collected", help="pytest --collect-only -q's output")
    p.add_argument("--bench")
    p.add_argument("--bench-noise")
    p.add_argument("--bench-training")
    p.add_argument("--demo")
    p.add_argument("--log")
    a = p.parse_args()
    for block in (machine(a.log), tests(a.junit, a.log, a.collected), bench(a.bench),
                  bench_noise(a.bench_noise), bench_training(a.bench_training), demo(a.demo)):
        print("\n".join(block))
        print()


if __name__ == "__main__":
    main()
