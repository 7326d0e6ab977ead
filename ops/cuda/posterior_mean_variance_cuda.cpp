// CUDA registrations of posterior_mean_variance and its backward.
#include <torch/library.h>

#include "../posterior_mean_variance.h"
#include "cuda_launch.h"

namespace ddpm {
namespace ops {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance_cuda_op(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance) {
  const c10::cuda::CUDAGuard guard(x_start.device());
  return posterior_mean_variance_impl(
      x_start, x_t, t, coef1, coef2, variance, log_variance,
      cuda_launcher([](const auto& p, CudaLaunch l) { posterior_mean_variance_cuda(p, l); }));
}

std::tuple<at::Tensor&, at::Tensor, at::Tensor> posterior_mean_variance_out_cuda_op(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& coef1, const at::Tensor& coef2,
    const at::Tensor& variance, const at::Tensor& log_variance,
    at::Tensor& mean) {
  const c10::cuda::CUDAGuard guard(x_start.device());
  auto r = posterior_mean_variance_impl(
      x_start, x_t, t, coef1, coef2, variance, log_variance,
      cuda_launcher([](const auto& p, CudaLaunch l) { posterior_mean_variance_cuda(p, l); }),
      &mean);
  return {mean, std::get<1>(r), std::get<2>(r)};
}

std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward_cuda_op(
    const at::Tensor& grad_mean, const at::Tensor& t, const at::Tensor& coef1,
    const at::Tensor& coef2) {
  const c10::cuda::CUDAGuard guard(grad_mean.device());
  return posterior_mean_variance_backward_impl(
      grad_mean, t, coef1, coef2,
      cuda_launcher([](const auto& p, CudaLaunch l) {
        posterior_mean_variance_backward_cuda(p, l);
      }));
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) {
  m.impl("posterior_mean_variance", &posterior_mean_variance_cuda_op);
  m.impl("posterior_mean_variance.out", &posterior_mean_variance_out_cuda_op);
  m.impl("posterior_mean_variance_backward",
         &posterior_mean_variance_backward_cuda_op);
}

}  // namespace ops
}  // namespace ddpm
