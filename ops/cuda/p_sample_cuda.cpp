// CUDA registrations of the fused p_sample and its backward.
#include <torch/library.h>

#include "../p_sample.h"
#include "cuda_launch.h"

namespace ddpm {
namespace ops {
namespace {

std::tuple<at::Tensor, at::Tensor> p_sample_cuda_op(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  const c10::cuda::CUDAGuard guard(x_t.device());
  return p_sample_impl(
      model_output, x_t, t, noise, {r, rm1, c1, c2, log_var, betas},
      std::string(mean_type), std::string(var_type), clip_denoised,
      cuda_launcher([](const auto& p, CudaLaunch l) { p_sample_cuda(p, l); }));
}

std::tuple<at::Tensor, at::Tensor> p_sample_backward_cuda_op(
    const at::Tensor& grad_sample, const at::Tensor& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& r, const at::Tensor& rm1,
    const at::Tensor& c1, const at::Tensor& c2, const at::Tensor& log_var,
    const at::Tensor& betas, c10::string_view mean_type,
    c10::string_view var_type, bool clip_denoised) {
  const c10::cuda::CUDAGuard guard(x_t.device());
  return p_sample_backward_impl(
      grad_sample, grad_pred_xstart, model_output, x_t, t, noise,
      {r, rm1, c1, c2, log_var, betas}, std::string(mean_type),
      std::string(var_type), clip_denoised,
      cuda_launcher([](const auto& p, CudaLaunch l) { p_sample_backward_cuda(p, l); }));
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) {
  m.impl("p_sample", &p_sample_cuda_op);
  m.impl("p_sample_backward", &p_sample_backward_cuda_op);
}

}  // namespace ops
}  // namespace ddpm
