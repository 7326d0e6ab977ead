// Meta kernels: the same argument checks as the real kernels, then outputs of
// the right shape and dtype and no data, so shapes propagate through meta
// and fake tensors (torch.compile, torch.export) without touching memory.
// Timestep values cannot be checked here: they exist only at run time.
#include <torch/library.h>

#include "p_sample.h"
#include "posterior_mean_variance.h"
#include "q_sample.h"
#include "step_kernels.h"

namespace ddpm {
namespace ops {
namespace {

at::Tensor contiguous_like(const at::Tensor& x) {
  return at::empty_like(x, at::MemoryFormat::Contiguous);
}

at::Tensor q_sample_meta(const at::Tensor& x_start, const at::Tensor& t,
                         const at::Tensor& noise, const at::Tensor& sa,
                         const at::Tensor& s1ma) {
  check_q_sample(x_start, t, noise, sa, s1ma);
  return contiguous_like(x_start);
}

at::Tensor& q_sample_out_meta(const at::Tensor& x_start, const at::Tensor& t,
                              const at::Tensor& noise, const at::Tensor& sa,
                              const at::Tensor& s1ma, at::Tensor& out) {
  check_q_sample(x_start, t, noise, sa, s1ma);
  q_sample_output(&out, x_start, noise);
  return out;
}

std::tuple<at::Tensor, at::Tensor> q_sample_backward_meta(
    const at::Tensor& grad, const at::Tensor& t, const at::Tensor& sa,
    const at::Tensor& s1ma) {
  check_q_sample_backward(grad, t, sa, s1ma);
  return {contiguous_like(grad), contiguous_like(grad)};
}

at::Tensor scale_by_timestep_meta(const at::Tensor& input, const at::Tensor& t,
                                  const at::Tensor& table) {
  check_scale_by_timestep(input, t, table);
  return contiguous_like(input);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance_meta(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance) {
  check_posterior(x_start, x_t, t, coef1, coef2, variance, log_variance);
  const auto per_sample = [&] {
    return at::empty({x_start.size(0)}, x_start.options());
  };
  return posterior_outputs(x_start, contiguous_like(x_start), per_sample(),
                           per_sample());
}

std::tuple<at::Tensor&, at::Tensor, at::Tensor> posterior_mean_variance_out_meta(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance,
    at::Tensor& mean) {
  auto r = posterior_mean_variance_meta(x_start, x_t, t, coef1, coef2,
                                        variance, log_variance);
  posterior_mean_output(&mean, x_start, x_t);
  return {mean, std::get<1>(r), std::get<2>(r)};
}

std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward_meta(
    const at::Tensor& grad_mean, const at::Tensor& t, const at::Tensor& coef1,
    const at::Tensor& coef2) {
  check_posterior_backward(grad_mean, t, coef1, coef2);
  return {contiguous_like(grad_mean), contiguous_like(grad_mean)};
}

std::tuple<at::Tensor, at::Tensor> p_sample_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_args(kPSample, model_output, x_t, t, explicit_noise(noise),
                  StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
                  parse_step_modes(kPSample, std::string(mean_type),
                                   std::string(var_type), clip_denoised, false,
                                   0.0));
  return {contiguous_like(x_t), contiguous_like(x_t)};
}

std::tuple<at::Tensor, at::Tensor> p_sample_backward_meta(
    const OptionalTensor& grad_sample, const OptionalTensor& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const OptionalTensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_backward_args(
      kPSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t, t,
      noise, StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
      parse_step_modes(kPSampleBackward, std::string(mean_type),
                       std::string(var_type), clip_denoised, false, 0.0));
  return {contiguous_like(model_output), contiguous_like(x_t)};
}

std::tuple<at::Tensor&, at::Tensor&> p_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample,
    at::Tensor& pred_xstart) {
  p_sample_meta(model_output, x_t, t, noise, r, rm1, c1, c2, log_var, betas,
                mean_type, var_type, clip_denoised);
  step_outputs(kPSample, {&sample, &pred_xstart, true}, model_output, x_t, &noise);
  return {sample, pred_xstart};
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_args(kDdimSample, model_output, x_t, t, explicit_noise(noise),
                  StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev),
                  parse_step_modes(kDdimSample, std::string(mean_type),
                                   std::string(var_type), clip_denoised, true,
                                   eta));
  return {contiguous_like(x_t), contiguous_like(x_t)};
}

std::tuple<at::Tensor&, at::Tensor&> ddim_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample,
    at::Tensor& pred_xstart) {
  ddim_sample_meta(model_output, x_t, t, noise, r, rm1, c1, c2, abar, abar_prev,
                   eta, mean_type, var_type, clip_denoised);
  step_outputs(kDdimSample, {&sample, &pred_xstart, true}, model_output, x_t, &noise);
  return {sample, pred_xstart};
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_backward_meta(
    const OptionalTensor& grad_sample, const OptionalTensor& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const OptionalTensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_backward_args(
      kDdimSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t, t,
      noise, StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev),
      parse_step_modes(kDdimSampleBackward, std::string(mean_type),
                       std::string(var_type), clip_denoised, true, eta));
  return {contiguous_like(model_output), contiguous_like(x_t)};
}

at::Tensor philox_normal_meta(const at::Tensor& input, int64_t seed,
                              int64_t offset) {
  check_philox_normal(input);
  check_noise_key(kPhiloxNormal, seed, offset);
  return contiguous_like(input);
}

std::tuple<at::Tensor, at::Tensor> q_sample_philox_meta(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sa, const at::Tensor& s1ma) {
  check_q_sample_philox(x_start, t, sa, s1ma);
  check_noise_key(kQSamplePhilox, seed, offset);
  return {contiguous_like(x_start), contiguous_like(x_start)};
}

std::tuple<at::Tensor, at::Tensor> p_sample_philox_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_args(kPSamplePhilox, model_output, x_t, t,
                  generated_noise(kPSamplePhilox, seed, offset),
                  StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
                  p_sample_modes(kPSamplePhilox, mean_type, var_type, clip_denoised));
  return {contiguous_like(x_t), contiguous_like(x_t)};
}

std::tuple<at::Tensor&, at::Tensor&> p_sample_philox_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample,
    at::Tensor& pred_xstart) {
  p_sample_philox_meta(model_output, x_t, t, seed, offset, r, rm1, c1, c2,
                       log_var, betas, mean_type, var_type, clip_denoised);
  step_outputs(kPSamplePhilox, {&sample, &pred_xstart, true}, model_output, x_t, nullptr);
  return {sample, pred_xstart};
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_philox_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  check_step_args(kDdimSamplePhilox, model_output, x_t, t,
                  generated_noise(kDdimSamplePhilox, seed, offset),
                  StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev),
                  ddim_modes(kDdimSamplePhilox, eta, mean_type, var_type,
                             clip_denoised));
  return {contiguous_like(x_t), contiguous_like(x_t)};
}

std::tuple<at::Tensor&, at::Tensor&> ddim_sample_philox_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample,
    at::Tensor& pred_xstart) {
  ddim_sample_philox_meta(model_output, x_t, t, seed, offset, r, rm1, c1, c2,
                          abar, abar_prev, eta, mean_type, var_type,
                          clip_denoised);
  step_outputs(kDdimSamplePhilox, {&sample, &pred_xstart, true}, model_output, x_t, nullptr);
  return {sample, pred_xstart};
}

// The sample_out overloads: the checks of the step, and the sample alone.
at::Tensor& p_sample_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample) {
  p_sample_meta(model_output, x_t, t, noise, r, rm1, c1, c2, log_var, betas,
                mean_type, var_type, clip_denoised);
  step_outputs(kPSample, {&sample, nullptr, false}, model_output, x_t, &noise);
  return sample;
}

at::Tensor& ddim_sample_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample) {
  ddim_sample_meta(model_output, x_t, t, noise, r, rm1, c1, c2, abar, abar_prev,
                   eta, mean_type, var_type, clip_denoised);
  step_outputs(kDdimSample, {&sample, nullptr, false}, model_output, x_t, &noise);
  return sample;
}

at::Tensor& p_sample_philox_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample) {
  p_sample_philox_meta(model_output, x_t, t, seed, offset, r, rm1, c1, c2,
                       log_var, betas, mean_type, var_type, clip_denoised);
  step_outputs(kPSamplePhilox, {&sample, nullptr, false}, model_output, x_t, nullptr);
  return sample;
}

at::Tensor& ddim_sample_philox_sample_out_meta(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised, at::Tensor& sample) {
  ddim_sample_philox_meta(model_output, x_t, t, seed, offset, r, rm1, c1, c2,
                          abar, abar_prev, eta, mean_type, var_type,
                          clip_denoised);
  step_outputs(kDdimSamplePhilox, {&sample, nullptr, false}, model_output, x_t, nullptr);
  return sample;
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Meta, m) {
  m.impl("philox_normal", &philox_normal_meta);
  m.impl("q_sample_philox", &q_sample_philox_meta);
  m.impl("p_sample_philox", &p_sample_philox_meta);
  m.impl("p_sample_philox.out", &p_sample_philox_out_meta);
  m.impl("p_sample_philox.sample_out", &p_sample_philox_sample_out_meta);
  m.impl("ddim_sample_philox", &ddim_sample_philox_meta);
  m.impl("ddim_sample_philox.out", &ddim_sample_philox_out_meta);
  m.impl("ddim_sample_philox.sample_out", &ddim_sample_philox_sample_out_meta);
  m.impl("q_sample", &q_sample_meta);
  m.impl("q_sample.out", &q_sample_out_meta);
  m.impl("p_sample.out", &p_sample_out_meta);
  m.impl("p_sample.sample_out", &p_sample_sample_out_meta);
  m.impl("ddim_sample.out", &ddim_sample_out_meta);
  m.impl("ddim_sample.sample_out", &ddim_sample_sample_out_meta);
  m.impl("q_sample_backward", &q_sample_backward_meta);
  m.impl("scale_by_timestep", &scale_by_timestep_meta);
  m.impl("posterior_mean_variance", &posterior_mean_variance_meta);
  m.impl("posterior_mean_variance.out", &posterior_mean_variance_out_meta);
  m.impl("posterior_mean_variance_backward",
         &posterior_mean_variance_backward_meta);
  m.impl("p_sample", &p_sample_meta);
  m.impl("p_sample_backward", &p_sample_backward_meta);
  m.impl("ddim_sample", &ddim_sample_meta);
  m.impl("ddim_sample_backward", &ddim_sample_backward_meta);
}

}  // namespace ops
}  // namespace ddpm
