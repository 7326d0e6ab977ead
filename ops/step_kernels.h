// Kernels with the schema signatures of p_sample, ddim_sample and their
// backward operators, for one backend. Backend supplies
//   static auto guard(const at::Device&);        // e.g. a CUDA device guard
//   template <class P> static int64_t forward(const P&);   // -1 or bad index
//   template <class P> static int64_t backward(const P&);
#pragma once

#include "p_sample.h"

namespace ddpm {
namespace ops {

using Tensor = at::Tensor;
using Pair = std::tuple<at::Tensor, at::Tensor>;

template <typename Backend>
struct StepKernels {
  static auto forward_launch() {
    return [](const auto& p) { return Backend::forward(p); };
  }
  static auto backward_launch() {
    return [](const auto& p) { return Backend::backward(p); };
  }

  static Pair p_sample(const Tensor& model_output, const Tensor& x_t,
                       const Tensor& t, const Tensor& noise, const Tensor& r,
                       const Tensor& rm1, const Tensor& c1, const Tensor& c2,
                       const Tensor& log_var, const Tensor& betas,
                       c10::string_view mean_type, c10::string_view var_type,
                       bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_impl(kPSample, model_output, x_t, t, noise,
                     StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
                     parse_step_modes(kPSample, std::string(mean_type),
                                      std::string(var_type), clip_denoised,
                                      false, 0.0),
                     forward_launch());
  }

  static Pair p_sample_backward(
      const Tensor& grad_sample, const Tensor& grad_pred_xstart,
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const Tensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& log_var, const Tensor& betas,
      c10::string_view mean_type, c10::string_view var_type,
      bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_backward_impl(
        kPSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t, t,
        noise, StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
        parse_step_modes(kPSampleBackward, std::string(mean_type),
                         std::string(var_type), clip_denoised, false, 0.0),
        backward_launch());
  }

  static Pair ddim_sample(const Tensor& model_output, const Tensor& x_t,
                          const Tensor& t, const Tensor& noise, const Tensor& r,
                          const Tensor& rm1, const Tensor& c1, const Tensor& c2,
                          const Tensor& alphas_cumprod,
                          const Tensor& alphas_cumprod_prev, double eta,
                          c10::string_view mean_type, c10::string_view var_type,
                          bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_impl(
        kDdimSample, model_output, x_t, t, noise,
        StepTableArgs(true, r, rm1, c1, c2, alphas_cumprod, alphas_cumprod_prev),
        parse_step_modes(kDdimSample, std::string(mean_type),
                         std::string(var_type), clip_denoised, true, eta),
        forward_launch());
  }

  static Pair ddim_sample_backward(
      const Tensor& grad_sample, const Tensor& grad_pred_xstart,
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const Tensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& alphas_cumprod,
      const Tensor& alphas_cumprod_prev, double eta,
      c10::string_view mean_type, c10::string_view var_type,
      bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_backward_impl(
        kDdimSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t,
        t, noise,
        StepTableArgs(true, r, rm1, c1, c2, alphas_cumprod, alphas_cumprod_prev),
        parse_step_modes(kDdimSampleBackward, std::string(mean_type),
                         std::string(var_type), clip_denoised, true, eta),
        backward_launch());
  }

  using OutPair = std::tuple<at::Tensor&, at::Tensor&>;

  static OutPair p_sample_out(const Tensor& model_output, const Tensor& x_t,
                              const Tensor& t, const Tensor& noise,
                              const Tensor& r, const Tensor& rm1,
                              const Tensor& c1, const Tensor& c2,
                              const Tensor& log_var, const Tensor& betas,
                              c10::string_view mean_type,
                              c10::string_view var_type, bool clip_denoised,
                              at::Tensor& sample, at::Tensor& pred_xstart) {
    const auto guard = Backend::guard(x_t.device());
    step_impl(kPSample, model_output, x_t, t, noise,
              StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
              parse_step_modes(kPSample, std::string(mean_type),
                               std::string(var_type), clip_denoised, false, 0.0),
              forward_launch(), &sample, &pred_xstart);
    return {sample, pred_xstart};
  }

  static OutPair ddim_sample_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const Tensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& alphas_cumprod,
      const Tensor& alphas_cumprod_prev, double eta, c10::string_view mean_type,
      c10::string_view var_type, bool clip_denoised, at::Tensor& sample,
      at::Tensor& pred_xstart) {
    const auto guard = Backend::guard(x_t.device());
    step_impl(
        kDdimSample, model_output, x_t, t, noise,
        StepTableArgs(true, r, rm1, c1, c2, alphas_cumprod, alphas_cumprod_prev),
        parse_step_modes(kDdimSample, std::string(mean_type),
                         std::string(var_type), clip_denoised, true, eta),
        forward_launch(), &sample, &pred_xstart);
    return {sample, pred_xstart};
  }

  static void register_all(torch::Library& m) {
    m.impl("p_sample.out", &p_sample_out);
    m.impl("ddim_sample.out", &ddim_sample_out);
    m.impl("p_sample", &p_sample);
    m.impl("p_sample_backward", &p_sample_backward);
    m.impl("ddim_sample", &ddim_sample);
    m.impl("ddim_sample_backward", &ddim_sample_backward);
  }
};

}  // namespace ops
}  // namespace ddpm
