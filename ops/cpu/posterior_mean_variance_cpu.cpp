// CPU registrations of posterior_mean_variance and its backward.
#include <torch/library.h>

#include "../posterior_mean_variance.h"

namespace ddpm {
namespace ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance_cpu_op(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance) {
  return posterior_mean_variance_impl(
      x_start, x_t, t, coef1, coef2, variance, log_variance,
      [](const auto& p) { return posterior_mean_variance_cpu(p); });
}

std::tuple<at::Tensor&, at::Tensor, at::Tensor> posterior_mean_variance_out_cpu_op(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance,
    at::Tensor& mean) {
  auto r = posterior_mean_variance_impl(
      x_start, x_t, t, coef1, coef2, variance, log_variance,
      [](const auto& p) { return posterior_mean_variance_cpu(p); }, &mean);
  return {mean, std::get<1>(r), std::get<2>(r)};
}

std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward_cpu_op(
    const at::Tensor& grad_mean, const at::Tensor& t, const at::Tensor& coef1,
    const at::Tensor& coef2) {
  return posterior_mean_variance_backward_impl(
      grad_mean, t, coef1, coef2,
      [](const auto& p) { return posterior_mean_variance_backward_cpu(p); });
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CPU, m) {
  m.impl("posterior_mean_variance", &posterior_mean_variance_cpu_op);
  m.impl("posterior_mean_variance.out", &posterior_mean_variance_out_cpu_op);
  m.impl("posterior_mean_variance_backward",
         &posterior_mean_variance_backward_cpu_op);
}

}  // namespace ops
}  // namespace ddpm
