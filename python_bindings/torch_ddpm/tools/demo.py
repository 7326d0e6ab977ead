"""python3 -m torch_ddpm demo: train a small diffusion model on real data and
sample from it, with the ddpm operators doing the diffusion math.

Data: the 8x8 handwritten digits that scikit-learn ships (1797 images), scaled
to [-1, 1], 20% held out. Model: an MLP with a timestep embedding predicting
epsilon and a learned-range variance, trained with the improved-diffusion
recipe (rescaled MSE + variational bound) through torch_ddpm.GaussianDiffusion,
whose q_sample and p_sample are the fused operators. Then it samples with the
full ancestral chain and with a respaced DDIM chain, and checks the samples
against held-out real digits and against pure noise with three numbers:
  - nn_dist: mean distance from each image to its nearest training digit,
  - confidence: mean top-class probability of a digit classifier,
  - frechet: Frechet distance to held-out digits in that classifier's features.
Writes samples.png (real | DDPM | DDIM), loss.png and metrics.json into --out.
Runs under torchrun too (DistributedDataParallel, gloo on CPU, nccl on GPU).
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

from .png import image_grid, line_plot, text_label, write_png
from ..gaussian_diffusion import (GaussianDiffusion, LossType, ModelMeanType, ModelVarType,
                                 get_named_beta_schedule)
from ..respace import SpacedDiffusion, space_timesteps


def load_digits_data(seed):
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - the install scripts install it
        raise SystemExit("the demo needs scikit-learn's bundled digits: pip install scikit-learn") from e
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0 * 2 - 1  # [N, 8, 8] in [-1, 1]
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    return x[train].view(-1, 1, 8, 8), y[train], x[test].view(-1, 1, 8, 8), y[test]


def timestep_embedding(t, dim, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Denoiser(torch.nn.Module):
    """MLP on flattened 8x8 images; outputs epsilon and the variance interpolation."""

    def __init__(self, hidden=256, emb=128, pixels=64):
        super().__init__()
        self.emb = emb
        self.time = torch.nn.Sequential(torch.nn.Linear(emb, hidden), torch.nn.SiLU(),
                                        torch.nn.Linear(hidden, hidden))
        self.inp = torch.nn.Linear(pixels, hidden)
        self.blocks = torch.nn.ModuleList(
            [torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, hidden),
                                 torch.nn.SiLU(), torch.nn.Linear(hidden, hidden)) for _ in range(3)])
        self.out = torch.nn.Sequential(torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, 2 * pixels))

    def forward(self, x, t):
        h = self.inp(x.flatten(1)) + self.time(timestep_embedding(t, self.emb))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(x.shape[0], 2, *x.shape[2:])


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                            torch.nn.Linear(128, 64), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.features(x))


def train_classifier(x, y, steps=600, seed=0):
    torch.manual_seed(seed)
    clf = Classifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (128,))
        xb = (x[idx] + 0.1 * torch.randn_like(x[idx])).clamp(-1, 1)  # a little robustness
        loss = F.cross_entropy(clf(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


def frechet(a, b):
    """Frechet distance between Gaussians fitted to feature sets a and b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T.double()), torch.cov(b.T.double())
    # tr(sqrt(cov_a cov_b)) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a)
    ea, va = torch.linalg.eigh(cov_a)
    sqrt_a = va @ torch.diag(ea.clamp(min=0).sqrt()) @ va.T
    eig = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * eig.sqrt().sum())


@torch.no_grad()
def evaluate(images, clf, train_x, ref_features):
    images = images.clamp(-1, 1).cpu()
    nn_dist = torch.cdist(images.flatten(1), train_x.flatten(1)).min(dim=1).values.mean().item()
    probs = F.softmax(clf(images), dim=1)
    confidence = probs.max(dim=1).values.mean().item()
    counts = torch.bincount(probs.argmax(dim=1), minlength=10).float()
    p = counts / counts.sum()
    class_entropy = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(10))
    return {"nn_dist": nn_dist, "confidence": confidence, "class_entropy": class_entropy,
            "frechet": frechet(clf.features(images), ref_features)}


def setup_distributed(device_arg):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    backend = "nccl" if device_arg.startswith("cuda") else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world


def run(args):
    rank, world = setup_distributed(args.device)
    device = torch.device(args.device)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    log = print if rank == 0 else (lambda *a, **k: None)
    os.makedirs(args.out, exist_ok=True)
    train_x, train_y, test_x, test_y = load_digits_data(args.seed)
    log(f"torch {torch.__version__} on {device} x{world}, threads {torch.get_num_threads()}; "
        f"digits: {len(train_x)} train / {len(test_x)} held out, 8x8; output -> {args.out}")

    torch.manual_seed(args.seed)
    betas = get_named_beta_schedule(args.schedule, args.timesteps)
    kw = dict(betas=betas, model_mean_type=ModelMeanType.EPSILON,
              model_var_type=ModelVarType.LEARNED_RANGE, loss_type=LossType.RESCALED_MSE)
    diffusion = GaussianDiffusion(**kw)
    model = Denoiser().to(device)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data = train_x.to(device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1000 * rank)
    losses, start, last = [], time.perf_counter(), time.perf_counter()
    log(f"training {args.steps} steps, batch {args.batch} per process, T = {args.timesteps} ({args.schedule})")
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 200) * (0.5 * (1 + math.cos(math.pi * step / args.steps)) * 0.9 + 0.1)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(data), (args.batch,), generator=gen).to(device)
        x0 = data[idx]
        t = torch.randint(0, args.timesteps, (args.batch,), generator=gen).to(device)
        loss = diffusion.training_losses(train_model, x0, t)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            now = time.perf_counter()
            rate = args.log_every / max(now - last, 1e-9)
            last = now
            avg = sum(losses[-args.log_every:]) / len(losses[-args.log_every:])
            log(f"  step {step:6d}/{args.steps}  loss {avg:.4f}  {rate:7.1f} steps/s  lr {lr:.2e}")
    train_time = time.perf_counter() - start

    if rank == 0:
        model.eval()
        n = args.samples
        log(f"sampling {n} digits: full chain of {args.timesteps} fused p_sample steps ...")
        torch.manual_seed(args.seed + 1)
        start = time.perf_counter()
        ddpm = diffusion.p_sample_loop(model, (n, 1, 8, 8), device=device, progress=args.progress)
        ddpm_time = time.perf_counter() - start
        spaced = SpacedDiffusion(space_timesteps(args.timesteps, f"ddim{args.ddim_steps}"), **kw)
        log(f"sampling {n} digits: DDIM, {args.ddim_steps} respaced fused ddim_sample steps ...")
        start = time.perf_counter()
        ddim = spaced.ddim_sample_loop(model, (n, 1, 8, 8), device=device, progress=args.progress)
        ddim_time = time.perf_counter() - start

        clf = train_classifier(train_x, train_y, seed=args.seed)
        with torch.no_grad():
            test_acc = (clf(test_x).argmax(1) == test_y).float().mean().item()
            ref = clf.features(test_x)
        noise = torch.randn(n, 1, 8, 8).clamp(-1, 1)
        metrics = {
            "DDPM samples": evaluate(ddpm, clf, train_x, ref),
            "DDIM samples": evaluate(ddim, clf, train_x, ref),
            "held-out real": evaluate(test_x[:n], clf, train_x, ref),
            "pure noise": evaluate(noise, clf, train_x, ref),
        }
        log(f"\nclassifier test accuracy {test_acc:.3f}; lower nn_dist and frechet, higher confidence are better")
        log(f"{'':16s} {'nn_dist':>8s} {'confidence':>10s} {'frechet':>9s} {'class_entropy':>13s}")
        for name, m in metrics.items():
            log(f"{name:16s} {m['nn_dist']:8.3f} {m['confidence']:10.3f} {m['frechet']:9.2f} {m['class_entropy']:13.3f}")
        good = all(metrics[k]["frechet"] < 0.5 * metrics["pure noise"]["frechet"]
                   and metrics[k]["confidence"] > metrics["pure noise"]["confidence"]
                   for k in ("DDPM samples", "DDIM samples"))
        verdict = "samples resemble the data" if good else "SAMPLES DO NOT RESEMBLE THE DATA"
        log(f"verdict: {verdict} (frechet well under pure noise's, confidence above it)")

        columns = 16
        shown = min(n, columns * 4, len(test_x))
        panels = [image_grid((imgs[:shown, 0].cpu() + 1) / 2, columns) for imgs in (test_x, ddpm, ddim)]
        labels = ("held-out real", f"DDPM ({args.timesteps} steps)",
                  f"DDIM ({args.ddim_steps} steps)")
        panels = [torch.cat([text_label(label, panel.shape[1]), panel], dim=0)
                  for label, panel in zip(labels, panels)]
        sep = torch.full((panels[0].shape[0], 12), 255, dtype=torch.uint8)
        write_png(os.path.join(args.out, "samples.png"),
                  torch.cat([panels[0], sep, panels[1], sep, panels[2]], dim=1))
        window = max(1, len(losses) // 100)
        smooth = torch.tensor(losses).unfold(0, window, window).mean(1)
        write_png(os.path.join(args.out, "loss.png"), line_plot([(smooth, (200, 30, 30))]))
        with open(os.path.join(args.out, "metrics.json"), "w") as f:
            json.dump({"metrics": metrics, "classifier_test_accuracy": test_acc,
                       "train_seconds": train_time, "ddpm_sample_seconds": ddpm_time,
                       "ddim_sample_seconds": ddim_time, "losses": losses, "args": vars(args),
                       "verdict": verdict}, f, indent=1)
        log(f"wrote {args.out}/samples.png (held-out real | DDPM | DDIM), loss.png, metrics.json; "
            f"train {train_time:.0f} s, DDPM sampling {ddpm_time:.1f} s, DDIM {ddim_time:.1f} s")
        status = 0 if good else 1
    else:
        status = 0
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return status


def add_arguments(p):
    p.add_argument("--out", default="ddpm_demo_out", help="output folder (default: ddpm_demo_out)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to train and sample on the GPU")
    p.add_argument("--steps", type=int, default=8000, help="training steps (default: 8000)")
    p.add_argument("--batch", type=int, default=128, help="batch size per process (default: 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 1e-3)")
    p.add_argument("--timesteps", type=int, default=500, help="diffusion steps T (default: 500)")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "linear"])
    p.add_argument("--samples", type=int, default=256, help="digits to sample (default: 256)")
    p.add_argument("--ddim-steps", type=int, default=50, help="steps of the respaced DDIM chain")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=500, help="print progress every N steps")
    p.add_argument("--progress", action="store_true", help="progress bars while sampling")
