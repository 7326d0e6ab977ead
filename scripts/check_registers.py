"""The register budget of every CUDA kernel, checked without a GPU.

Compiles csrc/cuda/*.cu for one architecture (sm_90, the H100/H200, unless
--arch says otherwise) to device code only, with ptxas reporting each
kernel's registers, stack frame and spills (-Xptxas -v), and fails when a
kernel spills or keeps a stack frame: its __launch_bounds__ (an Op's
kMinBlocksPerSm, csrc/cuda/elementwise.cuh) caps its registers, so a change
that needs more than its budget shows here as spills rather than as a
silent loss of occupancy on the GPU. The sources include nothing but csrc/
and the CUDA runtime, so this is also the check that the kernels compile
without PyTorch.

    python3 scripts/check_registers.py [--arch sm_90] [--jobs N] [--report FILE]

Prints one line per kernel family (the kernel template and its Op, every
instance of the dtypes and modes folded together): instances, the most
registers any uses, and the budget its launch bounds allow.
"""
import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_FILE = os.path.join(ROOT, "cmake", "compile_flags.txt")

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
USAGE = re.compile(r"Used (\d+) registers")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def cuda_flags():
    """The result-affecting nvcc flags of cmake/compile_flags.txt."""
    flags = []
    with open(FLAGS_FILE) as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) == 2 and words[0] == "cuda":
                flags.append(words[1])
    return flags


def compile_report(source, arch, nvcc):
    """ptxas' -v lines for one .cu file (raises with the compiler's output)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", "-O3", *cuda_flags(),
               "-I", os.path.join(ROOT, "csrc"), "-Xptxas", "-v", source,
               "-o", os.path.join(tmp, "out.cubin")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{done.stderr[-4000:]}")
        return done.stderr


def demangle(names):
    done = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                          check=True)
    return done.stdout.splitlines()


def parse(report):
    """[(mangled name, registers, stack frame, spill stores, spill loads)] of one report."""
    kernels, current = [], None
    for line in report.splitlines():
        entry = ENTRY.search(line)
        if entry:
            current = {"name": entry.group(1)}
            continue
        if current is None:
            continue
        frame = FRAME.search(line)
        if frame:
            current["frame"], current["spill_stores"], current["spill_loads"] = map(
                int, frame.groups())
        usage = USAGE.search(line)
        if usage:
            current["registers"] = int(usage.group(1))
            kernels.append(current)
            current = None
    return kernels


def family(demangled):
    """The kernel template and its Op's name: 'elementwise_kernel<StepOp>'."""
    name = demangled.replace("(anonymous namespace)::", "").split("(", 1)[0]
    kernel = re.sub(r"<.*", "", name).split("::")[-1]
    ops = re.findall(r"(\w+Op)\b", name)
    return f"{kernel}<{ops[0]}>" if ops else kernel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--nvcc", default=os.environ.get("NVCC", "nvcc"))
    parser.add_argument("--report", help="also write the per-kernel lines to this file")
    parser.add_argument("sources", nargs="*",
                        default=sorted(os.path.join(ROOT, "csrc", "cuda", f)
                                       for f in os.listdir(os.path.join(ROOT, "csrc", "cuda"))
                                       if f.endswith(".cu")))
    args = parser.parse_args(argv)

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        reports = dict(zip(args.sources, pool.map(
            lambda s: compile_report(s, args.arch, args.nvcc), args.sources)))

    rows = []
    for source, report in reports.items():
        kernels = parse(report)
        if not kernels:
            print(f"{os.path.relpath(source, ROOT)}: ptxas reported no kernel "
                  "(did its -v format change?)")
            return 1
        for kernel, name in zip(kernels, demangle([k["name"] for k in kernels])):
            kernel["demangled"] = name
            kernel["source"] = os.path.relpath(source, ROOT)
            rows.append(kernel)

    families = {}
    for k in rows:
        families.setdefault((k["source"], family(k["demangled"])), []).append(k)
    lines = [f"{'kernel (Op)':<46} {'instances':>9} {'max registers':>13} {'spilling':>8}"]
    failed = []
    for (source, fam), kernels in sorted(families.items()):
        spilling = [k for k in kernels if k["spill_stores"] or k["spill_loads"] or k["frame"]]
        failed += spilling
        lines.append(f"{fam:<46} {len(kernels):>9} {max(k['registers'] for k in kernels):>13} "
                     f"{len(spilling):>8}")
    text = "\n".join(lines)
    print(f"register use on {args.arch} ({len(rows)} kernels of {len(reports)} files):")
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    if failed:
        print(f"\n{len(failed)} kernels spill or keep a stack frame (their launch bounds' "
              "register budget is too small for them, or they index a local array):")
        for k in failed[:20]:
            print(f"  {k['registers']} registers, {k['frame']} B frame, {k['spill_stores']} B "
                  f"spill stores, {k['spill_loads']} B spill loads: {k['demangled'][:200]}")
        return 1
    print("no kernel spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
