// C++ API of the ddpm operators: each function calls the operator through the
// PyTorch dispatcher, so it gets autograd, device dispatch and TorchScript
// visibility exactly as torch.ops.ddpm.* does from Python. The arguments are
// the schema's, in its order, with its defaults (op_args.h lists them):
//
//   at::Tensor q_sample(x_start, t, noise, sqrt_alphas_cumprod,
//                       sqrt_one_minus_alphas_cumprod, noise_offset = nullopt)
//       x_t = sqrt_alphas_cumprod[t]*x_start + sqrt_one_minus_alphas_cumprod[t]*noise
//       (noise + noise_offset[b, c] with a [B, C] offset)
//   (x_t, noise) q_sample_philox(x_start, t, seed, offset, <the two tables>)
//   at::Tensor philox_normal(input, seed, offset)
//   (mean, variance, log_variance) posterior_mean_variance(x_start, x_t, t,
//       posterior_mean_coef1, posterior_mean_coef2, posterior_variance,
//       posterior_log_variance_clipped)          of q(x_{t-1} | x_t, x_0)
//   For each step kind (p_sample, ddim_sample):
//     (sample, pred_xstart) <step>(model_output, x_t, t, noise, <6 tables>,
//         [eta = 0.0,] model_mean_type = "epsilon",
//         model_var_type = "fixed_small", clip_denoised = true,
//         clip_bound = nullopt, clip_rescale = false)
//       clip_bound [B]: pred_xstart clamped to [-s_b, s_b] (divided by s_b
//       too with clip_rescale: dynamic thresholding) instead of [-1, 1];
//       ddim_sample's last: use_clipped_model_output = true (false: the
//       direction term uses the model's own noise prediction, diffusers')
//     (sample, pred_xstart) <step>_philox(model_output, x_t, t, seed, offset, ...)
//     at::Tensor& <step>_out(sample, <the arguments of <step>>) and
//     <step>_philox_out(sample, ...): the sample alone, written into `sample`
//         (x_t's shape and dtype; may be x_t itself, so a sampling loop
//         allocates nothing per step); not differentiable
//     (grad_model_output, grad_x_t) <step>_backward(grad_sample?,
//         grad_pred_xstart?, model_output, x_t, t, noise?, <6 tables>, ...)
//   Backward operators: q_sample_backward(grad, t, <2 tables>) and
//   posterior_mean_variance_backward(grad_mean, t, coef1, coef2) ->
//   (gradient of the first input, of the second); scale_by_timestep(input, t,
//   table) = table[t[b]] * input[b], the one gradient written when only one
//   input needs it.
//   at::Tensor diffusion_mse(model_output, x_start, noise, t,
//       sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, weight = nullopt,
//       target = "epsilon", noise_offset = nullopt): the training loss per sample, weight[t] *
//       mean((model_output - target)^2), target 'epsilon' (noise), 'start_x'
//       (x_start) or 'v'; diffusion_mse_backward(grad, <the same>) ->
//       grad_model_output.
//
// In-kernel noise (csrc/ddpm/philox.h): the noise of element e (the flat
// index in the data) is the Philox-4x32-10 normal keyed by (seed, offset, e),
// bit for bit the same on CPU and CUDA for any thread count; offset is a
// multiple of 4: advance it by 4 per call for fresh noise. A 16-bit step
// computes with the float32 normal (never rounded before use).
//
// Link libddpm_ops (it registers the operators when loaded); with GNU ld
// make sure it is not dropped by --as-needed (the CMake package does this).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

#include "op_args.h"

// The C++ type of a schema type, and a parameter list from an argument
// list: ", T a, T b" then the first comma dropped.
#define DDPM_CPP_TYPE_Tensor const at::Tensor&
#define DDPM_CPP_TYPE_OptTensor const c10::optional<at::Tensor>&
#define DDPM_CPP_TYPE_OptGenerator const c10::optional<at::Generator>&
#define DDPM_CPP_TYPE_int int64_t
#define DDPM_CPP_TYPE_float double
#define DDPM_CPP_TYPE_str const std::string&
#define DDPM_CPP_TYPE_bool bool
#define DDPM_CPP_PARAM(type, name) , DDPM_CPP_TYPE_##type name
#define DDPM_CPP_DEFAULT_OptTensor(value) c10::nullopt
#define DDPM_CPP_DEFAULT_float(value) value
#define DDPM_CPP_DEFAULT_str(value) value
#define DDPM_CPP_DEFAULT_bool(value) value
#define DDPM_CPP_PARAM_DEFAULT(type, name, value) \
  , DDPM_CPP_TYPE_##type name = DDPM_CPP_DEFAULT_##type(value)
#define DDPM_CPP_PARAM_NO_DEFAULT(type, name, value) , DDPM_CPP_TYPE_##type name
#define DDPM_CPP_DROP_FIRST_(first, ...) __VA_ARGS__
#define DDPM_CPP_DROP_FIRST(...) DDPM_CPP_DROP_FIRST_(__VA_ARGS__)
#define DDPM_CPP_PARAMS(LIST) DDPM_CPP_DROP_FIRST(LIST(DDPM_CPP_PARAM))

// A step function's parameters: HEAD's (the arguments before the tables),
// the tables, the kind's own, the modes, the kind's trailing options (PARAM3:
// with defaults or without).
#define DDPM_CPP_STEP_PARAMS(HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, PARAM3)         \
  DDPM_CPP_DROP_FIRST(HEAD(DDPM_CPP_PARAM) TABLES(DDPM_CPP_PARAM) OWN_ARGS(PARAM3) \
                          DDPM_STEP_MODES(PARAM3) OWN_OPTIONS(PARAM3))

// A step kind's functions.
#define DDPM_CPP_STEP_DECLARATIONS(kind, step, TABLES, OWN_ARGS, OWN_OPTIONS)          \
  std::tuple<at::Tensor, at::Tensor> step(DDPM_CPP_STEP_PARAMS(                         \
      DDPM_STEP_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, DDPM_CPP_PARAM_DEFAULT));          \
  std::tuple<at::Tensor, at::Tensor> step##_philox(DDPM_CPP_STEP_PARAMS(                \
      DDPM_STEP_PHILOX_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, DDPM_CPP_PARAM_DEFAULT));   \
  at::Tensor& step##_out(at::Tensor& sample,                                            \
                         DDPM_CPP_STEP_PARAMS(DDPM_STEP_HEAD, TABLES, OWN_ARGS,         \
                                              OWN_OPTIONS, DDPM_CPP_PARAM_DEFAULT));    \
  at::Tensor& step##_philox_out(at::Tensor& sample,                                     \
                                DDPM_CPP_STEP_PARAMS(DDPM_STEP_PHILOX_HEAD, TABLES,     \
                                                     OWN_ARGS, OWN_OPTIONS,             \
                                                     DDPM_CPP_PARAM_DEFAULT));          \
  std::tuple<at::Tensor, at::Tensor> step##_philox(DDPM_CPP_STEP_PARAMS(                \
      DDPM_STEP_GENERATOR_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, DDPM_CPP_PARAM_DEFAULT)); \
  at::Tensor& step##_philox_out(at::Tensor& sample,                                     \
                                DDPM_CPP_STEP_PARAMS(DDPM_STEP_GENERATOR_HEAD, TABLES,  \
                                                     OWN_ARGS, OWN_OPTIONS,             \
                                                     DDPM_CPP_PARAM_DEFAULT));          \
  std::tuple<at::Tensor, at::Tensor> step##_backward(DDPM_CPP_STEP_PARAMS(              \
      DDPM_STEP_BACKWARD_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, DDPM_CPP_PARAM_DEFAULT));

namespace ddpm {

at::Tensor q_sample(DDPM_CPP_DROP_FIRST(DDPM_Q_SAMPLE_ARGS(DDPM_CPP_PARAM)
                                            DDPM_Q_SAMPLE_OPTIONS(DDPM_CPP_PARAM_DEFAULT)));
std::tuple<at::Tensor, at::Tensor> q_sample_philox(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_PHILOX_ARGS));
at::Tensor philox_normal(DDPM_CPP_PARAMS(DDPM_PHILOX_NORMAL_ARGS));
// the .generator overloads: the key drawn from a generator (graph-safe)
std::tuple<at::Tensor, at::Tensor> q_sample_philox(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_GENERATOR_ARGS));
at::Tensor philox_normal(DDPM_CPP_PARAMS(DDPM_PHILOX_NORMAL_GENERATOR_ARGS));
std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    DDPM_CPP_PARAMS(DDPM_POSTERIOR_ARGS));

DDPM_STEP_KINDS(DDPM_CPP_STEP_DECLARATIONS)

std::tuple<at::Tensor, at::Tensor> q_sample_backward(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_BACKWARD_ARGS));
std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward(
    DDPM_CPP_PARAMS(DDPM_POSTERIOR_BACKWARD_ARGS));
at::Tensor scale_by_timestep(DDPM_CPP_PARAMS(DDPM_SCALE_BY_TIMESTEP_ARGS));

at::Tensor diffusion_mse(DDPM_CPP_DROP_FIRST(DDPM_DIFFUSION_MSE_INPUTS(DDPM_CPP_PARAM)
                                                 DDPM_DIFFUSION_MSE_OPTIONS(DDPM_CPP_PARAM_DEFAULT)));
at::Tensor diffusion_mse_backward(DDPM_CPP_DROP_FIRST(
    DDPM_DIFFUSION_MSE_BACKWARD_GRAD(DDPM_CPP_PARAM) DDPM_DIFFUSION_MSE_INPUTS(DDPM_CPP_PARAM)
        DDPM_DIFFUSION_MSE_OPTIONS(DDPM_CPP_PARAM_DEFAULT)));

}  // namespace ddpm
