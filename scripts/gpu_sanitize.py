"""Every CUDA kernel once, on small inputs, for compute-sanitizer
(scripts/gpu_check.sh runs it under memcheck, racecheck and synccheck): each
operator forward and backward, out= and sample=, in-kernel noise, every mode,
four dtypes, shapes with tails, tiny samples (the per-thread coefficient
path), several chunks per block and a misaligned view. Prints one line."""
import itertools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python_bindings"))

import torch  # noqa: E402

import torch_ddpm  # noqa: E402,F401
from torch_ddpm.schedules import cosine_betas, schedule_tables  # noqa: E402

dev = "cuda"
tab = {k: v.to(dev) for k, v in schedule_tables(cosine_betas(50)).items()}
q_tabs = (tab["sqrt_alphas_cumprod"], tab["sqrt_one_minus_alphas_cumprod"])
post_tabs = (tab["posterior_mean_coef1"], tab["posterior_mean_coef2"],
             tab["posterior_variance"], tab["posterior_log_variance_clipped"])
step4 = (tab["sqrt_recip_alphas_cumprod"], tab["sqrt_recipm1_alphas_cumprod"],
         tab["posterior_mean_coef1"], tab["posterior_mean_coef2"])
p_tabs = step4 + (tab["posterior_log_variance_clipped"], tab["betas"])
d_tabs = step4 + (tab["alphas_cumprod"], tab["alphas_cumprod_prev"])
launches = 0
# (batch, channels, length): a tail, tiny samples, several chunks per block
for (b, c, n), dtype in itertools.product([(3, 2, 37), (200, 1, 3), (2, 3, 6000)],
                                          [torch.float32, torch.float64, torch.float16,
                                           torch.bfloat16]):
    base = torch.randn(b * c * n + 1, device=dev).to(dtype)
    x = base[1:].view(b, c, n)  # misaligned
    noise = torch.randn(b, c, n, device=dev).to(dtype)
    t = torch.randint(0, 50, (b,), device=dev)
    out = torch.empty_like(noise)
    torch.ops.ddpm.q_sample(x, t, noise, *q_tabs)
    torch.ops.ddpm.q_sample.out(x, t, noise, *q_tabs, out=out)
    torch.ops.ddpm.q_sample_backward(noise, t, *q_tabs)
    torch.ops.ddpm.scale_by_timestep(noise, t, q_tabs[0])
    torch.ops.ddpm.q_sample_philox(x, t, 1, 4, *q_tabs)
    torch.ops.ddpm.philox_normal(x, 2, 8)
    torch.ops.ddpm.posterior_mean_variance(x, noise, t, *post_tabs)
    torch.ops.ddpm.posterior_mean_variance_backward(noise, t, *post_tabs[:2])
    launches += 8
    for mean, var in itertools.product(["epsilon", "start_x", "previous_x", "v"],
                                       ["fixed_small", "fixed_large", "learned", "learned_range"]):
        mo = torch.randn(b, 2 * c if var.startswith("learned") else c, n, device=dev).to(dtype)
        for op, tabs, extra in (("p_sample", p_tabs, ()), ("ddim_sample", d_tabs, (0.5,))):
            fn = getattr(torch.ops.ddpm, op)
            fn(mo, x, t, noise, *tabs, *extra, mean, var, True)
            fn(mo, x, t, noise, *tabs, *extra, mean, var, False, sample=out)
            getattr(torch.ops.ddpm, op + "_philox")(mo, x, t, 3, 12, *tabs, *extra, mean, var, True)
            backward = getattr(torch.ops.ddpm, op + "_backward")
            backward(noise, noise, mo, x, t, noise, *tabs, *extra, mean, var, True)
            backward(None, noise, mo, x, t, None, *tabs, *extra, mean, var, False)
            launches += 5
torch.cuda.synchronize()
print(f"gpu_sanitize: {launches} kernel launches done")
