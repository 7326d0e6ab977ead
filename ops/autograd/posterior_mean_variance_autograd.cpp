// Autograd for posterior_mean_variance: the mean is differentiable in
// x_start and x_t; variance and log_variance depend on t alone.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../posterior_mean_variance.h"
#include "constant_args.h"
#include "per_sample_linear.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

class PosteriorFunction : public torch::autograd::Function<PosteriorFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& x_start,
                               const Variable& x_t, const Variable& t,
                               const Variable& coef1, const Variable& coef2,
                               const Variable& variance,
                               const Variable& log_variance) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({t, coef1, coef2});
    auto out = ddpm::posterior_mean_variance(x_start, x_t, t, coef1, coef2,
                                             variance, log_variance);
    ctx->mark_non_differentiable({std::get<1>(out), std::get<2>(out)});
    // variance and log_variance have no gradient; left on, autograd would
    // fill a zero gradient at x's full shape for each of them (measured: 140
    // of the 270 ms of a 64M-element backward)
    ctx->set_materialize_grads(false);
    return {std::get<0>(out), std::get<1>(out), std::get<2>(out)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &t = saved[0], &coef1 = saved[1], &coef2 = saved[2];
    auto g = per_sample_linear_grads(
        grads[0], t, coef1, ctx->needs_input_grad(0), coef2,
        ctx->needs_input_grad(1), [&] {
          return ddpm::posterior_mean_variance_backward(grads[0], t, coef1, coef2);
        });
    return {g.first, g.second, Variable(), Variable(),
            Variable(), Variable(), Variable()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_autograd(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance) {
  refuse_grad_of_constants(kPosterior, "x_start and x_t",
                           {{"posterior_mean_coef1", &coef1},
                            {"posterior_mean_coef2", &coef2},
                            {"posterior_variance", &variance},
                            {"posterior_log_variance_clipped", &log_variance}});
  auto out = PosteriorFunction::apply(x_start, x_t, t, coef1, coef2, variance,
                                      log_variance);
  return {out[0], out[1], out[2]};
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("posterior_mean_variance", &posterior_autograd);
}

}  // namespace ops
}  // namespace ddpm
