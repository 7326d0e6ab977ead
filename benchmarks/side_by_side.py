"""What the side-by-side benchmarks share (bench_scheduler.py,
bench_training.py): ways of doing one thing, timed alternately repetition by
repetition so that drift hits them alike; the operators each dispatches; the
results written as JSON with the command that made them."""
import json
import time
import warnings

import torch

from torch_ddpm.tools.bench import portable_command


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def alternate(fns, reps, warmup, device):
    """{name: [seconds of each repetition]} for {name: fn}, the order reversed
    every other repetition."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for rep in range(reps):
        order = list(fns) if rep % 2 == 0 else list(reversed(list(fns)))
        for name in order:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def count_ops(fn, device):
    """(operators, kernel launches) one call of fn dispatches: top-level aten::
    and ddpm:: calls counted by torch.profiler, and on CUDA the launches."""
    warnings.filterwarnings("ignore", message="Warning: Profiler clears events")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    events = prof.events()
    ops = sum(1 for e in events if e.cpu_parent is None
              and (e.name.startswith("aten::") or e.name.startswith("ddpm::")))
    launches = sum(1 for e in events if e.name in ("cudaLaunchKernel", "cuLaunchKernel",
                                                   "cudaLaunchKernelExC"))
    return ops, launches


def write_json(path, rows):
    with open(path, "w") as f:
        json.dump({"command": portable_command(), "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "rows": rows}, f, indent=1)
