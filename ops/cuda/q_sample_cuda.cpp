// CUDA registrations of q_sample (its out=, backward and in-kernel-noise
// variants) and philox_normal.
#include <torch/library.h>

#include "../q_sample.h"
#include "cuda_launch.h"

namespace ddpm {
namespace ops {
namespace {

at::Tensor q_sample_cuda_op(const at::Tensor& x_start, const at::Tensor& t,
                            const at::Tensor& noise, const at::Tensor& sa,
                            const at::Tensor& s1ma) {
  const c10::cuda::CUDAGuard guard(x_start.device());
  return q_sample_impl(x_start, t, noise, sa, s1ma,
                       cuda_launcher([](const auto& p, CudaLaunch l) { q_sample_cuda(p, l); }));
}

at::Tensor& q_sample_out_cuda_op(const at::Tensor& x_start, const at::Tensor& t,
                                 const at::Tensor& noise, const at::Tensor& sa,
                                 const at::Tensor& s1ma, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x_start.device());
  q_sample_impl(x_start, t, noise, sa, s1ma,
                cuda_launcher([](const auto& p, CudaLaunch l) { q_sample_cuda(p, l); }),
                &out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> q_sample_philox_cuda_op(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sa, const at::Tensor& s1ma) {
  const c10::cuda::CUDAGuard guard(x_start.device());
  return q_sample_philox_impl(
      x_start, t, seed, offset, sa, s1ma,
      cuda_launcher([](const auto& p, CudaLaunch l) { q_sample_cuda(p, l); }));
}

at::Tensor philox_normal_cuda_op(const at::Tensor& input, int64_t seed,
                                 int64_t offset) {
  const c10::cuda::CUDAGuard guard(input.device());
  return philox_normal_impl(
      input, seed, offset,
      cuda_launcher([](const auto& p, CudaLaunch l) { philox_normal_cuda(p, l); }));
}

std::tuple<at::Tensor, at::Tensor> q_sample_backward_cuda_op(
    const at::Tensor& grad, const at::Tensor& t, const at::Tensor& sa,
    const at::Tensor& s1ma) {
  const c10::cuda::CUDAGuard guard(grad.device());
  return q_sample_backward_impl(
      grad, t, sa, s1ma,
      cuda_launcher([](const auto& p, CudaLaunch l) { q_sample_backward_cuda(p, l); }));
}

at::Tensor scale_by_timestep_cuda_op(const at::Tensor& input,
                                    const at::Tensor& t,
                                    const at::Tensor& table) {
  const c10::cuda::CUDAGuard guard(input.device());
  return scale_by_timestep_impl(
      input, t, table,
      cuda_launcher([](const auto& p, CudaLaunch l) { q_sample_backward_cuda(p, l); }));
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) {
  m.impl("q_sample", &q_sample_cuda_op);
  m.impl("q_sample.out", &q_sample_out_cuda_op);
  m.impl("q_sample_backward", &q_sample_backward_cuda_op);
  m.impl("scale_by_timestep", &scale_by_timestep_cuda_op);
  m.impl("q_sample_philox", &q_sample_philox_cuda_op);
  m.impl("philox_normal", &philox_normal_cuda_op);
}

}  // namespace ops
}  // namespace ddpm
