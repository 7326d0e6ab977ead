// Per-sample coefficients: everything that depends on the timestep t alone.
//
// A kernel reads t[b] and a handful of schedule-table entries once per sample,
// forms these coefficients in double (the tables are float64 or float32), and
// rounds them to the compute type once. The per-element loops in
// elementwise.h then do nothing but multiply-adds. See docs/math.md for
// the formulas and their conventions (t = 0 is the first noising step).
#pragma once

#include <cmath>

#include "common.h"

namespace ddpm {

// How the model's output is turned into a prediction of x_0.
enum class MeanType : int32_t {
  kEpsilon = 0,    // output is the noise eps
  kStartX = 1,     // output is x_0 itself
  kPreviousX = 2,  // output is the posterior mean (x_{t-1} before noise)
  kV = 3,          // output is v = sqrt(abar)*eps - sqrt(1-abar)*x_0
};

// Which log-variance the reverse step uses.
enum class VarType : int32_t {
  kFixedSmall = 0,    // clipped log posterior variance
  kFixedLarge = 1,    // log beta_t, with posterior variance at t = 1 for t = 0
  kLearned = 2,       // second C channels of the output are log sigma^2
  kLearnedRange = 3,  // second C channels are v in [-1, 1] between the two fixed ones
};

DDPM_HD bool var_type_is_learned(VarType v) {
  return v == VarType::kLearned || v == VarType::kLearnedRange;
}

// Schedule tables, each of length num_timesteps, all of one dtype.

// A per-sample linear map's two tables, out = a[t]*u + b[t]*v: q_sample's
// sqrt_alphas_cumprod and sqrt_one_minus_alphas_cumprod (u = x_0, v =
// noise), the posterior mean's coef1 and coef2 (u = x_0, v = x_t).
template <typename table_t>
struct LinearTables {
  const table_t* a;
  const table_t* b;
};

// The kinds of reverse step. Each is a way of forming the per-sample
// coefficients of StepCoef below (step_coef); the element loops are the same
// for every kind. A kind adds its case here and its schema entry to
// step_kind_list (ops/operators.cpp); docs/design.md lists the rest.
enum class StepKind : int32_t {
  kDdpm = 0,   // ancestral (p_sample): the posterior mean, a fixed or learned variance
  kDdim = 1,   // DDIM (ddim_sample): eta scales its noise; a learned variance is ignored
  kEuler = 2,  // Euler in sigma space (euler_sample): eta scales the ancestral noise
  kDpmSolver = 3,  // DPM-Solver++ multistep (dpm_solver_sample): orders 1-3, ODE or SDE
  kNumStepKinds  // (not a kind: their count, for the tests that run every kind)
};

// A step's tables, in its operator's order (its entry in step_kind_list,
// ops/operators.cpp); a kind with fewer than six leaves the rest null. t
// indexes each of them.
//   DDPM and DDIM (training timesteps, x in the variance-preserving scale):
//     sqrt_recip_alphas_cumprod (1/sqrt(abar_t)), sqrt_recipm1_alphas_cumprod
//     (sqrt(1/abar_t - 1)), posterior_mean_coef1, posterior_mean_coef2, then
//     the kind's own two: DDPM's posterior_log_variance_clipped and betas;
//     DDIM's alphas_cumprod and the target's, abar_{t-1} for a step back
//     (abar_{t+1} for ddim_reverse_sample).
//   Euler (inference steps, x in the sigma scale, x = x_vp/sqrt(abar)):
//     sigmas (sigma_t) and sigmas_next (the sigma the step goes to).
//   DPM-Solver++ (inference steps, x in the variance-preserving scale):
//     sigmas and sigmas_next as Euler's, then sigmas_1 and sigmas_2, the
//     sigmas of the steps one and two before (read by orders 2 and 3).
enum StepTableIndex : int32_t {
  kSqrtRecipAlphasCumprod = 0,
  kSqrtRecipm1AlphasCumprod = 1,
  kPosteriorMeanCoef1 = 2,
  kPosteriorMeanCoef2 = 3,
  kOwnTable0 = 4,
  kOwnTable1 = 5,
  kSigmas = 0,
  kSigmasNext = 1,
  kSigmas1 = 2,
  kSigmas2 = 3,
};

template <typename table_t>
struct StepTables {
  const table_t* table[6];
  DDPM_HD double at(int32_t which, int64_t t) const {
    return static_cast<double>(table[which][t]);
  }
};

// The kind of step, what the model predicts, how the variance is formed;
// eta is DDIM's. clip_rescale: pred_x0 is clamped to the sample's bound s and
// divided by s (dynamic thresholding; see step_coef). model_noise (DDIM): the
// direction term uses the model's own noise prediction, from the unclipped
// x_0 (diffusers' use_clipped_model_output=False), not the one re-derived
// from the clipped pred_x0 (improved-diffusion's DDIM). DPM-Solver++'s:
// solver_order (1-3: this step's), heun (its second-order form, else
// midpoint), sde (sde-dpmsolver++, else dpmsolver++).
struct StepModes {
  StepKind kind;
  MeanType mean_type;
  VarType var_type;
  bool clip_denoised;
  double eta;
  bool clip_rescale;
  bool model_noise;
  int32_t solver_order = 1;
  bool heun = false;
  bool sde = false;
};

// Whether the kind's steps have a posterior mean for previous_x to invert
// (the sigma-space kinds step from x_0 directly).
DDPM_HD bool kind_has_posterior_mean(StepKind k) {
  return k == StepKind::kDdpm || k == StepKind::kDdim;
}

// How many earlier pred_x0 a step reads (DPM-Solver++ of order 2 and 3: the
// pred_xstart of the steps one and two before).
DDPM_HD int step_history_count(const StepModes& m) {
  return m.kind == StepKind::kDpmSolver ? m.solver_order - 1 : 0;
}

// The model output carries a variance half (2C channels).
DDPM_HD bool has_var_channels(const StepModes& m) {
  return var_type_is_learned(m.var_type);
}
// The step reads that variance half (a DDIM step ignores it).
DDPM_HD bool reads_var_channels(const StepModes& m) {
  return has_var_channels(m) && m.kind == StepKind::kDdpm;
}

// out = a*u + b*v (see LinearTables)
template <typename acc>
struct LinearCoef {
  acc a, b;
};

template <typename acc, typename table_t>
DDPM_HD LinearCoef<acc> linear_coef(const LinearTables<table_t>& tab, int64_t t) {
  return {static_cast<acc>(tab.a[t]), static_cast<acc>(tab.b[t])};
}

// One reverse step, written so every mode is the same few multiply-adds:
//   pred_x0 = clamp(A*x_t + Bm*out, lo, hi)  (per sample: [-s, s], [-1, 1]
//                                             with rescaling, or no clamp)
//   mean    = c1*pred_x0 + c2*x_t [+ c3*out] (mean = out for previous_x;
//                                             c3 is 0 but for model_noise)
//   sigma   = sigma_fixed                   (fixed variances)
//           = nz*exp(0.5*(lv_a + lv_b*v))   (learned: v is the variance half)
//   sample  = mean + sigma*noise
// nz is 0 at t = 0, so no noise is added there. A multistep step (DPM-Solver++)
// adds e1*h1 + e2*h2 to the mean, h1 and h2 the pred_x0 of earlier steps.
//
// A DDIM step has the same form. With eps = (r*x_t - pred_x0)/rm1 and
// d = sqrt(1 - abar_tgt - sigma^2),
//   sample = sqrt(abar_tgt)*pred_x0 + d*eps + nz*sigma*noise
//          = (sqrt(abar_tgt) - d/rm1)*pred_x0 + (d*r/rm1)*x_t + nz*sigma*noise,
// so c1 = sqrt(abar_tgt) - d/rm1, c2 = d*r/rm1, sigma_fixed = nz*sigma, where
// sigma = eta*sqrt((1-abar_tgt)/(1-abar))*sqrt(1-abar/abar_tgt). With the
// model's own noise (model_noise), eps = (r*x_t - x_0)/rm1 of the unclipped
// x_0 = A*x_t + Bm*out: c1 = sqrt(abar_tgt), c2 = d*(r - A)/rm1, c3 =
// -d*Bm/rm1 (for epsilon exactly c2 = 0, c3 = d: eps is the output itself).
template <typename acc>
struct StepCoef {
  acc A, Bm;            // pred_x0 = A*x_t + Bm*model_out
  acc c1, c2;           // posterior mean coefficients
  acc c3;               // the model output's own term in the mean (0 but DDIM's model_noise)
  acc e1, e2;           // earlier steps' pred_x0 terms in the mean (DPM-Solver++ only)
  acc sigma_fixed;      // nz*exp(0.5*log_variance) for fixed variances
  acc lv_a, lv_b;       // log_variance = lv_a + lv_b*v for learned variances
  acc nz;               // 1 where t > 0, else 0
  acc log_var_fixed;    // log_variance for fixed variances (for p_mean_variance)
  acc clip_lo, clip_hi;  // pred_x0's clamp: -inf and inf without clipping
};

// pred_x0 = A*x_t + Bm*model_out for the mean type; zero_snr: abar_t = 0 (a
// zero-terminal-SNR schedule's last step), where r and rm1 are both inf and
// the ratios sqrt(1 - abar) = rm1/r and 1/sqrt(1 - abar) = r/rm1 are their
// limits, 1, not inf/inf.
DDPM_HD void pred_x0_coef(MeanType mean_type, double r, double rm1, double c1,
                          double c2, bool zero_snr, double& A, double& Bm) {
  switch (mean_type) {
    case MeanType::kEpsilon:  // x_0 = x_t/sqrt(abar) - sqrt(1/abar - 1)*eps
      A = r;
      Bm = -rm1;
      return;
    case MeanType::kStartX:
      A = 0.0;
      Bm = 1.0;
      return;
    case MeanType::kPreviousX:  // invert mean = c1*x_0 + c2*x_t
      A = -c2 / c1;
      Bm = 1.0 / c1;
      return;
    case MeanType::kV:  // x_0 = sqrt(abar)*x_t - sqrt(1-abar)*v
      A = 1.0 / r;
      Bm = zero_snr ? -1.0 : -rm1 / r;
      return;
  }
}

// The DDIM step's mean and noise (see StepCoef).
template <typename acc, typename table_t>
DDPM_HD void ddim_coef(const StepTables<table_t>& tab, int64_t t,
                       const StepModes& modes, double r, double rm1,
                       bool zero_snr, double A, double Bm, StepCoef<acc>& k) {
  const double abar = tab.at(kOwnTable0, t);      // alphas_cumprod
  const double abar_tgt = tab.at(kOwnTable1, t);  // the target's
  // eta = 0 must give exactly 0, also for a reverse step (abar_tgt < abar)
  // where the square roots below are NaN.
  const double sigma =
      modes.eta == 0.0 ? 0.0
                       : modes.eta * ::sqrt((1.0 - abar_tgt) / (1.0 - abar)) *
                             ::sqrt(1.0 - abar / abar_tgt);
  // >= 0 in exact arithmetic, and 0 at eta = 1 where abar = 0 (zero
  // terminal SNR): rounding must not make it negative there (NaN).
  const double d_squared = 1.0 - abar_tgt - sigma * sigma;
  const double d = ::sqrt(d_squared > 0.0 ? d_squared : 0.0);
  k.sigma_fixed = static_cast<acc>(t != 0 ? sigma : 0.0);
  if (!modes.model_noise) {
    k.c1 = static_cast<acc>(::sqrt(abar_tgt) - d / rm1);
    k.c2 = static_cast<acc>(zero_snr ? d : d * r / rm1);
    return;
  }
  // eps of the unclipped x_0; at zero SNR (r, rm1 inf) eps = x_t but for
  // epsilon, whose eps is the output at every t
  double e_x = zero_snr ? 1.0 : (r - A) / rm1, e_out = zero_snr ? 0.0 : -Bm / rm1;
  if (modes.mean_type == MeanType::kEpsilon) {
    e_x = 0.0;
    e_out = 1.0;
  }
  k.c1 = static_cast<acc>(::sqrt(abar_tgt));
  k.c2 = static_cast<acc>(d * e_x);
  k.c3 = static_cast<acc>(d * e_out);
}

// The ancestral step's posterior mean and variance (see StepCoef).
template <typename acc, typename table_t>
DDPM_HD void ddpm_coef(const StepTables<table_t>& tab, int64_t t,
                       const StepModes& modes, double c1, double c2,
                       StepCoef<acc>& k) {
  // posterior_log_variance_clipped, betas
  const double min_log = tab.at(kOwnTable0, t);
  const double max_log = ::log(tab.at(kOwnTable1, t));
  double log_var = min_log;  // fixed_small
  if (modes.var_type == VarType::kFixedLarge) {
    // improved-diffusion: log(append(posterior_variance[1], betas[1:])); the
    // clipped table already holds log posterior_variance[1] at t = 0.
    log_var = t == 0 ? min_log : max_log;
  }
  double lv_a = 0.0, lv_b = 1.0;  // learned: log_variance = v
  if (modes.var_type == VarType::kLearnedRange) {
    // frac = (v+1)/2; lv = frac*max_log + (1-frac)*min_log
    lv_a = 0.5 * (max_log + min_log);
    lv_b = 0.5 * (max_log - min_log);
  }
  k.c1 = static_cast<acc>(c1);
  k.c2 = static_cast<acc>(c2);
  // (selected, as learned_sigma: log_var is -inf at t = 0 of a one-step schedule)
  k.sigma_fixed = static_cast<acc>(t != 0 ? ::exp(0.5 * log_var) : 0.0);
  k.lv_a = static_cast<acc>(lv_a);
  k.lv_b = static_cast<acc>(lv_b);
  k.log_var_fixed = static_cast<acc>(log_var);
}

// Below this, a rescaling bound is taken as this: dividing by a smaller one
// can overflow float32's A/s and Bm/s (inf - inf: NaN). For a smaller s the
// result is clamp(x_0 * 2^60, -1, 1): the sign of x_0 wherever |x_0| >=
// 2^-60, as clamp(x_0/s, -1, 1) is; within [-1, 1], never NaN.
constexpr double kMinRescaleBound = 0x1p-60;

// pred_x0's clamp for a sample whose clip bound is s (1 unless the call
// gives one). The bound is its magnitude |s| (a negative bound clamps as its
// absolute value); with rescaling at least kMinRescaleBound. Dynamic
// thresholding, clamp(x_0, -s, s)/s, is clamp(x_0/s, -1, 1): folded into A
// and Bm, so the element loop is the same.
template <typename acc>
DDPM_HD void clip_coef(const StepModes& modes, double s, double& A, double& Bm,
                       StepCoef<acc>& k) {
  const double inf = std::numeric_limits<double>::infinity();
  s = s < 0.0 ? -s : s;  // (NaN stays NaN)
  double lo = -inf, hi = inf;
  if (modes.clip_denoised && modes.clip_rescale) {
    s = s < kMinRescaleBound ? kMinRescaleBound : s;
    A /= s;
    Bm /= s;
    lo = -1.0;
    hi = 1.0;
  } else if (modes.clip_denoised) {
    lo = -s;
    hi = s;
  }
  // A NaN bound makes the sample's x_0 NaN, as clamping to NaN does in PyTorch
  // (the clamp's comparisons alone would let every value through).
  if (modes.clip_denoised && s != s) {
    A = s;
    Bm = s;
  }
  k.clip_lo = static_cast<acc>(lo);
  k.clip_hi = static_cast<acc>(hi);
}

// The Euler step in sigma space (Karras et al. 2022, Algorithm 2 without
// churn: diffusers' EulerDiscreteScheduler; with eta = 1 its
// EulerAncestralDiscreteScheduler). x is the sample in the sigma scale,
// sigma = sqrt(1/abar - 1) (the model is given x/sqrt(sigma^2 + 1)):
//   pred_x0    = x - sigma*eps                            (epsilon)
//              = x/(sigma^2 + 1) - sigma/sqrt(sigma^2 + 1)*v  (v)
//              = the output                               (start_x)
//   sigma_up   = min(sigma_next, eta*sqrt(sigma_next^2*(sigma^2 - sigma_next^2)/sigma^2))
//   sigma_down = sqrt(sigma_next^2 - sigma_up^2)
//   sample     = x + (x - pred_x0)/sigma*(sigma_down - sigma) + sigma_up*noise
//              = (sigma_down/sigma)*x + (1 - sigma_down/sigma)*pred_x0 + sigma_up*noise
// so c1 = 1 - sigma_down/sigma, c2 = sigma_down/sigma, sigma_fixed = sigma_up.
template <typename acc, typename table_t>
DDPM_HD void euler_coef(const StepTables<table_t>& tab, int64_t t, const StepModes& modes,
                        double& A, double& Bm, StepCoef<acc>& k) {
  const double sigma = tab.at(kSigmas, t);
  const double sigma_next = tab.at(kSigmasNext, t);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (modes.mean_type) {
    case MeanType::kEpsilon:
      A = 1.0;
      Bm = -sigma;
      break;
    case MeanType::kV:
      A = 1.0 / (sigma * sigma + 1.0);
      Bm = -sigma / ::sqrt(sigma * sigma + 1.0);
      break;
    case MeanType::kStartX:
      A = 0.0;
      Bm = 1.0;
      break;
    case MeanType::kPreviousX:  // (refused by the operators: no posterior mean here)
      A = nan;
      Bm = nan;
      break;
  }
  // eta = 0 must give exactly 0 (no noise), and sigma_next = 0 (the last
  // step) too; min keeps sigma_down real for eta > 1.
  double sigma_up = 0.0;
  if (modes.eta != 0.0 && sigma_next != 0.0) {
    const double full = ::sqrt(sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next) /
                               (sigma * sigma));
    sigma_up = modes.eta * full < sigma_next ? modes.eta * full : sigma_next;
  }
  const double down_squared = sigma_next * sigma_next - sigma_up * sigma_up;
  const double ratio = ::sqrt(down_squared > 0.0 ? down_squared : 0.0) / sigma;
  k.c1 = static_cast<acc>(1.0 - ratio);
  k.c2 = static_cast<acc>(ratio);
  k.sigma_fixed = static_cast<acc>(sigma_up);
}

// DPM-Solver++ multistep (Lu et al. 2022; diffusers' DPMSolverMultistepScheduler
// with algorithm_type dpmsolver++ or sde-dpmsolver++), x in the
// variance-preserving scale. A sigma s stands for alpha = 1/sqrt(s^2 + 1),
// sigma_vp = s*alpha and lambda = log(alpha) - log(sigma_vp) = -log(s); s0
// is this step's sigma, s_t the next, s1 and s2 the steps' before.
//   pred_x0 = (x - sigma_vp0*eps)/alpha0 = sqrt(s0^2 + 1)*x - s0*eps  (epsilon)
//           = alpha0*x - sigma_vp0*v (v),  the output (start_x)
//   h = lambda_t - lambda_s0, r0 = (lambda_s0 - lambda_s1)/h,
//   r1 = (lambda_s1 - lambda_s2)/h; D0 = m0 (this pred_x0), D1 and D2 the
//   divided differences of m0, m1, m2 (the earlier steps' pred_x0):
//   order 2: D1 = (m0 - m1)/r0; order 3: D1_0 = (m0 - m1)/r0,
//   D1_1 = (m1 - m2)/r1, D1 = D1_0 + r0/(r0 + r1)*(D1_0 - D1_1),
//   D2 = (D1_0 - D1_1)/(r0 + r1).
//   ODE: sample = (sigma_vp_t/sigma_vp0)*x - alpha_t*expm1(-h)*D0 + k1*D1 + k2*D2
//     k1 = -alpha_t*expm1(-h)/2 (midpoint), alpha_t*(expm1(-h)/h + 1) (heun, order 3)
//     k2 = -alpha_t*((expm1(-h) + h)/h^2 - 1/2)
//   SDE: sample = (sigma_vp_t/sigma_vp0)*e^-h*x + alpha_t*g*D0 + k1*D1 + k2*D2
//                 + sigma_vp_t*sqrt(g)*noise,  g = -expm1(-2h)
//     k1 = alpha_t*g/2 (midpoint), alpha_t*(g/(-2h) + 1) (heun, order 3)
//     k2 = alpha_t*((g - 2h)/(2h)^2 - 1/2)
// Expanded in m0, m1, m2, this is c1*m0 + e1*m1 + e2*m2: the element loop
// reads the earlier pred_x0 as it reads x.
template <typename acc, typename table_t>
DDPM_HD void dpm_solver_coef(const StepTables<table_t>& tab, int64_t t, const StepModes& modes,
                             double& A, double& Bm, StepCoef<acc>& k) {
  const double s0 = tab.at(kSigmas, t);
  const double s_t = tab.at(kSigmasNext, t);
  const double alpha0 = 1.0 / ::sqrt(s0 * s0 + 1.0);
  const double alpha_t = 1.0 / ::sqrt(s_t * s_t + 1.0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  switch (modes.mean_type) {
    case MeanType::kEpsilon:
      A = 1.0 / alpha0;
      Bm = -s0;
      break;
    case MeanType::kV:
      A = alpha0;
      Bm = -s0 * alpha0;
      break;
    case MeanType::kStartX:
      A = 0.0;
      Bm = 1.0;
      break;
    case MeanType::kPreviousX:  // (refused by the operators)
      A = nan;
      Bm = nan;
      break;
  }
  const double h = ::log(s0) - ::log(s_t);  // inf at s_t = 0 (the last step)
  // sigma_vp_t/sigma_vp0 = (s_t/s0)*(alpha_t/alpha0)
  const double ratio = s_t / s0 * (alpha_t / alpha0);
  double b0, k1 = 0.0, k2 = 0.0;
  if (modes.sde) {
    const double g = -::expm1(-2.0 * h);
    k.c2 = static_cast<acc>(ratio * ::exp(-h));
    b0 = alpha_t * g;
    k1 = modes.heun || modes.solver_order == 3 ? alpha_t * (g / (-2.0 * h) + 1.0)
                                               : 0.5 * alpha_t * g;
    k2 = alpha_t * ((g - 2.0 * h) / (4.0 * h * h) - 0.5);
    k.sigma_fixed = static_cast<acc>(s_t * alpha_t * ::sqrt(g));
  } else {
    const double em = ::expm1(-h);
    k.c2 = static_cast<acc>(ratio);
    b0 = -alpha_t * em;
    k1 = modes.heun || modes.solver_order == 3 ? alpha_t * (em / h + 1.0) : -0.5 * alpha_t * em;
    k2 = -alpha_t * ((em + h) / (h * h) - 0.5);
    k.sigma_fixed = acc(0);
  }
  double c1 = b0, e1 = 0.0, e2 = 0.0;
  if (modes.solver_order == 2) {
    const double r0 = (::log(tab.at(kSigmas1, t)) - ::log(s0)) / h;
    c1 = b0 + k1 / r0;
    e1 = -k1 / r0;
  } else if (modes.solver_order == 3) {
    const double l0 = -::log(s0), l1 = -::log(tab.at(kSigmas1, t)), l2 = -::log(tab.at(kSigmas2, t));
    const double r0 = (l0 - l1) / h, r1 = (l1 - l2) / h;
    const double q = r0 / (r0 + r1);
    // D1_0 and D1_1's coefficients, then each m's
    const double u = k1 * (1.0 + q) + k2 / (r0 + r1);
    const double w = -k1 * q - k2 / (r0 + r1);
    c1 = b0 + u / r0;
    e1 = -u / r0 + w / r1;
    e2 = -w / r1;
  }
  k.c1 = static_cast<acc>(c1);
  k.e1 = static_cast<acc>(e1);
  k.e2 = static_cast<acc>(e2);
}

// The coefficients of step t, formed in double and rounded once to acc;
// clip_bound: the sample's bound s (see clip_coef).
template <typename acc, typename table_t>
DDPM_HD StepCoef<acc> step_coef(const StepTables<table_t>& tab, int64_t t,
                                const StepModes& modes, double clip_bound = 1.0) {
  StepCoef<acc> k;
  k.lv_a = acc(0);
  k.lv_b = acc(1);
  k.log_var_fixed = acc(0);
  k.c3 = acc(0);
  k.e1 = acc(0);
  k.e2 = acc(0);
  k.nz = acc(0);  // (read by a learned variance only: the ancestral step's)
  double A = 0.0, Bm = 1.0;
  if (modes.kind == StepKind::kEuler) {
    euler_coef(tab, t, modes, A, Bm, k);
  } else if (modes.kind == StepKind::kDpmSolver) {
    dpm_solver_coef(tab, t, modes, A, Bm, k);
  } else {  // the variance-preserving kinds: their four shared tables
    const double r = tab.at(kSqrtRecipAlphasCumprod, t);
    const double rm1 = tab.at(kSqrtRecipm1AlphasCumprod, t);
    const double c1 = tab.at(kPosteriorMeanCoef1, t);
    const double c2 = tab.at(kPosteriorMeanCoef2, t);
    const bool zero_snr = r == std::numeric_limits<double>::infinity();
    pred_x0_coef(modes.mean_type, r, rm1, c1, c2, zero_snr, A, Bm);
    k.nz = static_cast<acc>(t != 0 ? 1.0 : 0.0);
    if (modes.kind == StepKind::kDdim) {  // (the model's own noise reads the unclipped A, Bm)
      ddim_coef(tab, t, modes, r, rm1, zero_snr, A, Bm, k);
    } else {
      ddpm_coef(tab, t, modes, c1, c2, k);
    }
  }
  clip_coef(modes, clip_bound, A, Bm, k);
  k.A = static_cast<acc>(A);
  k.Bm = static_cast<acc>(Bm);
  return k;
}

// Which inner loop a step runs (each kernel compiles both): the model's
// output is the mean itself (previous_x in an ancestral step).
DDPM_HD bool step_mean_is_output(const StepModes& m) {
  return m.mean_type == MeanType::kPreviousX && m.kind == StepKind::kDdpm;
}

// What the training loss (diffusion_mse) compares the model's output with:
// the model's prediction target, numbered as MeanType (previous_x, the
// posterior mean, is not a loss target here).
enum class LossTarget : int32_t {
  kEpsilon = 0,  // the noise
  kStartX = 1,   // x_0
  kV = 3,        // v = sqrt(abar)*noise - sqrt(1-abar)*x_0
};

// A loss's per-sample coefficients: target = a*noise - b*x_0 for v (a, b
// unused otherwise); scale = d loss_b / d out_i / (out_i - target_i), the
// backward's 2*grad_b*weight[t]/N.
template <typename acc>
struct LossCoef {
  acc a, b, scale;
};

template <typename acc, typename table_t>
DDPM_HD LossCoef<acc> loss_coef(const LinearTables<table_t>& tab, int64_t t, double scale) {
  return {static_cast<acc>(tab.a[t]), static_cast<acc>(tab.b[t]), static_cast<acc>(scale)};
}

// Coefficients that turn every output into NaN: used on the GPU for a
// timestep outside [0, T), where raising an error would need a host sync.
// Every coefficient struct above is a plain array of one type, acc.
template <typename acc, typename Coef>
DDPM_HD Coef nan_coef() {
  static_assert(sizeof(Coef) % sizeof(acc) == 0, "coefficients are acc only");
  Coef k;
  acc* fields = reinterpret_cast<acc*>(&k);
  for (unsigned i = 0; i < sizeof(Coef) / sizeof(acc); ++i) {
    fields[i] = std::numeric_limits<acc>::quiet_NaN();
  }
  return k;
}

}  // namespace ddpm
