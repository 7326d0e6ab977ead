// Autograd for q_sample: differentiable in x_start and noise. The backward
// is the operator ddpm::q_sample_backward, so it runs on every backend.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../q_sample.h"
#include "constant_args.h"
#include "per_sample_linear.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

class QSampleFunction : public torch::autograd::Function<QSampleFunction> {
 public:
  static Variable forward(AutogradContext* ctx, const Variable& x_start,
                          const Variable& t, const Variable& noise,
                          const Variable& sa, const Variable& s1ma) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({t, sa, s1ma});
    return ddpm::q_sample(x_start, t, noise, sa, s1ma);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &t = saved[0], &sa = saved[1], &s1ma = saved[2];
    auto g = per_sample_linear_grads(
        grads[0], t, sa, ctx->needs_input_grad(0), s1ma,
        ctx->needs_input_grad(2),
        [&] { return ddpm::q_sample_backward(grads[0], t, sa, s1ma); });
    return {g.first, Variable(), g.second, Variable(), Variable()};
  }
};

at::Tensor q_sample_autograd(const at::Tensor& x_start, const at::Tensor& t,
                             const at::Tensor& noise, const at::Tensor& sa,
                             const at::Tensor& s1ma) {
  refuse_grad_of_constants(kQSample, "x_start and noise",
                           {{"sqrt_alphas_cumprod", &sa},
                            {"sqrt_one_minus_alphas_cumprod", &s1ma}});
  return QSampleFunction::apply(x_start, t, noise, sa, s1ma);
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("q_sample", &q_sample_autograd);
}

}  // namespace ops
}  // namespace ddpm
