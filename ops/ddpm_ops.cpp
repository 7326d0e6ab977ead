// The C++ API (ddpm_ops.h): each function calls its operator through a typed
// dispatcher handle, found once (the arguments in schema order: an out=
// tensor comes last there).
#include "ddpm_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace ddpm {
namespace {

// The C++ types of the schemas' argument types.
using T = const at::Tensor&;
using OptT = const c10::optional<at::Tensor>&;
using OptGen = const c10::optional<at::Generator>&;
using Str = c10::string_view;
using Out = at::Tensor&;

template <typename Signature>
c10::TypedOperatorHandle<Signature> find(const char* name, const char* overload = "") {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload).typed<Signature>();
}

// A step's signature: its head (model_output, x_t, t and the noise source),
// its six tables, then its modes and options.
template <typename Result, typename... Head>
using PSample = Result(T, T, T, Head..., T, T, T, T, T, T, Str, Str, bool, OptT, bool);
template <typename Result, typename... Head>
using DdimSample =
    Result(T, T, T, Head..., T, T, T, T, T, T, double, Str, Str, bool, OptT, bool, bool);

}  // namespace

at::Tensor q_sample(T x_start, T t, T noise, T sqrt_alphas_cumprod,
                    T sqrt_one_minus_alphas_cumprod, OptT noise_offset) {
  static const auto op = find<at::Tensor(T, T, T, T, T, OptT)>("ddpm::q_sample");
  return op.call(x_start, t, noise, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
                 noise_offset);
}

TensorPair q_sample_philox(T x_start, T t, int64_t seed, int64_t offset, T sqrt_alphas_cumprod,
                           T sqrt_one_minus_alphas_cumprod) {
  static const auto op =
      find<TensorPair(T, T, int64_t, int64_t, T, T)>("ddpm::q_sample_philox");
  return op.call(x_start, t, seed, offset, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod);
}

TensorPair q_sample_philox(T x_start, T t, OptGen generator, T sqrt_alphas_cumprod,
                           T sqrt_one_minus_alphas_cumprod) {
  static const auto op =
      find<TensorPair(T, T, OptGen, T, T)>("ddpm::q_sample_philox", "generator");
  return op.call(x_start, t, generator, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod);
}

at::Tensor philox_normal(T input, int64_t seed, int64_t offset) {
  static const auto op = find<at::Tensor(T, int64_t, int64_t)>("ddpm::philox_normal");
  return op.call(input, seed, offset);
}

at::Tensor philox_normal(T input, OptGen generator) {
  static const auto op = find<at::Tensor(T, OptGen)>("ddpm::philox_normal", "generator");
  return op.call(input, generator);
}

at::Tensor philox_normal(T input, T key) {
  static const auto op = find<at::Tensor(T, T)>("ddpm::philox_normal", "key");
  return op.call(input, key);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    T x_start, T x_t, T t, T posterior_mean_coef1, T posterior_mean_coef2, T posterior_variance,
    T posterior_log_variance_clipped) {
  static const auto op = find<std::tuple<at::Tensor, at::Tensor, at::Tensor>(T, T, T, T, T, T, T)>(
      "ddpm::posterior_mean_variance");
  return op.call(x_start, x_t, t, posterior_mean_coef1, posterior_mean_coef2, posterior_variance,
                 posterior_log_variance_clipped);
}

TensorPair p_sample(T model_output, T x_t, T t, T noise, T sqrt_recip_alphas_cumprod,
                    T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                    T posterior_mean_coef2, T posterior_log_variance_clipped, T betas,
                    const std::string& model_mean_type, const std::string& model_var_type,
                    bool clip_denoised, OptT clip_bound, bool clip_rescale) {
  static const auto op = find<PSample<TensorPair, T>>("ddpm::p_sample");
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale);
}

TensorPair p_sample_philox(T model_output, T x_t, T t, int64_t seed, int64_t offset,
                           T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                           T posterior_mean_coef1, T posterior_mean_coef2,
                           T posterior_log_variance_clipped, T betas,
                           const std::string& model_mean_type,
                           const std::string& model_var_type, bool clip_denoised,
                           OptT clip_bound, bool clip_rescale) {
  static const auto op =
      find<PSample<TensorPair, int64_t, int64_t>>("ddpm::p_sample_philox");
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale);
}

TensorPair p_sample_philox(T model_output, T x_t, T t, T key, T sqrt_recip_alphas_cumprod,
                           T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                           T posterior_mean_coef2, T posterior_log_variance_clipped, T betas,
                           const std::string& model_mean_type,
                           const std::string& model_var_type, bool clip_denoised,
                           OptT clip_bound, bool clip_rescale) {
  static const auto op = find<PSample<TensorPair, T>>("ddpm::p_sample_philox", "key");
  return op.call(model_output, x_t, t, key, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale);
}

TensorPair p_sample_philox(T model_output, T x_t, T t, OptGen generator,
                           T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                           T posterior_mean_coef1, T posterior_mean_coef2,
                           T posterior_log_variance_clipped, T betas,
                           const std::string& model_mean_type,
                           const std::string& model_var_type, bool clip_denoised,
                           OptT clip_bound, bool clip_rescale) {
  static const auto op =
      find<PSample<TensorPair, OptGen>>("ddpm::p_sample_philox", "generator");
  return op.call(model_output, x_t, t, generator, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale);
}

// (the sample_out overloads' signatures end with the output)
template <typename... Head>
using PSampleOut = Out(T, T, T, Head..., T, T, T, T, T, T, Str, Str, bool, OptT, bool, Out);

at::Tensor& p_sample_out(at::Tensor& sample, T model_output, T x_t, T t, T noise,
                         T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                         T posterior_mean_coef1, T posterior_mean_coef2,
                         T posterior_log_variance_clipped, T betas,
                         const std::string& model_mean_type, const std::string& model_var_type,
                         bool clip_denoised, OptT clip_bound, bool clip_rescale) {
  static const auto op = find<PSampleOut<T>>("ddpm::p_sample", "sample_out");
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, sample);
}

at::Tensor& p_sample_philox_out(at::Tensor& sample, T model_output, T x_t, T t, int64_t seed,
                                int64_t offset, T sqrt_recip_alphas_cumprod,
                                T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                                T posterior_mean_coef2, T posterior_log_variance_clipped,
                                T betas, const std::string& model_mean_type,
                                const std::string& model_var_type, bool clip_denoised,
                                OptT clip_bound, bool clip_rescale) {
  static const auto op =
      find<PSampleOut<int64_t, int64_t>>("ddpm::p_sample_philox", "sample_out");
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, sample);
}

at::Tensor& p_sample_philox_out(at::Tensor& sample, T model_output, T x_t, T t,
                                OptGen generator, T sqrt_recip_alphas_cumprod,
                                T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                                T posterior_mean_coef2, T posterior_log_variance_clipped,
                                T betas, const std::string& model_mean_type,
                                const std::string& model_var_type, bool clip_denoised,
                                OptT clip_bound, bool clip_rescale) {
  static const auto op =
      find<PSampleOut<OptGen>>("ddpm::p_sample_philox", "generator_sample_out");
  return op.call(model_output, x_t, t, generator, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, sample);
}

TensorPair p_sample_backward(OptT grad_sample, OptT grad_pred_xstart, T model_output, T x_t,
                             T t, OptT noise, T sqrt_recip_alphas_cumprod,
                             T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                             T posterior_mean_coef2, T posterior_log_variance_clipped, T betas,
                             const std::string& model_mean_type,
                             const std::string& model_var_type, bool clip_denoised,
                             OptT clip_bound, bool clip_rescale) {
  static const auto op = find<TensorPair(OptT, OptT, T, T, T, OptT, T, T, T, T, T, T, Str, Str,
                                         bool, OptT, bool)>("ddpm::p_sample_backward");
  return op.call(grad_sample, grad_pred_xstart, model_output, x_t, t, noise,
                 sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, posterior_log_variance_clipped, betas, model_mean_type,
                 model_var_type, clip_denoised, clip_bound, clip_rescale);
}

TensorPair ddim_sample(T model_output, T x_t, T t, T noise, T sqrt_recip_alphas_cumprod,
                       T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                       T posterior_mean_coef2, T alphas_cumprod, T alphas_cumprod_prev,
                       double eta, const std::string& model_mean_type,
                       const std::string& model_var_type, bool clip_denoised, OptT clip_bound,
                       bool clip_rescale, bool use_clipped_model_output) {
  static const auto op = find<DdimSample<TensorPair, T>>("ddpm::ddim_sample");
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output);
}

TensorPair ddim_sample_philox(T model_output, T x_t, T t, int64_t seed, int64_t offset,
                              T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                              T posterior_mean_coef1, T posterior_mean_coef2, T alphas_cumprod,
                              T alphas_cumprod_prev, double eta,
                              const std::string& model_mean_type,
                              const std::string& model_var_type, bool clip_denoised,
                              OptT clip_bound, bool clip_rescale,
                              bool use_clipped_model_output) {
  static const auto op =
      find<DdimSample<TensorPair, int64_t, int64_t>>("ddpm::ddim_sample_philox");
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output);
}

TensorPair ddim_sample_philox(T model_output, T x_t, T t, T key, T sqrt_recip_alphas_cumprod,
                              T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                              T posterior_mean_coef2, T alphas_cumprod, T alphas_cumprod_prev,
                              double eta, const std::string& model_mean_type,
                              const std::string& model_var_type, bool clip_denoised,
                              OptT clip_bound, bool clip_rescale,
                              bool use_clipped_model_output) {
  static const auto op = find<DdimSample<TensorPair, T>>("ddpm::ddim_sample_philox", "key");
  return op.call(model_output, x_t, t, key, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output);
}

TensorPair ddim_sample_philox(T model_output, T x_t, T t, OptGen generator,
                              T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                              T posterior_mean_coef1, T posterior_mean_coef2, T alphas_cumprod,
                              T alphas_cumprod_prev, double eta,
                              const std::string& model_mean_type,
                              const std::string& model_var_type, bool clip_denoised,
                              OptT clip_bound, bool clip_rescale,
                              bool use_clipped_model_output) {
  static const auto op =
      find<DdimSample<TensorPair, OptGen>>("ddpm::ddim_sample_philox", "generator");
  return op.call(model_output, x_t, t, generator, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output);
}

template <typename... Head>
using DdimSampleOut =
    Out(T, T, T, Head..., T, T, T, T, T, T, double, Str, Str, bool, OptT, bool, bool, Out);

at::Tensor& ddim_sample_out(at::Tensor& sample, T model_output, T x_t, T t, T noise,
                            T sqrt_recip_alphas_cumprod, T sqrt_recipm1_alphas_cumprod,
                            T posterior_mean_coef1, T posterior_mean_coef2, T alphas_cumprod,
                            T alphas_cumprod_prev, double eta,
                            const std::string& model_mean_type,
                            const std::string& model_var_type, bool clip_denoised,
                            OptT clip_bound, bool clip_rescale, bool use_clipped_model_output) {
  static const auto op = find<DdimSampleOut<T>>("ddpm::ddim_sample", "sample_out");
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output, sample);
}

at::Tensor& ddim_sample_philox_out(at::Tensor& sample, T model_output, T x_t, T t, int64_t seed,
                                   int64_t offset, T sqrt_recip_alphas_cumprod,
                                   T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                                   T posterior_mean_coef2, T alphas_cumprod,
                                   T alphas_cumprod_prev, double eta,
                                   const std::string& model_mean_type,
                                   const std::string& model_var_type, bool clip_denoised,
                                   OptT clip_bound, bool clip_rescale,
                                   bool use_clipped_model_output) {
  static const auto op =
      find<DdimSampleOut<int64_t, int64_t>>("ddpm::ddim_sample_philox", "sample_out");
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output, sample);
}

at::Tensor& ddim_sample_philox_out(at::Tensor& sample, T model_output, T x_t, T t,
                                   OptGen generator, T sqrt_recip_alphas_cumprod,
                                   T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                                   T posterior_mean_coef2, T alphas_cumprod,
                                   T alphas_cumprod_prev, double eta,
                                   const std::string& model_mean_type,
                                   const std::string& model_var_type, bool clip_denoised,
                                   OptT clip_bound, bool clip_rescale,
                                   bool use_clipped_model_output) {
  static const auto op =
      find<DdimSampleOut<OptGen>>("ddpm::ddim_sample_philox", "generator_sample_out");
  return op.call(model_output, x_t, t, generator, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1, posterior_mean_coef2,
                 alphas_cumprod, alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised, clip_bound, clip_rescale, use_clipped_model_output, sample);
}

TensorPair ddim_sample_backward(OptT grad_sample, OptT grad_pred_xstart, T model_output, T x_t,
                                T t, OptT noise, T sqrt_recip_alphas_cumprod,
                                T sqrt_recipm1_alphas_cumprod, T posterior_mean_coef1,
                                T posterior_mean_coef2, T alphas_cumprod, T alphas_cumprod_prev,
                                double eta, const std::string& model_mean_type,
                                const std::string& model_var_type, bool clip_denoised,
                                OptT clip_bound, bool clip_rescale,
                                bool use_clipped_model_output) {
  static const auto op =
      find<TensorPair(OptT, OptT, T, T, T, OptT, T, T, T, T, T, T, double, Str, Str, bool, OptT,
                      bool, bool)>("ddpm::ddim_sample_backward");
  return op.call(grad_sample, grad_pred_xstart, model_output, x_t, t, noise,
                 sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, alphas_cumprod, alphas_cumprod_prev, eta,
                 model_mean_type, model_var_type, clip_denoised, clip_bound, clip_rescale,
                 use_clipped_model_output);
}

TensorPair euler_sample(T model_output, T x_t, T t, T noise, T sigmas, T sigmas_next,
                        double eta, const std::string& model_mean_type,
                        const std::string& model_var_type, bool clip_denoised, OptT clip_bound,
                        bool clip_rescale) {
  static const auto op =
      find<TensorPair(T, T, T, T, T, T, double, Str, Str, bool, OptT, bool)>("ddpm::euler_sample");
  return op.call(model_output, x_t, t, noise, sigmas, sigmas_next, eta, model_mean_type,
                 model_var_type, clip_denoised, clip_bound, clip_rescale);
}

TensorPair dpm_solver_sample(T model_output, T x_t, T t, T noise, T sigmas, T sigmas_next,
                             T sigmas_1, T sigmas_2, OptT pred_xstart_1, OptT pred_xstart_2,
                             int64_t solver_order, const std::string& solver_type,
                             const std::string& algorithm_type,
                             const std::string& model_mean_type,
                             const std::string& model_var_type, bool clip_denoised,
                             OptT clip_bound, bool clip_rescale) {
  static const auto op = find<TensorPair(T, T, T, T, T, T, T, T, OptT, OptT, int64_t, Str, Str,
                                         Str, Str, bool, OptT, bool)>("ddpm::dpm_solver_sample");
  return op.call(model_output, x_t, t, noise, sigmas, sigmas_next, sigmas_1, sigmas_2,
                 pred_xstart_1, pred_xstart_2, solver_order, solver_type, algorithm_type,
                 model_mean_type, model_var_type, clip_denoised, clip_bound, clip_rescale);
}

TensorPair q_sample_backward(T grad, T t, T sqrt_alphas_cumprod,
                             T sqrt_one_minus_alphas_cumprod) {
  static const auto op = find<TensorPair(T, T, T, T)>("ddpm::q_sample_backward");
  return op.call(grad, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod);
}

TensorPair posterior_mean_variance_backward(T grad_mean, T t, T posterior_mean_coef1,
                                            T posterior_mean_coef2) {
  static const auto op =
      find<TensorPair(T, T, T, T)>("ddpm::posterior_mean_variance_backward");
  return op.call(grad_mean, t, posterior_mean_coef1, posterior_mean_coef2);
}

at::Tensor scale_by_timestep(T input, T t, T table) {
  static const auto op = find<at::Tensor(T, T, T)>("ddpm::scale_by_timestep");
  return op.call(input, t, table);
}

at::Tensor diffusion_mse(T model_output, T x_start, T noise, T t, T sqrt_alphas_cumprod,
                         T sqrt_one_minus_alphas_cumprod, OptT weight, const std::string& target,
                         OptT noise_offset) {
  static const auto op =
      find<at::Tensor(T, T, T, T, T, T, OptT, Str, OptT)>("ddpm::diffusion_mse");
  return op.call(model_output, x_start, noise, t, sqrt_alphas_cumprod,
                 sqrt_one_minus_alphas_cumprod, weight, target, noise_offset);
}

at::Tensor diffusion_mse_backward(T grad, T model_output, T x_start, T noise, T t,
                                  T sqrt_alphas_cumprod, T sqrt_one_minus_alphas_cumprod,
                                  OptT weight, const std::string& target, OptT noise_offset) {
  static const auto op =
      find<at::Tensor(T, T, T, T, T, T, T, OptT, Str, OptT)>("ddpm::diffusion_mse_backward");
  return op.call(grad, model_output, x_start, noise, t, sqrt_alphas_cumprod,
                 sqrt_one_minus_alphas_cumprod, weight, target, noise_offset);
}

}  // namespace ddpm
