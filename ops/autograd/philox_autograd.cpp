// Autograd for the in-kernel-noise operators. The noise is not an input, so
// the gradients are those of the explicit-noise operators with the noise
// redrawn from (seed, offset) when the backward needs it:
//   q_sample_philox: x_t differentiable in x_start; the noise output is not
//                    differentiable (it is data, like randn's result).
//   p_sample_philox, ddim_sample_philox: as p_sample / ddim_sample, in
//                    model_output and x_t; where the backward reads the noise
//                    (a learned variance's gradient), it gets
//                    philox_normal(x_t, seed, offset) (rounded to a 16-bit
//                    dtype there, where the forward used float).
//   philox_normal:   its result does not require grad.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../p_sample.h"
#include "../q_sample.h"
#include "step_autograd.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

at::Tensor philox_normal_autograd(const at::Tensor& input, int64_t seed,
                                  int64_t offset) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return ddpm::philox_normal(input, seed, offset);
}

class QSamplePhiloxFunction
    : public torch::autograd::Function<QSamplePhiloxFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& x_start,
                               const Variable& t, int64_t seed, int64_t offset,
                               const Variable& sa, const Variable& s1ma) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({t, sa, s1ma});
    auto out = ddpm::q_sample_philox(x_start, t, seed, offset, sa, s1ma);
    ctx->mark_non_differentiable({std::get<1>(out)});
    ctx->set_materialize_grads(false);  // no zero gradient for the noise
    return {std::get<0>(out), std::get<1>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // the drawn noise is not an input: only x_start has a gradient
    return {grads[0].defined() ? ddpm::scale_by_timestep(grads[0], saved[0], saved[1])
                               : Variable(),
            Variable(), Variable(), Variable(), Variable(), Variable()};
  }
};

std::tuple<at::Tensor, at::Tensor> q_sample_philox_autograd(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sa, const at::Tensor& s1ma) {
  refuse_grad_of_constants(kQSamplePhilox, "x_start",
                           {{"sqrt_alphas_cumprod", &sa},
                            {"sqrt_one_minus_alphas_cumprod", &s1ma}});
  auto out = QSamplePhiloxFunction::apply(x_start, t, seed, offset, sa, s1ma);
  return {out[0], out[1]};
}

// Saves the nine tensors (model_output, x_t, t, six tables), the noise key
// and the modes of a step.
void save_philox_step(AutogradContext* ctx, const variable_list& tensors,
                      int64_t seed, int64_t offset,
                      const std::string& mean_type, const std::string& var_type,
                      bool clip_denoised) {
  save_step(ctx, tensors, mean_type, var_type, clip_denoised);
  ctx->saved_data["seed"] = seed;
  ctx->saved_data["offset"] = offset;
}

// The noise the forward drew, redrawn like x_t, where the backward reads it
// (step_backward_reads_noise: a learned variance's gradient, when the sample
// has one); None otherwise, so that nothing is drawn.
c10::optional<at::Tensor> redraw_noise_if_read(
    AutogradContext* ctx, const at::Tensor& x_t,
    const c10::optional<at::Tensor>& grad_sample, bool ddim) {
  const StepModes modes = parse_step_modes(
      ddim ? kDdimSamplePhilox : kPSamplePhilox,
      ctx->saved_data["mean_type"].toStringRef(),
      ctx->saved_data["var_type"].toStringRef(),
      ctx->saved_data["clip_denoised"].toBool(), ddim,
      ddim ? ctx->saved_data["eta"].toDouble() : 0.0);
  if (!step_backward_reads_noise(modes, grad_sample)) return c10::nullopt;
  return ddpm::philox_normal(x_t, ctx->saved_data["seed"].toInt(),
                             ctx->saved_data["offset"].toInt());
}

class PSamplePhiloxFunction
    : public torch::autograd::Function<PSamplePhiloxFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const Variable& model_output, const Variable& x_t,
      const Variable& t, int64_t seed, int64_t offset, const Variable& r,
      const Variable& rm1, const Variable& c1, const Variable& c2,
      const Variable& log_var, const Variable& betas,
      const std::string& mean_type, const std::string& var_type,
      bool clip_denoised) {
    at::AutoDispatchBelowADInplaceOrView guard;
    save_philox_step(ctx, {model_output, x_t, t, r, rm1, c1, c2, log_var, betas},
                     seed, offset, mean_type, var_type, clip_denoised);
    auto out = ddpm::p_sample_philox(model_output, x_t, t, seed, offset, r, rm1,
                                     c1, c2, log_var, betas, mean_type,
                                     var_type, clip_denoised);
    return {std::get<0>(out), std::get<1>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto grad_sample = grad_or_none(grads[0]);
    return step_grads(
        ddpm::p_sample_backward(
            grad_sample, grad_or_none(grads[1]), s[0], s[1], s[2],
            redraw_noise_if_read(ctx, s[1], grad_sample, false), s[3], s[4], s[5],
            s[6], s[7], s[8], ctx->saved_data["mean_type"].toStringRef(),
            ctx->saved_data["var_type"].toStringRef(),
            ctx->saved_data["clip_denoised"].toBool()),
        14);
  }
};

class DdimPhiloxFunction : public torch::autograd::Function<DdimPhiloxFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const Variable& model_output, const Variable& x_t,
      const Variable& t, int64_t seed, int64_t offset, const Variable& r,
      const Variable& rm1, const Variable& c1, const Variable& c2,
      const Variable& abar, const Variable& abar_prev, double eta,
      const std::string& mean_type, const std::string& var_type,
      bool clip_denoised) {
    at::AutoDispatchBelowADInplaceOrView guard;
    save_philox_step(ctx, {model_output, x_t, t, r, rm1, c1, c2, abar, abar_prev},
                     seed, offset, mean_type, var_type, clip_denoised);
    ctx->saved_data["eta"] = eta;
    auto out = ddpm::ddim_sample_philox(model_output, x_t, t, seed, offset, r,
                                        rm1, c1, c2, abar, abar_prev, eta,
                                        mean_type, var_type, clip_denoised);
    return {std::get<0>(out), std::get<1>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto grad_sample = grad_or_none(grads[0]);
    return step_grads(
        ddpm::ddim_sample_backward(
            grad_sample, grad_or_none(grads[1]), s[0], s[1], s[2],
            redraw_noise_if_read(ctx, s[1], grad_sample, true), s[3], s[4], s[5],
            s[6], s[7], s[8], ctx->saved_data["eta"].toDouble(),
            ctx->saved_data["mean_type"].toStringRef(),
            ctx->saved_data["var_type"].toStringRef(),
            ctx->saved_data["clip_denoised"].toBool()),
        15);
  }
};

std::tuple<at::Tensor, at::Tensor> p_sample_philox_autograd(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  refuse_grad_of_step_tables(kPSamplePhilox,
                             StepTableArgs(false, r, rm1, c1, c2, log_var, betas));
  auto out = PSamplePhiloxFunction::apply(
      model_output, x_t, t, seed, offset, r, rm1, c1, c2, log_var, betas,
      std::string(mean_type), std::string(var_type), clip_denoised);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_philox_autograd(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  refuse_grad_of_step_tables(kDdimSamplePhilox,
                             StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev));
  auto out = DdimPhiloxFunction::apply(
      model_output, x_t, t, seed, offset, r, rm1, c1, c2, abar, abar_prev, eta,
      std::string(mean_type), std::string(var_type), clip_denoised);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("philox_normal", &philox_normal_autograd);
  m.impl("q_sample_philox", &q_sample_philox_autograd);
  m.impl("p_sample_philox", &p_sample_philox_autograd);
  m.impl("ddim_sample_philox", &ddim_sample_philox_autograd);
}

}  // namespace ops
}  // namespace ddpm
