// C++ API of the ddpm operators: each function calls the operator through the
// PyTorch dispatcher, so it gets autograd, device dispatch and TorchScript
// visibility exactly as torch.ops.ddpm.* does from Python.
//
// Link libddpm_ops (it registers the operators when loaded); with GNU ld
// make sure it is not dropped by --as-needed (the CMake package does this).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

namespace ddpm {

// x_t = sqrt_alphas_cumprod[t]*x_start + sqrt_one_minus_alphas_cumprod[t]*noise
at::Tensor q_sample(const at::Tensor& x_start, const at::Tensor& t,
                    const at::Tensor& noise,
                    const at::Tensor& sqrt_alphas_cumprod,
                    const at::Tensor& sqrt_one_minus_alphas_cumprod);

// (mean, variance, log_variance) of q(x_{t-1} | x_t, x_0)
std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_variance,
    const at::Tensor& posterior_log_variance_clipped);

// One fused reverse step: (sample, pred_xstart). Mode names as in the schema.
std::tuple<at::Tensor, at::Tensor> p_sample(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

// One DDIM step (eta = 0: deterministic): (sample, pred_xstart). Passing
// alphas_cumprod_next as alphas_cumprod_prev with eta = 0 gives the reverse
// (ODE) step x_t -> x_{t+1} of ddim_reverse_sample.
std::tuple<at::Tensor, at::Tensor> ddim_sample(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

// The sample alone, written into `sample` (the sample_out overloads: no
// pred_xstart, a quarter less memory traffic). `sample` has x_t's shape and
// dtype and may be x_t itself, so a sampling loop allocates nothing per step.
// Not differentiable. Returns `sample`.
at::Tensor& p_sample_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, const at::Tensor& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

at::Tensor& ddim_sample_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, const at::Tensor& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

// Backward operators (what the autograd functions call); each is an operator
// of its own with CPU, CUDA and Meta kernels.
std::tuple<at::Tensor, at::Tensor> q_sample_backward(
    const at::Tensor& grad, const at::Tensor& t,
    const at::Tensor& sqrt_alphas_cumprod,
    const at::Tensor& sqrt_one_minus_alphas_cumprod);

std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward(
    const at::Tensor& grad_mean, const at::Tensor& t,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2);

// table[t[b]] * input[b] per sample: the one gradient a backward writes when
// only one of its inputs needs it.
at::Tensor scale_by_timestep(const at::Tensor& input, const at::Tensor& t,
                             const at::Tensor& table);

std::tuple<at::Tensor, at::Tensor> p_sample_backward(
    const c10::optional<at::Tensor>& grad_sample,
    const c10::optional<at::Tensor>& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const c10::optional<at::Tensor>& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised);

std::tuple<at::Tensor, at::Tensor> ddim_sample_backward(
    const c10::optional<at::Tensor>& grad_sample,
    const c10::optional<at::Tensor>& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const c10::optional<at::Tensor>& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised);

// ---- In-kernel noise (see csrc/ddpm/philox.h). The noise of element e (the
// flat index in the data) is the Philox-4x32-10 normal keyed by (seed,
// offset, e): bit for bit the same on CPU and CUDA, for any thread count.
// offset is a multiple of 4; advance it by 4 per call for fresh noise.

// A contiguous tensor shaped like input (same dtype and device) holding the
// noise that the operators below draw for (seed, offset).
at::Tensor philox_normal(const at::Tensor& input, int64_t seed, int64_t offset);

// q_sample with noise = philox_normal(x_start, seed, offset); returns
// (x_t, noise). Differentiable in x_start.
std::tuple<at::Tensor, at::Tensor> q_sample_philox(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sqrt_alphas_cumprod,
    const at::Tensor& sqrt_one_minus_alphas_cumprod);

// p_sample with noise = philox_normal(x_t, seed, offset), computed in float32
// in the kernel (never rounded to a 16-bit dtype before use).
std::tuple<at::Tensor, at::Tensor> p_sample_philox(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

// ddim_sample with noise = philox_normal(x_t, seed, offset).
std::tuple<at::Tensor, at::Tensor> ddim_sample_philox(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

// The sample alone, as p_sample_out / ddim_sample_out above.
at::Tensor& p_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, int64_t seed, int64_t offset,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

at::Tensor& ddim_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, int64_t seed, int64_t offset,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta = 0.0,
    const std::string& model_mean_type = "epsilon",
    const std::string& model_var_type = "fixed_small",
    bool clip_denoised = true);

}  // namespace ddpm
