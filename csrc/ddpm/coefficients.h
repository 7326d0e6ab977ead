// Per-sample coefficients: everything that depends on the timestep t alone.
//
// A kernel reads t[b] and a handful of schedule-table entries once per sample,
// forms these coefficients in double (the tables are float64 or float32), and
// rounds them to the compute type once. The per-element loops in
// elementwise.h then do nothing but multiply-adds. See ../shared/MATH.md for
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
template <typename table_t>
struct QSampleTables {
  const table_t* sqrt_alphas_cumprod;
  const table_t* sqrt_one_minus_alphas_cumprod;
};

template <typename table_t>
struct PosteriorTables {
  const table_t* posterior_mean_coef1;
  const table_t* posterior_mean_coef2;
  const table_t* posterior_variance;
  const table_t* posterior_log_variance_clipped;
};

// Tables of a reverse step. p_sample reads the first six; a DDIM step reads
// the first four and the last two (alphas_cumprod_target is abar_{t-1} for a
// step back, abar_{t+1} for ddim_reverse_sample). Unused ones are null.
template <typename table_t>
struct PSampleTables {
  const table_t* sqrt_recip_alphas_cumprod;    // 1/sqrt(abar_t)
  const table_t* sqrt_recipm1_alphas_cumprod;  // sqrt(1/abar_t - 1)
  const table_t* posterior_mean_coef1;
  const table_t* posterior_mean_coef2;
  const table_t* posterior_log_variance_clipped;
  const table_t* betas;
  const table_t* alphas_cumprod;
  const table_t* alphas_cumprod_target;
};

// What the model predicts, how the step's variance is formed, and whether
// this is a DDIM step (eta scales its noise) rather than an ancestral one.
struct StepModes {
  MeanType mean_type;
  VarType var_type;
  bool clip_denoised;
  bool ddim;
  double eta;
};

// The model output carries a variance half (2C channels).
DDPM_HD bool has_var_channels(const StepModes& m) {
  return var_type_is_learned(m.var_type);
}
// The step reads that variance half (a DDIM step ignores it).
DDPM_HD bool reads_var_channels(const StepModes& m) {
  return has_var_channels(m) && !m.ddim;
}

// x_t = a*x_0 + b*noise
template <typename acc>
struct QSampleCoef {
  acc a, b;
};

template <typename acc, typename table_t>
DDPM_HD QSampleCoef<acc> q_sample_coef(const QSampleTables<table_t>& tab,
                                       int64_t t) {
  return {static_cast<acc>(tab.sqrt_alphas_cumprod[t]),
          static_cast<acc>(tab.sqrt_one_minus_alphas_cumprod[t])};
}

// mean = c1*x_0 + c2*x_t
template <typename acc>
struct PosteriorCoef {
  acc c1, c2;
};

template <typename acc, typename table_t>
DDPM_HD PosteriorCoef<acc> posterior_coef(const PosteriorTables<table_t>& tab,
                                          int64_t t) {
  return {static_cast<acc>(tab.posterior_mean_coef1[t]),
          static_cast<acc>(tab.posterior_mean_coef2[t])};
}

// One reverse step, written so every mode is the same few multiply-adds:
//   pred_x0 = clamp(A*x_t + Bm*out, lo, hi)
//   mean    = c1*pred_x0 + c2*x_t          (mean = out for previous_x)
//   sigma   = sigma_fixed                   (fixed variances)
//           = nz*exp(0.5*(lv_a + lv_b*v))   (learned: v is the variance half)
//   sample  = mean + sigma*noise
// nz is 0 at t = 0, so no noise is added there.
//
// A DDIM step has the same form. With eps = (r*x_t - pred_x0)/rm1 and
// d = sqrt(1 - abar_tgt - sigma^2),
//   sample = sqrt(abar_tgt)*pred_x0 + d*eps + nz*sigma*noise
//          = (sqrt(abar_tgt) - d/rm1)*pred_x0 + (d*r/rm1)*x_t + nz*sigma*noise,
// so c1 = sqrt(abar_tgt) - d/rm1, c2 = d*r/rm1, sigma_fixed = nz*sigma, where
// sigma = eta*sqrt((1-abar_tgt)/(1-abar))*sqrt(1-abar/abar_tgt).
template <typename acc>
struct PSampleCoef {
  acc A, Bm;            // pred_x0 = A*x_t + Bm*model_out
  acc c1, c2;           // posterior mean coefficients
  acc sigma_fixed;      // nz*exp(0.5*log_variance) for fixed variances
  acc lv_a, lv_b;       // log_variance = lv_a + lv_b*v for learned variances
  acc nz;               // 1 where t > 0, else 0
  acc log_var_fixed;    // log_variance for fixed variances (for p_mean_variance)
};

template <typename acc, typename table_t>
DDPM_HD PSampleCoef<acc> p_sample_coef(const PSampleTables<table_t>& tab,
                                       int64_t t, const StepModes& modes) {
  const MeanType mean_type = modes.mean_type;
  const VarType var_type = modes.var_type;
  const double r = static_cast<double>(tab.sqrt_recip_alphas_cumprod[t]);
  const double rm1 = static_cast<double>(tab.sqrt_recipm1_alphas_cumprod[t]);
  const double c1 = static_cast<double>(tab.posterior_mean_coef1[t]);
  const double c2 = static_cast<double>(tab.posterior_mean_coef2[t]);
  // abar_t = 0 (a zero-terminal-SNR schedule's last step): r and rm1 are
  // both inf, and the ratios below, sqrt(1 - abar) = rm1/r and
  // 1/sqrt(1 - abar) = r/rm1, are their limits, 1, not inf/inf.
  const bool zero_snr = r == std::numeric_limits<double>::infinity();

  double A = 0.0, Bm = 1.0;
  switch (mean_type) {
    case MeanType::kEpsilon:  // x_0 = x_t/sqrt(abar) - sqrt(1/abar - 1)*eps
      A = r;
      Bm = -rm1;
      break;
    case MeanType::kStartX:
      A = 0.0;
      Bm = 1.0;
      break;
    case MeanType::kPreviousX:  // invert mean = c1*x_0 + c2*x_t
      A = -c2 / c1;
      Bm = 1.0 / c1;
      break;
    case MeanType::kV:  // x_0 = sqrt(abar)*x_t - sqrt(1-abar)*v
      A = 1.0 / r;
      Bm = zero_snr ? -1.0 : -rm1 / r;
      break;
  }

  const double nz = t != 0 ? 1.0 : 0.0;
  PSampleCoef<acc> k;
  k.A = static_cast<acc>(A);
  k.Bm = static_cast<acc>(Bm);
  k.nz = static_cast<acc>(nz);
  k.lv_a = acc(0);
  k.lv_b = acc(1);
  k.log_var_fixed = acc(0);

  if (modes.ddim) {
    const double abar = static_cast<double>(tab.alphas_cumprod[t]);
    const double abar_tgt = static_cast<double>(tab.alphas_cumprod_target[t]);
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
    k.c1 = static_cast<acc>(::sqrt(abar_tgt) - d / rm1);
    k.c2 = static_cast<acc>(zero_snr ? d : d * r / rm1);
    k.sigma_fixed = static_cast<acc>(nz * sigma);
    return k;
  }

  const double min_log =
      static_cast<double>(tab.posterior_log_variance_clipped[t]);
  const double max_log = ::log(static_cast<double>(tab.betas[t]));
  double log_var = min_log;  // fixed_small
  if (var_type == VarType::kFixedLarge) {
    // improved-diffusion: log(append(posterior_variance[1], betas[1:])); the
    // clipped table already holds log posterior_variance[1] at t = 0.
    log_var = t == 0 ? min_log : max_log;
  }
  double lv_a = 0.0, lv_b = 1.0;  // learned: log_variance = v
  if (var_type == VarType::kLearnedRange) {
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
  return k;
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
