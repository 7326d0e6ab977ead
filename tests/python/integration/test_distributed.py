"""DistributedDataParallel with the operators: two gloo processes on CPU train
a few steps with q_sample and the training loss; their gradients and
parameters match one process trained on the concatenated batches."""
import os
import socket
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # ddp_worker.py and the helpers
sys.path.insert(0, HERE)
import ddp_worker  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path):
    torch.manual_seed(0)
    model = ddp_worker.build_model()
    steps = [(torch.rand(8, 2, 4, 4) * 2 - 1, torch.randint(0, 100, (8,)), torch.randn(8, 2, 4, 4))
             for _ in range(3)]
    inputs = tmp_path / "inputs.pt"
    torch.save({"state": model.state_dict(), "steps": steps}, str(inputs))
    out = tmp_path / "rank0.pt"
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [HERE] + sys.path if p)
    env["OMP_NUM_THREADS"] = "1"
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "ddp_worker.py"), str(rank), "2",
                               str(port), str(inputs), str(out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    ddp = torch.load(str(out))

    single = ddp_worker.build_model()
    single.load_state_dict(model.state_dict())
    grads, params = ddp_worker.train(single, single, {"steps": steps}, rank=0, world=1)
    for a, b in zip(ddp["grads"], grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(ddp["params"], params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(params, model.parameters())), "training moved nothing"
