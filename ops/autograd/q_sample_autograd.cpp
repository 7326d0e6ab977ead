// Autograd for q_sample: differentiable in x_start and noise. The backward
// is the operator ddpm::q_sample_backward, so it runs on every backend.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../ddpm_ops.h"

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
    const bool x_start_needs = ctx->needs_input_grad(0);
    const bool noise_needs = ctx->needs_input_grad(2);
    if (x_start_needs && noise_needs) {
      auto g = ddpm::q_sample_backward(grads[0], t, sa, s1ma);
      return {std::get<0>(g), Variable(), std::get<1>(g), Variable(),
              Variable()};
    }
    // one gradient: one write instead of two (training's usual case, where
    // the noise is a constant)
    return {x_start_needs ? ddpm::scale_by_timestep(grads[0], t, sa) : Variable(),
            Variable(),
            noise_needs ? ddpm::scale_by_timestep(grads[0], t, s1ma) : Variable(),
            Variable(), Variable()};
  }
};

at::Tensor q_sample_autograd(const at::Tensor& x_start, const at::Tensor& t,
                             const at::Tensor& noise, const at::Tensor& sa,
                             const at::Tensor& s1ma) {
  return QSampleFunction::apply(x_start, t, noise, sa, s1ma);
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("q_sample", &q_sample_autograd);
}

}  // namespace ops
}  // namespace ddpm
