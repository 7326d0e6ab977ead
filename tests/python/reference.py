"""Float64 references of every operator, written from the formulas (docs/math.md)
the way improved-diffusion's GaussianDiffusion writes them, plus the size of
the terms each output sums (for a floating-point error bound)."""
import torch

from torch_ddpm.schedules import schedule_tables

LEARNED = ("learned", "learned_range")


def make_tables(num_timesteps=1000, schedule="linear", device="cpu", dtype=torch.float64):
    from torch_ddpm.schedules import get_named_beta_schedule

    tabs = schedule_tables(get_named_beta_schedule(schedule, num_timesteps))
    add_sigma_chain(tabs)
    return {k: v.to(device=device, dtype=dtype) for k, v in tabs.items()}


def add_sigma_chain(tabs):
    """The sigma-space steps' tables over every training step, t -> t - 1
    (sigma 0 after t = 0), and a multistep chain's sigmas of the steps one and
    two before step t (sigma_{t+1}, sigma_{t+2}), past the last one extended
    geometrically (finite)."""
    s = tabs["sigmas"] = tabs["sqrt_recipm1_alphas_cumprod"]
    tabs["sigmas_next"] = torch.cat([s.new_zeros(1), s[:-1]])
    tabs["sigmas_1"] = torch.cat([s[1:], s[-1:] * 2])
    tabs["sigmas_2"] = torch.cat([s[2:], s[-1:] * 2, s[-1:] * 4])[: len(s)]


def per_sample(table, t, ndim):
    """table[t] as float64 of shape [B, 1, ..., 1]."""
    return table.double()[t].view(-1, *([1] * (ndim - 1)))


def q_sample(x_start, t, noise, tab):
    x, n = x_start.double(), noise.double()
    a = per_sample(tab["sqrt_alphas_cumprod"], t, x.dim())
    b = per_sample(tab["sqrt_one_minus_alphas_cumprod"], t, x.dim())
    return a * x + b * n, a.abs() * x.abs() + b.abs() * n.abs()


def posterior_mean_variance(x_start, x_t, t, tab):
    x0, x = x_start.double(), x_t.double()
    c1 = per_sample(tab["posterior_mean_coef1"], t, x.dim())
    c2 = per_sample(tab["posterior_mean_coef2"], t, x.dim())
    mean = c1 * x0 + c2 * x
    var = per_sample(tab["posterior_variance"], t, x.dim()).expand(x.shape)
    log_var = per_sample(tab["posterior_log_variance_clipped"], t, x.dim()).expand(x.shape)
    return mean, var, log_var, c1.abs() * x0.abs() + c2.abs() * x.abs()


def _pred_xstart(out, x, t, tab, mean_type, clip):
    """(pred_xstart, its magnitude, v's slack) as improved-diffusion forms it;
    clip: True ([-1, 1]), False, or (clip_bound, clip_rescale): clamped to
    [-s, s] per sample, and divided by s with clip_rescale.

    slack bounds the error the kernel inherits, for the v prediction, from
    deriving sqrt(1 - abar) out of the sqrt_recipm1_alphas_cumprod table: that
    table, sqrt(1/abar - 1) in float64, carries a relative error of about
    2^-53/(1 - abar) (cancellation at small t). Invisible in float32.
    """
    ex = lambda name: per_sample(tab[name], t, x.dim())  # noqa: E731
    if mean_type == "epsilon":
        A, B = ex("sqrt_recip_alphas_cumprod"), -ex("sqrt_recipm1_alphas_cumprod")
    elif mean_type == "start_x":
        A, B = torch.zeros_like(ex("betas")), torch.ones_like(ex("betas"))
    elif mean_type == "previous_x":
        c1, c2 = ex("posterior_mean_coef1"), ex("posterior_mean_coef2")
        A, B = -c2 / c1, 1 / c1
    elif mean_type == "v":
        abar = ex("alphas_cumprod")
        A, B = abar.sqrt(), -(1 - abar).sqrt()
    else:
        raise ValueError(mean_type)
    pred = A * x + B * out
    pred_mag = A.abs() * x.abs() + B.abs() * out.abs()
    slack = torch.zeros_like(pred)
    if mean_type == "v":
        slack = 8 * 2.0**-53 * B.abs() * out.abs() / (1 - ex("alphas_cumprod"))
    return _clipped(pred, pred_mag, slack, x, clip)


def _clipped(pred, pred_mag, slack, x, clip):
    if isinstance(clip, tuple):  # (clip_bound [B], clip_rescale)
        bound, rescale = clip
        # the bound's magnitude; with rescaling at least 2^-60 (docs/operators.md)
        s = bound.double().abs().view(-1, *([1] * (x.dim() - 1)))
        if rescale:
            s = torch.where(s < 2.0**-60, torch.full_like(s, 2.0**-60), s)
        pred = torch.maximum(torch.minimum(pred, s), -s)
        if rescale:
            pred, pred_mag, slack = pred / s, pred_mag / s, slack / s
    elif clip:
        pred = pred.clamp(-1, 1)
    return pred, pred_mag, slack


def _no_noise_at_t0(t, ndim, sigma):
    """sigma where t > 0, else 0, whatever sigma is there."""
    nonzero = (t != 0).view(-1, *([1] * (ndim - 1)))
    return torch.where(nonzero, sigma, torch.zeros_like(sigma))


def _sigma(t, log_var):
    """exp(log_var / 2) where t > 0, else 0, whatever the log-variance is at t = 0
    (a one-step schedule's is -inf, learned_range's -inf * 0 NaN); its gradient
    is 0 there too, not 0 * NaN."""
    nonzero = (t != 0).view(-1, *([1] * (log_var.dim() - 1)))
    safe = torch.where(nonzero, log_var, torch.zeros_like(log_var))
    return _no_noise_at_t0(t, log_var.dim(), torch.exp(0.5 * safe))


def p_sample(model_output, x_t, t, noise, tab, mean_type, var_type, clip):
    """Returns (sample, pred_xstart, sample_magnitude, pred_magnitude,
    (sample_slack, pred_slack)); the slacks as _pred_xstart's."""
    x, out, z = x_t.double(), model_output.double(), noise.double()
    ex = lambda name: per_sample(tab[name], t, x.dim())  # noqa: E731
    if var_type in LEARNED:
        out, var_values = torch.split(out, x.shape[1], dim=1)
        if var_type == "learned":
            log_var = var_values
            lv_mag = var_values.abs()
        else:
            # a one-step schedule's clipped table is -inf (no noise at its only
            # step); 0 in its place keeps the formula, and its gradient, finite
            min_log = ex("posterior_log_variance_clipped").nan_to_num(neginf=0.0)
            max_log = torch.log(ex("betas"))
            frac = (var_values + 1) / 2
            log_var = frac * max_log + (1 - frac) * min_log
            lv_mag = (max_log.abs() + min_log.abs()) * (1 + var_values.abs())
    elif var_type == "fixed_small":
        log_var = ex("posterior_log_variance_clipped").expand(x.shape)
        lv_mag = log_var.abs()
    elif var_type == "fixed_large":
        pv, betas = tab["posterior_variance"].double(), tab["betas"].double()
        # a one-step schedule has no posterior_variance[1]; its step adds no noise
        first = pv[1:2] if len(pv) > 1 else pv[:1]
        log_var = torch.log(torch.cat([first, betas[1:]]))[t]
        log_var = log_var.view(-1, *([1] * (x.dim() - 1))).expand(x.shape)
        lv_mag = log_var.abs()
    else:
        raise ValueError(var_type)

    pred, pred_mag, slack = _pred_xstart(out, x, t, tab, mean_type, clip)
    c1, c2 = ex("posterior_mean_coef1"), ex("posterior_mean_coef2")
    if mean_type == "previous_x":
        mean, mean_mag = out, out.abs()
    else:
        mean = c1 * pred + c2 * x
        mean_mag = c1.abs() * pred_mag + c2.abs() * x.abs()
    sigma = _sigma(t, log_var.expand(x.shape))
    sample = mean + sigma * z
    noise_mag = _no_noise_at_t0(t, x.dim(), sigma * z.abs() * (1 + lv_mag))
    sample_mag = mean_mag + noise_mag
    sample_slack = slack if mean_type == "previous_x" else c1.abs() * slack
    return sample, pred, sample_mag, pred_mag, (sample_slack, slack)


def ddim_sample(model_output, x_t, t, noise, tab, eta, mean_type, var_type, clip,
                target="alphas_cumprod_prev", use_clipped_model_output=True):
    """A DDIM step towards tab[target] (abar_{t-1}; abar_{t+1} for the reverse
    ODE), as improved-diffusion's ddim_sample writes it, eps formed from x_t
    and pred_xstart in terms of abar (defined where abar_t = 0 too: eps = x_t).
    Returns what p_sample returns; a learned variance half is ignored.
    use_clipped_model_output=False: eps is the model's own, from the unclipped
    x_0 (diffusers' default), not re-derived from the clipped pred_xstart."""
    x, out, z = x_t.double(), model_output.double(), noise.double()
    if var_type in LEARNED:
        out = out[:, : x.shape[1]]
    ex = lambda name: per_sample(tab[name], t, x.dim())  # noqa: E731
    pred, pred_mag, slack = _pred_xstart(out, x, t, tab, mean_type, clip)
    abar, abar_tgt = ex("alphas_cumprod"), ex(target)
    eps_from = pred if use_clipped_model_output else _pred_xstart(out, x, t, tab, mean_type,
                                                                  False)[0]
    eps = (x - abar.sqrt() * eps_from) / (1 - abar).sqrt()
    eps_mag = (x.abs() + abar.sqrt() * pred_mag) / (1 - abar).sqrt()
    if eta == 0:
        sigma = torch.zeros_like(abar)
    else:
        sigma = eta * ((1 - abar_tgt) / (1 - abar)).sqrt() * (1 - abar / abar_tgt).sqrt()
    d = (1 - abar_tgt - sigma**2).clamp_min(0).sqrt()  # rounds below 0 at eta = 1, abar = 0
    sigma = _no_noise_at_t0(t, x.dim(), sigma)
    sample = abar_tgt.sqrt() * pred + d * eps + sigma * z
    sample_mag = abar_tgt.sqrt() * pred_mag + d * eps_mag + sigma * z.abs()
    # eps divides by sqrt(1 - abar): the kernel's slack grows with it; and
    # the kernel forms its eps coefficients from sqrt_recipm1_alphas_cumprod,
    # whose float64 table carries 2^-53/(1 - abar) relative error (see
    # _pred_xstart): invisible in float32
    sample_slack = ((abar_tgt.sqrt() + d / (1 - abar).sqrt()) * slack
                    + 8 * 2.0**-53 / (1 - abar) * d * eps_mag)
    return sample, pred, sample_mag, pred_mag, (sample_slack, slack)


def _sigma_step_pred(mean_type, sigma, x, out, clip, coefficients):
    """A sigma-space step's (pred_xstart, its magnitude, slack): A*x + B*out
    with (A, B) = coefficients[mean_type] (start_x: the output), clipped."""
    coefficients = dict(coefficients, start_x=(torch.zeros_like(sigma), torch.ones_like(sigma)))
    if mean_type not in coefficients:
        raise ValueError(mean_type)
    A, B = coefficients[mean_type]
    return _clipped(A * x + B * out, A.abs() * x.abs() + B.abs() * out.abs(),
                    torch.zeros_like(x), x, clip)


def euler_sample(model_output, x_t, t, noise, tab, eta, mean_type, var_type, clip):
    """An Euler step in sigma space from tab["sigmas"][t] to
    tab["sigmas_next"][t] as diffusers' Euler schedulers write it (the ODE
    derivative (x - x_0)/sigma times the step), its ancestral part (eta
    times sigma_up, k-diffusion's get_ancestral_step) included. Returns what
    p_sample returns; a learned variance half is ignored."""
    x, out, z = x_t.double(), model_output.double(), noise.double()
    if var_type in LEARNED:
        out = out[:, : x.shape[1]]
    sigma, sigma_next = per_sample(tab["sigmas"], t, x.dim()), per_sample(tab["sigmas_next"], t,
                                                                            x.dim())
    pred, pred_mag, slack = _sigma_step_pred(mean_type, sigma, x, out, clip, {
        "epsilon": (torch.ones_like(sigma), -sigma),
        "v": (1 / (sigma**2 + 1), -sigma / (sigma**2 + 1).sqrt())})
    up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt()
    up = torch.minimum(eta * up, sigma_next) if eta != 0 else torch.zeros_like(sigma)
    down = (sigma_next**2 - up**2).sqrt()
    derivative = (x - pred) / sigma
    sample = x + derivative * (down - sigma) + up * z
    # the kernel forms (down/sigma)*x + (1 - down/sigma)*pred_xstart: a
    # rounding of down/sigma (float32 tables) moves the pred_xstart term by
    # its share of |pred_xstart|, however small 1 - down/sigma is
    sample_mag = x.abs() + (x.abs() + pred_mag) * (1 + (sigma - down).abs() / sigma) + up * z.abs()
    return sample, pred, sample_mag, pred_mag, (slack * (sigma - down).abs() / sigma, slack)


def dpm_solver_sample(model_output, x_t, t, noise, tab, history, order, solver_type, algorithm,
                      mean_type, var_type, clip):
    """A DPM-Solver++ multistep step of `order` as diffusers'
    DPMSolverMultistepScheduler writes it (its convert_model_output and its
    first, second and third order updates, with alpha, sigma and lambda of
    each step's sigma), history: the pred_xstart of the steps one and two
    before. The magnitude is that of the step expanded in x, this and the
    earlier pred_xstart and the noise (the kernel's form)."""
    x, out, z = x_t.double(), model_output.double(), noise.double()
    if var_type in LEARNED:
        out = out[:, : x.shape[1]]
    ex = lambda name: per_sample(tab[name], t, x.dim())  # noqa: E731
    s0, s_t, s1, s2 = ex("sigmas"), ex("sigmas_next"), ex("sigmas_1"), ex("sigmas_2")

    def alpha_sigma(s):
        alpha = 1 / (s**2 + 1).sqrt()
        return alpha, s * alpha

    alpha0, sigma0 = alpha_sigma(s0)
    pred, pred_mag, slack = _sigma_step_pred(mean_type, s0, x, out, clip, {
        "epsilon": (1 / alpha0, -sigma0 / alpha0), "v": (alpha0, -sigma0)})
    lam = lambda s: torch.log(alpha_sigma(s)[0]) - torch.log(alpha_sigma(s)[1])  # noqa: E731
    alpha_t, sigma_t = alpha_sigma(s_t)
    h = lam(s_t) - lam(s0)
    sde = algorithm == "sde-dpmsolver++"

    def step(x, m0, m1, m2, z):
        D0 = m0
        if order == 1:
            D1 = D2 = 0
        elif order == 2:
            r0 = (lam(s0) - lam(s1)) / h
            D1, D2 = (m0 - m1) / r0, 0
        else:
            r0, r1 = (lam(s0) - lam(s1)) / h, (lam(s1) - lam(s2)) / h
            D1_0, D1_1 = (m0 - m1) / r0, (m1 - m2) / r1
            D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
            D2 = (D1_0 - D1_1) / (r0 + r1)
        heun = solver_type == "heun" or order == 3
        if not sde:
            em = torch.exp(-h) - 1
            k1 = alpha_t * (em / h + 1) if heun else -0.5 * alpha_t * em
            k2 = -alpha_t * ((em + h) / h**2 - 0.5)
            return sigma_t / sigma0 * x - alpha_t * em * D0 + higher(k1, k2, D1, D2)
        g = 1 - torch.exp(-2 * h)
        k1 = alpha_t * (g / (-2 * h) + 1) if heun else 0.5 * alpha_t * g
        k2 = alpha_t * ((g - 2 * h) / (2 * h) ** 2 - 0.5)
        return (sigma_t / sigma0 * torch.exp(-h) * x + alpha_t * g * D0 + higher(k1, k2, D1, D2)
                + sigma_t * g.sqrt() * z)

    def higher(k1, k2, D1, D2):  # (the terms an order does not have are not formed: at
        # the last step, sigma 0, their coefficients are NaN)
        return (k1 * D1 if order >= 2 else 0) + (k2 * D2 if order >= 3 else 0)

    m1 = history[0].double() if order >= 2 else torch.zeros_like(x)
    m2 = history[1].double() if order >= 3 else torch.zeros_like(x)
    sample = step(x, pred, m1, m2, z)
    # each input's coefficient: the step of that input alone (it is linear)
    one, zero = torch.ones_like(s0), torch.zeros_like(s0)
    coef = [step(*(one if j == i else zero for j in range(5))).abs() for i in range(5)]
    sample_mag = (coef[0] * x.abs() + coef[1] * pred_mag + coef[2] * m1.abs()
                  + coef[3] * m2.abs() + coef[4] * z.abs())
    # orders 2 and 3 weigh the pred_xstart by ratios of lambda differences
    # (h, h_0, h_1): float64 rounds each lambda, so a ratio carries
    # 2^-53 |lambda|/|difference| relative error, in the kernel and here
    # alike, and the kernel's expanded coefficients (c1 = b0 + k1/r0 + ...)
    # sum terms as large as (|k1| + |k2|)/r^2
    history_slack = torch.zeros_like(sample)
    if order >= 2:
        lams = [lam(s) for s in (s_t, s0, s1, s2)[: order + 1]]
        diffs = torch.stack([(a - b).abs() for a, b in zip(lams, lams[1:])])
        cond = sum(x.abs() for x in lams) / diffs.min(0).values
        r_min = diffs[1:].min(0).values / diffs[0]
        terms = coef[1] + (1 + coef[1] + coef[2] + coef[3]) * (1 + 1 / r_min) ** 2
        history_slack = 32 * 2.0**-53 * cond * terms * (pred_mag + m1.abs() + m2.abs())
    return sample, pred, sample_mag, pred_mag, (coef[1] * slack + history_slack, slack)


def diffusion_mse(model_output, x_start, noise, t, tab, weight, target):
    """weight[t] * mean((out - target)^2) per sample, and the size of what the
    kernel rounds: each difference out - target to u(|out| + |target's
    terms|), which moves its square by 2|d| times that."""
    out, x0, n = model_output.double(), x_start.double(), noise.double()
    a = per_sample(tab["sqrt_alphas_cumprod"], t, out.dim())
    b = per_sample(tab["sqrt_one_minus_alphas_cumprod"], t, out.dim())
    if target == "epsilon":
        want, terms = n, n.abs()
    elif target == "start_x":
        want, terms = x0, x0.abs()
    elif target == "v":
        want, terms = a * n - b * x0, a.abs() * n.abs() + b.abs() * x0.abs()
    else:
        raise ValueError(target)
    d, out, terms = (v.reshape(v.shape[0], -1) for v in (out - want, out, terms))  # [B, N]
    dims = [1]
    w = weight.double()[t] if weight is not None else torch.ones(t.shape, dtype=torch.float64,
                                                                    device=t.device)
    loss = w * (d * d).mean(dim=dims)
    mag = w.abs() * (2 * d.abs() * (out.abs() + terms) + d * d).mean(dim=dims)
    return loss, mag
