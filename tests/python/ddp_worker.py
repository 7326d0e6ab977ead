"""One rank of the DistributedDataParallel check in test_distributed.py:
trains a few steps with q_sample and the training loss on its half of each
batch (gloo, CPU), then rank 0 saves the first step's gradients and the
final parameters."""
import os
import sys

import torch
import torch.distributed as dist

import torch_ddpm
from torch_ddpm.gaussian_diffusion import LossType, ModelMeanType, ModelVarType


def main(rank, world, port, inputs_path, out_path):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    data = torch.load(inputs_path)
    model = build_model()
    model.load_state_dict(data["state"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    grads, params = train(ddp, model, data, rank, world)
    if rank == 0:
        torch.save({"grads": grads, "params": params}, out_path)
    dist.barrier()
    dist.destroy_process_group()


def build_model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32, 64), torch.nn.SiLU(),
                               torch.nn.Linear(64, 64), torch.nn.Unflatten(1, (4, 4, 4)))


class TimeModel(torch.nn.Module):
    """Wraps a module so it takes (x, t) like a diffusion model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x) * (1 + t.float().view(-1, 1, 1, 1) / 100)


def diffusion():
    return torch_ddpm.GaussianDiffusion(
        betas=torch_ddpm.gaussian_diffusion.get_named_beta_schedule("cosine", 100),
        model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.LEARNED_RANGE,
        loss_type=LossType.RESCALED_MSE)


def train(wrapped, model, data, rank, world):
    """SGD on each step's slice of the batch; returns first-step grads and final params."""
    d = diffusion()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    first_grads = None
    for x0, t, noise in data["steps"]:
        n = x0.shape[0] // world
        sl = slice(rank * n, (rank + 1) * n)
        loss = d.training_losses(TimeModel(wrapped), x0[sl], t[sl], noise=noise[sl])["loss"].mean()
        opt.zero_grad()
        loss.backward()
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in model.parameters()]
        opt.step()
    return first_grads, [p.detach().clone() for p in model.parameters()]


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
