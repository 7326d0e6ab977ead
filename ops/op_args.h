// Every ddpm operator's arguments, said once (macros only, no includes: the
// C++ API header ddpm_ops.h is installed with this one).
//
// A list is X(type, name) in schema order; type is a schema type spelled as
// a token (OptTensor is "Tensor?"). The step modes carry a default:
// X(type, name, default). From these lists come the schemas and the
// kernels' argument positions (op_table.h, op_table.cpp) and the C++ API
// (ddpm_ops.h, ddpm_ops.cpp).
#pragma once

#define DDPM_Q_SAMPLE_ARGS(X)                                     \
  X(Tensor, x_start) X(Tensor, t) X(Tensor, noise)                \
  X(Tensor, sqrt_alphas_cumprod) X(Tensor, sqrt_one_minus_alphas_cumprod)
// Offset noise: noise + noise_offset[b, c] (one value per sample and
// channel, [B, C]) is the noise, in one pass (lucidrains' and diffusers'
// noise_offset); diffusion_mse takes it too, for the target.
#define DDPM_Q_SAMPLE_OPTIONS(X) X(OptTensor, noise_offset, None)
#define DDPM_Q_SAMPLE_PHILOX_ARGS(X)                              \
  X(Tensor, x_start) X(Tensor, t) X(int, seed) X(int, offset)     \
  X(Tensor, sqrt_alphas_cumprod) X(Tensor, sqrt_one_minus_alphas_cumprod)
#define DDPM_PHILOX_NORMAL_ARGS(X) X(Tensor, input) X(int, seed) X(int, offset)
// The .generator overloads of the in-kernel-noise operators: (seed, offset)
// taken from a torch.Generator when the call runs (a CUDA generator's offset
// advanced by 4, as philox_seed_offset does; a CPU generator gives one seed
// draw and offset 0), so that in a CUDA graph each replay draws anew (the
// kernel reads them on the device). None: the device's default generator.
#define DDPM_Q_SAMPLE_GENERATOR_ARGS(X)                                     \
  X(Tensor, x_start) X(Tensor, t) X(OptGenerator, generator)                \
  X(Tensor, sqrt_alphas_cumprod) X(Tensor, sqrt_one_minus_alphas_cumprod)
#define DDPM_PHILOX_NORMAL_GENERATOR_ARGS(X) X(Tensor, input) X(OptGenerator, generator)
#define DDPM_Q_SAMPLE_BACKWARD_ARGS(X)                            \
  X(Tensor, grad) X(Tensor, t) X(Tensor, sqrt_alphas_cumprod)     \
  X(Tensor, sqrt_one_minus_alphas_cumprod)
// One input's gradient where a backward needs only one: out[b] =
// table[t[b]] * input[b] (q_sample's and the posterior's are this, with each
// of their two tables); one read and one write instead of two writes.
#define DDPM_SCALE_BY_TIMESTEP_ARGS(X) X(Tensor, input) X(Tensor, t) X(Tensor, table)
#define DDPM_POSTERIOR_ARGS(X)                                              \
  X(Tensor, x_start) X(Tensor, x_t) X(Tensor, t)                            \
  X(Tensor, posterior_mean_coef1) X(Tensor, posterior_mean_coef2)           \
  X(Tensor, posterior_variance) X(Tensor, posterior_log_variance_clipped)
#define DDPM_POSTERIOR_BACKWARD_ARGS(X)                                     \
  X(Tensor, grad_mean) X(Tensor, t) X(Tensor, posterior_mean_coef1)         \
  X(Tensor, posterior_mean_coef2)

// ---- The training loss: per sample, weight[t] * mean((model_output -
// target)^2) with the target of `target` ('epsilon', 'start_x' or 'v'); the
// tables give v's target. Its backward takes the loss's gradient first.
#define DDPM_DIFFUSION_MSE_INPUTS(X)                                        \
  X(Tensor, model_output) X(Tensor, x_start) X(Tensor, noise) X(Tensor, t) \
  X(Tensor, sqrt_alphas_cumprod) X(Tensor, sqrt_one_minus_alphas_cumprod)
#define DDPM_DIFFUSION_MSE_OPTIONS(X) \
  X(OptTensor, weight, None) X(str, target, "epsilon") X(OptTensor, noise_offset, None)
#define DDPM_DIFFUSION_MSE_BACKWARD_GRAD(X) X(Tensor, grad)

// ---- Steps. Every step kind is S(StepKind enumerator, operator name,
// its six tables, its own arguments, its own trailing options (after every
// step's modes: added later, so defaulted)); its operators are <name>,
// <name>_philox (noise drawn in the kernel from seed and offset), each
// functional, .out and .sample_out, and <name>_backward. Adding a kind: a
// line here and its coefficients in csrc/ddpm/coefficients.h.
#define DDPM_STEP_KINDS(S)                                                  \
  S(kDdpm, p_sample, DDPM_P_SAMPLE_TABLES, DDPM_NO_ARGS, DDPM_NO_ARGS)      \
  S(kDdim, ddim_sample, DDPM_DDIM_SAMPLE_TABLES, DDPM_DDIM_SAMPLE_ARGS,     \
    DDPM_DDIM_SAMPLE_OPTIONS)

// The first four tables are every step's (pred_xstart and the posterior
// mean); the last two are the kind's own (StepTables::kind_tables).
#define DDPM_STEP_COMMON_TABLES(X)                                          \
  X(Tensor, sqrt_recip_alphas_cumprod) X(Tensor, sqrt_recipm1_alphas_cumprod) \
  X(Tensor, posterior_mean_coef1) X(Tensor, posterior_mean_coef2)
#define DDPM_P_SAMPLE_TABLES(X)                                             \
  DDPM_STEP_COMMON_TABLES(X)                                                \
  X(Tensor, posterior_log_variance_clipped) X(Tensor, betas)
// DDIM: passing alphas_cumprod_next as alphas_cumprod_prev with eta = 0
// gives the reverse (ODE) step x_t -> x_{t+1} of ddim_reverse_sample.
#define DDPM_DDIM_SAMPLE_TABLES(X)                                          \
  DDPM_STEP_COMMON_TABLES(X) X(Tensor, alphas_cumprod) X(Tensor, alphas_cumprod_prev)

// A kind's own arguments and every step's modes, X(type, name, default).
#define DDPM_NO_ARGS(X)
#define DDPM_DDIM_SAMPLE_ARGS(X) X(float, eta, 0.0)  // 0: deterministic
// use_clipped_model_output: the direction term's noise prediction is the one
// re-derived from the clipped pred_xstart (true: improved-diffusion's DDIM,
// diffusers' use_clipped_model_output=True) or the model's own, from the
// unclipped x_0 (false: diffusers' default). The same step without clipping.
#define DDPM_DDIM_SAMPLE_OPTIONS(X) X(bool, use_clipped_model_output, true)
#define DDPM_STEP_MODES(X) DDPM_STEP_BASE_MODES(X) DDPM_STEP_CLIP_OPTIONS(X)
#define DDPM_STEP_BASE_MODES(X)                                             \
  X(str, model_mean_type, "epsilon") X(str, model_var_type, "fixed_small")  \
  X(bool, clip_denoised, true)
// clip_bound [B] (with clip_denoised): pred_xstart is clamped to
// [-clip_bound[b], clip_bound[b]] instead of [-1, 1]; clip_rescale also
// divides it by clip_bound[b] (Imagen's dynamic thresholding, whose bound
// is a quantile of |x_0| computed before the step). Still one pass. Trailing
// and defaulted in every step operator, the backward ones too, so that calls
// written before them are unchanged.
#define DDPM_STEP_CLIP_OPTIONS(X) X(OptTensor, clip_bound, None) X(bool, clip_rescale, false)

// The arguments before the tables: with a noise tensor, with Philox noise,
// and the backward operator's.
#define DDPM_STEP_INPUTS(X) X(Tensor, model_output) X(Tensor, x_t) X(Tensor, t)
#define DDPM_STEP_NOISE(X) X(Tensor, noise)
#define DDPM_STEP_PHILOX_NOISE(X) X(int, seed) X(int, offset)
#define DDPM_STEP_GENERATOR_NOISE(X) X(OptGenerator, generator)
#define DDPM_STEP_BACKWARD_GRADS(X) X(OptTensor, grad_sample) X(OptTensor, grad_pred_xstart)
#define DDPM_STEP_BACKWARD_NOISE(X) X(OptTensor, noise)
#define DDPM_STEP_HEAD(X) DDPM_STEP_INPUTS(X) DDPM_STEP_NOISE(X)
#define DDPM_STEP_PHILOX_HEAD(X) DDPM_STEP_INPUTS(X) DDPM_STEP_PHILOX_NOISE(X)
#define DDPM_STEP_GENERATOR_HEAD(X) DDPM_STEP_INPUTS(X) DDPM_STEP_GENERATOR_NOISE(X)
#define DDPM_STEP_BACKWARD_HEAD(X) \
  DDPM_STEP_BACKWARD_GRADS(X) DDPM_STEP_INPUTS(X) DDPM_STEP_BACKWARD_NOISE(X)
