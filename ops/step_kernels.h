// Kernels with the schema signatures of p_sample, ddim_sample, their
// in-kernel-noise variants (*_philox), out= and sample_out variants and
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
using OutPair = std::tuple<at::Tensor&, at::Tensor&>;

template <typename Backend>
struct StepKernels {
  static auto forward_launch() {
    return [](const auto& p) { return Backend::forward(p); };
  }
  static auto backward_launch() {
    return [](const auto& p) { return Backend::backward(p); };
  }

  // The forward step of every schema below, out= or not.
  static Pair run(const char* op, const Tensor& model_output, const Tensor& x_t,
                  const Tensor& t, const NoiseArg& noise,
                  const StepTableArgs& tables, const StepModes& modes,
                  const StepOutputs& outputs) {
    const auto guard = Backend::guard(x_t.device());
    return step_impl(op, model_output, x_t, t, noise, tables, modes,
                     forward_launch(), outputs);
  }
  // A p_sample step (op names the schema, in the modes' errors too).
  static Pair p_step(const char* op, const Tensor& model_output,
                     const Tensor& x_t, const Tensor& t, const NoiseArg& noise,
                     const Tensor& r, const Tensor& rm1, const Tensor& c1,
                     const Tensor& c2, const Tensor& log_var,
                     const Tensor& betas, c10::string_view mean_type,
                     c10::string_view var_type, bool clip_denoised,
                     const StepOutputs& outputs = {}) {
    return run(op, model_output, x_t, t, noise,
               StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
               p_sample_modes(op, mean_type, var_type, clip_denoised), outputs);
  }
  // A DDIM step, likewise.
  static Pair ddim_step(const char* op, const Tensor& model_output,
                        const Tensor& x_t, const Tensor& t,
                        const NoiseArg& noise, const Tensor& r,
                        const Tensor& rm1, const Tensor& c1, const Tensor& c2,
                        const Tensor& abar, const Tensor& abar_prev, double eta,
                        c10::string_view mean_type, c10::string_view var_type,
                        bool clip_denoised, const StepOutputs& outputs = {}) {
    return run(op, model_output, x_t, t, noise,
               StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev),
               ddim_modes(op, eta, mean_type, var_type, clip_denoised),
               outputs);
  }
  // out=: into both given tensors
  static StepOutputs both(const Tensor& sample, const Tensor& pred_xstart) {
    return {&sample, &pred_xstart, true};
  }
  // sample_out: the sample alone, pred_xstart not written
  static StepOutputs sample_only(const Tensor& sample) {
    return {&sample, nullptr, false};
  }

  static Pair p_sample(const Tensor& model_output, const Tensor& x_t,
                       const Tensor& t, const Tensor& noise, const Tensor& r,
                       const Tensor& rm1, const Tensor& c1, const Tensor& c2,
                       const Tensor& log_var, const Tensor& betas,
                       c10::string_view mean_type, c10::string_view var_type,
                       bool clip_denoised) {
    return p_step(kPSample, model_output, x_t, t, explicit_noise(noise), r, rm1,
                  c1, c2, log_var, betas, mean_type, var_type, clip_denoised);
  }

  static OutPair p_sample_out(const Tensor& model_output, const Tensor& x_t,
                              const Tensor& t, const Tensor& noise,
                              const Tensor& r, const Tensor& rm1,
                              const Tensor& c1, const Tensor& c2,
                              const Tensor& log_var, const Tensor& betas,
                              c10::string_view mean_type,
                              c10::string_view var_type, bool clip_denoised,
                              Tensor& sample, Tensor& pred_xstart) {
    p_step(kPSample, model_output, x_t, t, explicit_noise(noise), r, rm1, c1,
           c2, log_var, betas, mean_type, var_type, clip_denoised,
           both(sample, pred_xstart));
    return {sample, pred_xstart};
  }

  static Tensor& p_sample_sample_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const Tensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& log_var, const Tensor& betas,
      c10::string_view mean_type, c10::string_view var_type, bool clip_denoised,
      Tensor& sample) {
    p_step(kPSample, model_output, x_t, t, explicit_noise(noise), r, rm1, c1,
           c2, log_var, betas, mean_type, var_type, clip_denoised,
           sample_only(sample));
    return sample;
  }

  static Pair p_sample_philox(const Tensor& model_output, const Tensor& x_t,
                              const Tensor& t, int64_t seed, int64_t offset,
                              const Tensor& r, const Tensor& rm1,
                              const Tensor& c1, const Tensor& c2,
                              const Tensor& log_var, const Tensor& betas,
                              c10::string_view mean_type,
                              c10::string_view var_type, bool clip_denoised) {
    return p_step(kPSamplePhilox, model_output, x_t, t,
                  generated_noise(kPSamplePhilox, seed, offset), r, rm1, c1, c2,
                  log_var, betas, mean_type, var_type, clip_denoised);
  }

  static OutPair p_sample_philox_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      int64_t seed, int64_t offset, const Tensor& r, const Tensor& rm1,
      const Tensor& c1, const Tensor& c2, const Tensor& log_var,
      const Tensor& betas, c10::string_view mean_type,
      c10::string_view var_type, bool clip_denoised, Tensor& sample,
      Tensor& pred_xstart) {
    p_step(kPSamplePhilox, model_output, x_t, t,
           generated_noise(kPSamplePhilox, seed, offset), r, rm1, c1, c2,
           log_var, betas, mean_type, var_type, clip_denoised,
           both(sample, pred_xstart));
    return {sample, pred_xstart};
  }

  static Tensor& p_sample_philox_sample_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      int64_t seed, int64_t offset, const Tensor& r, const Tensor& rm1,
      const Tensor& c1, const Tensor& c2, const Tensor& log_var,
      const Tensor& betas, c10::string_view mean_type,
      c10::string_view var_type, bool clip_denoised, Tensor& sample) {
    p_step(kPSamplePhilox, model_output, x_t, t,
           generated_noise(kPSamplePhilox, seed, offset), r, rm1, c1, c2,
           log_var, betas, mean_type, var_type, clip_denoised,
           sample_only(sample));
    return sample;
  }

  static Pair ddim_sample(const Tensor& model_output, const Tensor& x_t,
                          const Tensor& t, const Tensor& noise, const Tensor& r,
                          const Tensor& rm1, const Tensor& c1, const Tensor& c2,
                          const Tensor& abar, const Tensor& abar_prev,
                          double eta, c10::string_view mean_type,
                          c10::string_view var_type, bool clip_denoised) {
    return ddim_step(kDdimSample, model_output, x_t, t, explicit_noise(noise),
                     r, rm1, c1, c2, abar, abar_prev, eta, mean_type, var_type,
                     clip_denoised);
  }

  static OutPair ddim_sample_out(const Tensor& model_output, const Tensor& x_t,
                                 const Tensor& t, const Tensor& noise,
                                 const Tensor& r, const Tensor& rm1,
                                 const Tensor& c1, const Tensor& c2,
                                 const Tensor& abar, const Tensor& abar_prev,
                                 double eta, c10::string_view mean_type,
                                 c10::string_view var_type, bool clip_denoised,
                                 Tensor& sample, Tensor& pred_xstart) {
    ddim_step(kDdimSample, model_output, x_t, t, explicit_noise(noise), r, rm1,
              c1, c2, abar, abar_prev, eta, mean_type, var_type, clip_denoised,
              both(sample, pred_xstart));
    return {sample, pred_xstart};
  }

  static Tensor& ddim_sample_sample_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const Tensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& abar, const Tensor& abar_prev, double eta,
      c10::string_view mean_type, c10::string_view var_type, bool clip_denoised,
      Tensor& sample) {
    ddim_step(kDdimSample, model_output, x_t, t, explicit_noise(noise), r, rm1,
              c1, c2, abar, abar_prev, eta, mean_type, var_type, clip_denoised,
              sample_only(sample));
    return sample;
  }

  static Pair ddim_sample_philox(const Tensor& model_output, const Tensor& x_t,
                                 const Tensor& t, int64_t seed, int64_t offset,
                                 const Tensor& r, const Tensor& rm1,
                                 const Tensor& c1, const Tensor& c2,
                                 const Tensor& abar, const Tensor& abar_prev,
                                 double eta, c10::string_view mean_type,
                                 c10::string_view var_type,
                                 bool clip_denoised) {
    return ddim_step(kDdimSamplePhilox, model_output, x_t, t,
                     generated_noise(kDdimSamplePhilox, seed, offset), r, rm1,
                     c1, c2, abar, abar_prev, eta, mean_type, var_type,
                     clip_denoised);
  }

  static OutPair ddim_sample_philox_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      int64_t seed, int64_t offset, const Tensor& r, const Tensor& rm1,
      const Tensor& c1, const Tensor& c2, const Tensor& abar,
      const Tensor& abar_prev, double eta, c10::string_view mean_type,
      c10::string_view var_type, bool clip_denoised, Tensor& sample,
      Tensor& pred_xstart) {
    ddim_step(kDdimSamplePhilox, model_output, x_t, t,
              generated_noise(kDdimSamplePhilox, seed, offset), r, rm1, c1, c2,
              abar, abar_prev, eta, mean_type, var_type, clip_denoised,
              both(sample, pred_xstart));
    return {sample, pred_xstart};
  }

  static Tensor& ddim_sample_philox_sample_out(
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      int64_t seed, int64_t offset, const Tensor& r, const Tensor& rm1,
      const Tensor& c1, const Tensor& c2, const Tensor& abar,
      const Tensor& abar_prev, double eta, c10::string_view mean_type,
      c10::string_view var_type, bool clip_denoised, Tensor& sample) {
    ddim_step(kDdimSamplePhilox, model_output, x_t, t,
              generated_noise(kDdimSamplePhilox, seed, offset), r, rm1, c1, c2,
              abar, abar_prev, eta, mean_type, var_type, clip_denoised,
              sample_only(sample));
    return sample;
  }

  static Pair p_sample_backward(
      const OptionalTensor& grad_sample, const OptionalTensor& grad_pred_xstart,
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const OptionalTensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& log_var, const Tensor& betas,
      c10::string_view mean_type, c10::string_view var_type,
      bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_backward_impl(
        kPSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t, t,
        noise, StepTableArgs(false, r, rm1, c1, c2, log_var, betas),
        p_sample_modes(kPSampleBackward, mean_type, var_type, clip_denoised),
        backward_launch());
  }

  static Pair ddim_sample_backward(
      const OptionalTensor& grad_sample, const OptionalTensor& grad_pred_xstart,
      const Tensor& model_output, const Tensor& x_t, const Tensor& t,
      const OptionalTensor& noise, const Tensor& r, const Tensor& rm1, const Tensor& c1,
      const Tensor& c2, const Tensor& abar, const Tensor& abar_prev, double eta,
      c10::string_view mean_type, c10::string_view var_type,
      bool clip_denoised) {
    const auto guard = Backend::guard(x_t.device());
    return step_backward_impl(
        kDdimSampleBackward, grad_sample, grad_pred_xstart, model_output, x_t,
        t, noise, StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev),
        ddim_modes(kDdimSampleBackward, eta, mean_type, var_type, clip_denoised),
        backward_launch());
  }

  static void register_all(torch::Library& m) {
    m.impl("p_sample", &p_sample);
    m.impl("p_sample.out", &p_sample_out);
    m.impl("p_sample.sample_out", &p_sample_sample_out);
    m.impl("p_sample_philox", &p_sample_philox);
    m.impl("p_sample_philox.out", &p_sample_philox_out);
    m.impl("p_sample_philox.sample_out", &p_sample_philox_sample_out);
    m.impl("p_sample_backward", &p_sample_backward);
    m.impl("ddim_sample", &ddim_sample);
    m.impl("ddim_sample.out", &ddim_sample_out);
    m.impl("ddim_sample.sample_out", &ddim_sample_sample_out);
    m.impl("ddim_sample_philox", &ddim_sample_philox);
    m.impl("ddim_sample_philox.out", &ddim_sample_philox_out);
    m.impl("ddim_sample_philox.sample_out", &ddim_sample_philox_sample_out);
    m.impl("ddim_sample_backward", &ddim_sample_backward);
  }
};

}  // namespace ops
}  // namespace ddpm
