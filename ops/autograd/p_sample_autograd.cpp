// Autograd for the fused steps p_sample and ddim_sample: (sample,
// pred_xstart) are differentiable in model_output (both halves for learned
// variances; the variance half gets zero from a DDIM step) and x_t. The
// noise and the tables are treated as constants.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "step_autograd.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

class PSampleFunction : public torch::autograd::Function<PSampleFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const Variable& model_output, const Variable& x_t,
      const Variable& t, const Variable& noise, const Variable& r,
      const Variable& rm1, const Variable& c1, const Variable& c2,
      const Variable& log_var, const Variable& betas,
      const std::string& mean_type, const std::string& var_type,
      bool clip_denoised) {
    at::AutoDispatchBelowADInplaceOrView guard;
    save_step(ctx, {model_output, x_t, t, noise, r, rm1, c1, c2, log_var, betas},
              mean_type, var_type, clip_denoised);
    auto out = ddpm::p_sample(model_output, x_t, t, noise, r, rm1, c1, c2,
                              log_var, betas, mean_type, var_type,
                              clip_denoised);
    return {std::get<0>(out), std::get<1>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    return step_grads(
        ddpm::p_sample_backward(
            grad_or_none(grads[0]), grad_or_none(grads[1]), s[0], s[1], s[2],
            s[3], s[4], s[5], s[6], s[7],
            s[8], s[9], ctx->saved_data["mean_type"].toStringRef(),
            ctx->saved_data["var_type"].toStringRef(),
            ctx->saved_data["clip_denoised"].toBool()),
        13);
  }
};

class DdimFunction : public torch::autograd::Function<DdimFunction> {
 public:
  static variable_list forward(
      AutogradContext* ctx, const Variable& model_output, const Variable& x_t,
      const Variable& t, const Variable& noise, const Variable& r,
      const Variable& rm1, const Variable& c1, const Variable& c2,
      const Variable& abar, const Variable& abar_prev, double eta,
      const std::string& mean_type, const std::string& var_type,
      bool clip_denoised) {
    at::AutoDispatchBelowADInplaceOrView guard;
    save_step(ctx, {model_output, x_t, t, noise, r, rm1, c1, c2, abar, abar_prev},
              mean_type, var_type, clip_denoised);
    ctx->saved_data["eta"] = eta;
    auto out = ddpm::ddim_sample(model_output, x_t, t, noise, r, rm1, c1, c2,
                                 abar, abar_prev, eta, mean_type, var_type,
                                 clip_denoised);
    return {std::get<0>(out), std::get<1>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    return step_grads(
        ddpm::ddim_sample_backward(
            grad_or_none(grads[0]), grad_or_none(grads[1]), s[0], s[1], s[2],
            s[3], s[4], s[5], s[6], s[7],
            s[8], s[9], ctx->saved_data["eta"].toDouble(),
            ctx->saved_data["mean_type"].toStringRef(),
            ctx->saved_data["var_type"].toStringRef(),
            ctx->saved_data["clip_denoised"].toBool()),
        14);
  }
};

std::tuple<at::Tensor, at::Tensor> p_sample_autograd(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  refuse_grad_of_step_tables(kPSample,
                             StepTableArgs(false, r, rm1, c1, c2, log_var, betas));
  auto out = PSampleFunction::apply(model_output, x_t, t, noise, r, rm1, c1,
                                    c2, log_var, betas, std::string(mean_type),
                                    std::string(var_type), clip_denoised);
  return {out[0], out[1]};
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_autograd(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& abar,
    const at::Tensor& abar_prev, double eta, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  refuse_grad_of_step_tables(kDdimSample,
                             StepTableArgs(true, r, rm1, c1, c2, abar, abar_prev));
  auto out = DdimFunction::apply(model_output, x_t, t, noise, r, rm1, c1, c2,
                                 abar, abar_prev, eta, std::string(mean_type),
                                 std::string(var_type), clip_denoised);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("p_sample", &p_sample_autograd);
  m.impl("ddim_sample", &ddim_sample_autograd);
}

}  // namespace ops
}  // namespace ddpm
