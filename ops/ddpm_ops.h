// C++ API of the ddpm operators. Each function calls its operator through
// the PyTorch dispatcher, so it gets autograd, device dispatch and
// TorchScript visibility exactly as torch.ops.ddpm.* does from Python. The
// arguments are the schema's (ops/operators.cpp), in its order, with its
// defaults; tables are 1-D [T], float32 or float64, on the data's device; t
// is int64 [B].
//
// In-kernel noise (csrc/ddpm/philox.h): the noise of element e (the flat
// index in the data) is the Philox-4x32-10 normal keyed by (seed, offset, e),
// bit for bit the same on CPU and CUDA for any thread count; offset is a
// multiple of 4: advance it by 4 per call for fresh noise. The generator
// overloads take (seed, offset) from a generator when the call runs (a CUDA
// graph replays them anew). A 16-bit step computes with the float32 normal.
//
// Link libddpm_ops (it registers the operators when loaded); with GNU ld
// make sure it is not dropped by --as-needed (the CMake package does this).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace ddpm {

using TensorPair = std::tuple<at::Tensor, at::Tensor>;

// ---- Forward process and posterior ----

// x_t = sqrt_alphas_cumprod[t]*x_start + sqrt_one_minus_alphas_cumprod[t]*noise;
// with noise_offset [B, C] the noise is noise + noise_offset[b, c].
at::Tensor q_sample(const at::Tensor& x_start, const at::Tensor& t, const at::Tensor& noise,
                    const at::Tensor& sqrt_alphas_cumprod,
                    const at::Tensor& sqrt_one_minus_alphas_cumprod,
                    const c10::optional<at::Tensor>& noise_offset = c10::nullopt);

// (x_t, noise): q_sample with the noise drawn in the kernel from (seed, offset).
TensorPair q_sample_philox(const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
                           int64_t offset, const at::Tensor& sqrt_alphas_cumprod,
                           const at::Tensor& sqrt_one_minus_alphas_cumprod);

// (x_t, noise): the key drawn from generator (nullopt: the default one).
TensorPair q_sample_philox(const at::Tensor& x_start, const at::Tensor& t,
                           const c10::optional<at::Generator>& generator,
                           const at::Tensor& sqrt_alphas_cumprod,
                           const at::Tensor& sqrt_one_minus_alphas_cumprod);

// The noise alone: a tensor like input of the normals of (seed, offset).
at::Tensor philox_normal(const at::Tensor& input, int64_t seed, int64_t offset);

// The noise alone, the key drawn from generator.
at::Tensor philox_normal(const at::Tensor& input, const c10::optional<at::Generator>& generator);

// The noise alone, the key a tensor: int64 [2] holding (seed, offset), on the
// CPU, or on the data's CUDA device, where the kernel reads it when it runs
// (an exported program's input, a CUDA graph replayed with new keys).
at::Tensor philox_normal(const at::Tensor& input, const at::Tensor& key);

// (mean, variance, log_variance) of q(x_{t-1} | x_t, x_0); the variances are
// [B, 1, ...] views expanded to x's shape.
std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& posterior_mean_coef1, const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_variance, const at::Tensor& posterior_log_variance_clipped);

// ---- The ancestral step (improved-diffusion's p_sample) ----
// (sample, pred_xstart). model_mean_type: "epsilon", "start_x", "previous_x"
// or "v"; model_var_type: "fixed_small", "fixed_large", "learned" or
// "learned_range" (learned: model_output carries 2C channels). clip_bound
// [B]: pred_xstart clamped to [-|s_b|, |s_b|] instead of [-1, 1], and divided
// by the bound too with clip_rescale (dynamic thresholding).

TensorPair p_sample(const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
                    const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
                    const at::Tensor& sqrt_recipm1_alphas_cumprod,
                    const at::Tensor& posterior_mean_coef1,
                    const at::Tensor& posterior_mean_coef2,
                    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
                    const std::string& model_mean_type = "epsilon",
                    const std::string& model_var_type = "fixed_small", bool clip_denoised = true,
                    const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                    bool clip_rescale = false);

// p_sample with the noise drawn in the kernel from (seed, offset).
TensorPair p_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                           const at::Tensor& t, int64_t seed, int64_t offset,
                           const at::Tensor& sqrt_recip_alphas_cumprod,
                           const at::Tensor& sqrt_recipm1_alphas_cumprod,
                           const at::Tensor& posterior_mean_coef1,
                           const at::Tensor& posterior_mean_coef2,
                           const at::Tensor& posterior_log_variance_clipped,
                           const at::Tensor& betas, const std::string& model_mean_type = "epsilon",
                           const std::string& model_var_type = "fixed_small",
                           bool clip_denoised = true,
                           const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                           bool clip_rescale = false);

// p_sample with the key a tensor: int64 [2] holding (seed, offset), on the CPU
// or on the data's CUDA device (read by the kernel when it runs).
TensorPair p_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                           const at::Tensor& t, const at::Tensor& key,
                           const at::Tensor& sqrt_recip_alphas_cumprod,
                           const at::Tensor& sqrt_recipm1_alphas_cumprod,
                           const at::Tensor& posterior_mean_coef1,
                           const at::Tensor& posterior_mean_coef2,
                           const at::Tensor& posterior_log_variance_clipped,
                           const at::Tensor& betas, const std::string& model_mean_type = "epsilon",
                           const std::string& model_var_type = "fixed_small",
                           bool clip_denoised = true,
                           const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                           bool clip_rescale = false);

// p_sample with the key drawn from generator.
TensorPair p_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                           const at::Tensor& t, const c10::optional<at::Generator>& generator,
                           const at::Tensor& sqrt_recip_alphas_cumprod,
                           const at::Tensor& sqrt_recipm1_alphas_cumprod,
                           const at::Tensor& posterior_mean_coef1,
                           const at::Tensor& posterior_mean_coef2,
                           const at::Tensor& posterior_log_variance_clipped,
                           const at::Tensor& betas, const std::string& model_mean_type = "epsilon",
                           const std::string& model_var_type = "fixed_small",
                           bool clip_denoised = true,
                           const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                           bool clip_rescale = false);

// The sample alone, written into `sample` (x_t's shape and dtype; may be x_t
// itself, so a sampling loop allocates nothing per step); not differentiable.
at::Tensor& p_sample_out(at::Tensor& sample, const at::Tensor& model_output,
                         const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& noise,
                         const at::Tensor& sqrt_recip_alphas_cumprod,
                         const at::Tensor& sqrt_recipm1_alphas_cumprod,
                         const at::Tensor& posterior_mean_coef1,
                         const at::Tensor& posterior_mean_coef2,
                         const at::Tensor& posterior_log_variance_clipped,
                         const at::Tensor& betas, const std::string& model_mean_type = "epsilon",
                         const std::string& model_var_type = "fixed_small",
                         bool clip_denoised = true,
                         const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                         bool clip_rescale = false);

// p_sample_out with the noise drawn in the kernel from (seed, offset).
at::Tensor& p_sample_philox_out(at::Tensor& sample, const at::Tensor& model_output,
                                const at::Tensor& x_t, const at::Tensor& t, int64_t seed,
                                int64_t offset, const at::Tensor& sqrt_recip_alphas_cumprod,
                                const at::Tensor& sqrt_recipm1_alphas_cumprod,
                                const at::Tensor& posterior_mean_coef1,
                                const at::Tensor& posterior_mean_coef2,
                                const at::Tensor& posterior_log_variance_clipped,
                                const at::Tensor& betas,
                                const std::string& model_mean_type = "epsilon",
                                const std::string& model_var_type = "fixed_small",
                                bool clip_denoised = true,
                                const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                                bool clip_rescale = false);

// p_sample_out with the key drawn from generator.
at::Tensor& p_sample_philox_out(at::Tensor& sample, const at::Tensor& model_output,
                                const at::Tensor& x_t, const at::Tensor& t,
                                const c10::optional<at::Generator>& generator,
                                const at::Tensor& sqrt_recip_alphas_cumprod,
                                const at::Tensor& sqrt_recipm1_alphas_cumprod,
                                const at::Tensor& posterior_mean_coef1,
                                const at::Tensor& posterior_mean_coef2,
                                const at::Tensor& posterior_log_variance_clipped,
                                const at::Tensor& betas,
                                const std::string& model_mean_type = "epsilon",
                                const std::string& model_var_type = "fixed_small",
                                bool clip_denoised = true,
                                const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                                bool clip_rescale = false);

// (grad_model_output, grad_x_t) from the gradients of (sample, pred_xstart)
// (nullopt: zero); noise is read only by a learned variance's gradient.
TensorPair p_sample_backward(const c10::optional<at::Tensor>& grad_sample,
                             const c10::optional<at::Tensor>& grad_pred_xstart,
                             const at::Tensor& model_output, const at::Tensor& x_t,
                             const at::Tensor& t, const c10::optional<at::Tensor>& noise,
                             const at::Tensor& sqrt_recip_alphas_cumprod,
                             const at::Tensor& sqrt_recipm1_alphas_cumprod,
                             const at::Tensor& posterior_mean_coef1,
                             const at::Tensor& posterior_mean_coef2,
                             const at::Tensor& posterior_log_variance_clipped,
                             const at::Tensor& betas, const std::string& model_mean_type,
                             const std::string& model_var_type, bool clip_denoised,
                             const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                             bool clip_rescale = false);

// ---- The DDIM step ----
// As p_sample, with DDIM's tables (alphas_cumprod, the target's
// alphas_cumprod_prev), eta (0: deterministic) and use_clipped_model_output
// (false: the direction term uses the model's own noise prediction,
// diffusers' default).

TensorPair ddim_sample(const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
                       const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
                       const at::Tensor& sqrt_recipm1_alphas_cumprod,
                       const at::Tensor& posterior_mean_coef1,
                       const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
                       const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
                       const std::string& model_mean_type = "epsilon",
                       const std::string& model_var_type = "fixed_small",
                       bool clip_denoised = true,
                       const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                       bool clip_rescale = false, bool use_clipped_model_output = true);

// ddim_sample with the noise drawn in the kernel from (seed, offset).
TensorPair ddim_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                              const at::Tensor& t, int64_t seed, int64_t offset,
                              const at::Tensor& sqrt_recip_alphas_cumprod,
                              const at::Tensor& sqrt_recipm1_alphas_cumprod,
                              const at::Tensor& posterior_mean_coef1,
                              const at::Tensor& posterior_mean_coef2,
                              const at::Tensor& alphas_cumprod,
                              const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
                              const std::string& model_mean_type = "epsilon",
                              const std::string& model_var_type = "fixed_small",
                              bool clip_denoised = true,
                              const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                              bool clip_rescale = false, bool use_clipped_model_output = true);

// ddim_sample with the key a tensor (as p_sample_philox's).
TensorPair ddim_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                              const at::Tensor& t, const at::Tensor& key,
                              const at::Tensor& sqrt_recip_alphas_cumprod,
                              const at::Tensor& sqrt_recipm1_alphas_cumprod,
                              const at::Tensor& posterior_mean_coef1,
                              const at::Tensor& posterior_mean_coef2,
                              const at::Tensor& alphas_cumprod,
                              const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
                              const std::string& model_mean_type = "epsilon",
                              const std::string& model_var_type = "fixed_small",
                              bool clip_denoised = true,
                              const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                              bool clip_rescale = false, bool use_clipped_model_output = true);

// ddim_sample with the key drawn from generator.
TensorPair ddim_sample_philox(const at::Tensor& model_output, const at::Tensor& x_t,
                              const at::Tensor& t, const c10::optional<at::Generator>& generator,
                              const at::Tensor& sqrt_recip_alphas_cumprod,
                              const at::Tensor& sqrt_recipm1_alphas_cumprod,
                              const at::Tensor& posterior_mean_coef1,
                              const at::Tensor& posterior_mean_coef2,
                              const at::Tensor& alphas_cumprod,
                              const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
                              const std::string& model_mean_type = "epsilon",
                              const std::string& model_var_type = "fixed_small",
                              bool clip_denoised = true,
                              const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                              bool clip_rescale = false, bool use_clipped_model_output = true);

// The DDIM sample alone, written into `sample` (may be x_t itself).
at::Tensor& ddim_sample_out(at::Tensor& sample, const at::Tensor& model_output,
                            const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& noise,
                            const at::Tensor& sqrt_recip_alphas_cumprod,
                            const at::Tensor& sqrt_recipm1_alphas_cumprod,
                            const at::Tensor& posterior_mean_coef1,
                            const at::Tensor& posterior_mean_coef2,
                            const at::Tensor& alphas_cumprod,
                            const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
                            const std::string& model_mean_type = "epsilon",
                            const std::string& model_var_type = "fixed_small",
                            bool clip_denoised = true,
                            const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                            bool clip_rescale = false, bool use_clipped_model_output = true);

// ddim_sample_out with the noise drawn in the kernel from (seed, offset).
at::Tensor& ddim_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, int64_t seed, int64_t offset,
    const at::Tensor& sqrt_recip_alphas_cumprod, const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1, const at::Tensor& posterior_mean_coef2,
    const at::Tensor& alphas_cumprod, const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small", bool clip_denoised = true,
    const c10::optional<at::Tensor>& clip_bound = c10::nullopt, bool clip_rescale = false,
    bool use_clipped_model_output = true);

// ddim_sample_out with the key drawn from generator.
at::Tensor& ddim_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, const c10::optional<at::Generator>& generator,
    const at::Tensor& sqrt_recip_alphas_cumprod, const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1, const at::Tensor& posterior_mean_coef2,
    const at::Tensor& alphas_cumprod, const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small", bool clip_denoised = true,
    const c10::optional<at::Tensor>& clip_bound = c10::nullopt, bool clip_rescale = false,
    bool use_clipped_model_output = true);

// (grad_model_output, grad_x_t) of ddim_sample (as p_sample_backward).
TensorPair ddim_sample_backward(
    const c10::optional<at::Tensor>& grad_sample,
    const c10::optional<at::Tensor>& grad_pred_xstart, const at::Tensor& model_output,
    const at::Tensor& x_t, const at::Tensor& t, const c10::optional<at::Tensor>& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod, const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1, const at::Tensor& posterior_mean_coef2,
    const at::Tensor& alphas_cumprod, const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type, bool clip_denoised,
    const c10::optional<at::Tensor>& clip_bound = c10::nullopt, bool clip_rescale = false,
    bool use_clipped_model_output = true);

// ---- Steps in sigma space (diffusers' Euler and DPM-Solver++ schedulers) ----
// t indexes the inference steps: step t goes from sigmas[t] to sigmas_next[t]
// (tables of the chain's length; float64 for dpm_solver_sample). The
// .philox, .generator, .key and out= overloads are torch.ops.ddpm's.

// An Euler step of the sigma-scaled sample x_t; eta 0: the ODE step (noise
// not read), 1: the ancestral step. model_mean_type "epsilon", "v" or "start_x".
TensorPair euler_sample(const at::Tensor& model_output, const at::Tensor& x_t,
                        const at::Tensor& t, const at::Tensor& noise, const at::Tensor& sigmas,
                        const at::Tensor& sigmas_next, double eta = 0.0,
                        const std::string& model_mean_type = "epsilon",
                        const std::string& model_var_type = "fixed_small",
                        bool clip_denoised = false,
                        const c10::optional<at::Tensor>& clip_bound = c10::nullopt,
                        bool clip_rescale = false);

// A DPM-Solver++ multistep step of order solver_order (1-3) of the
// variance-preserving x_t; orders 2 and 3 read pred_xstart_1 and pred_xstart_2,
// the pred_xstart of the steps one and two before (sigmas_1[t], sigmas_2[t]).
// solver_type "midpoint" or "heun"; algorithm_type "dpmsolver++" (noise not
// read) or "sde-dpmsolver++".
TensorPair dpm_solver_sample(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& sigmas, const at::Tensor& sigmas_next,
    const at::Tensor& sigmas_1, const at::Tensor& sigmas_2,
    const c10::optional<at::Tensor>& pred_xstart_1 = c10::nullopt,
    const c10::optional<at::Tensor>& pred_xstart_2 = c10::nullopt, int64_t solver_order = 1,
    const std::string& solver_type = "midpoint",
    const std::string& algorithm_type = "dpmsolver++",
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small", bool clip_denoised = false,
    const c10::optional<at::Tensor>& clip_bound = c10::nullopt, bool clip_rescale = false);

// ---- Backward operators of the linear maps ----

// (sqrt_alphas_cumprod[t]*grad, sqrt_one_minus_alphas_cumprod[t]*grad).
TensorPair q_sample_backward(const at::Tensor& grad, const at::Tensor& t,
                             const at::Tensor& sqrt_alphas_cumprod,
                             const at::Tensor& sqrt_one_minus_alphas_cumprod);

// (posterior_mean_coef1[t]*grad_mean, posterior_mean_coef2[t]*grad_mean).
TensorPair posterior_mean_variance_backward(const at::Tensor& grad_mean, const at::Tensor& t,
                                            const at::Tensor& posterior_mean_coef1,
                                            const at::Tensor& posterior_mean_coef2);

// table[t[b]] * input[b]: the one gradient written when only one input needs it.
at::Tensor scale_by_timestep(const at::Tensor& input, const at::Tensor& t,
                             const at::Tensor& table);

// ---- The training loss ----

// Per sample, [B] (float32 for 16-bit data, float64 for float64):
// weight[t] * mean((model_output - target)^2), target "epsilon" (noise),
// "start_x" (x_start) or "v"; noise_offset as q_sample's.
at::Tensor diffusion_mse(const at::Tensor& model_output, const at::Tensor& x_start,
                         const at::Tensor& noise, const at::Tensor& t,
                         const at::Tensor& sqrt_alphas_cumprod,
                         const at::Tensor& sqrt_one_minus_alphas_cumprod,
                         const c10::optional<at::Tensor>& weight = c10::nullopt,
                         const std::string& target = "epsilon",
                         const c10::optional<at::Tensor>& noise_offset = c10::nullopt);

// model_output's gradient from the loss's (grad, [B]).
at::Tensor diffusion_mse_backward(const at::Tensor& grad, const at::Tensor& model_output,
                                  const at::Tensor& x_start, const at::Tensor& noise,
                                  const at::Tensor& t, const at::Tensor& sqrt_alphas_cumprod,
                                  const at::Tensor& sqrt_one_minus_alphas_cumprod,
                                  const c10::optional<at::Tensor>& weight = c10::nullopt,
                                  const std::string& target = "epsilon",
                                  const c10::optional<at::Tensor>& noise_offset = c10::nullopt);

}  // namespace ddpm
