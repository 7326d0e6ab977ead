// CUDA registrations of the fused steps (p_sample, ddim_sample) and their
// backward operators.
#include <torch/library.h>

#include "../step_kernels.h"
#include "cuda_launch.h"

namespace ddpm {
namespace ops {
namespace {

struct CudaStep {
  static c10::cuda::CUDAGuard guard(const at::Device& device) {
    return c10::cuda::CUDAGuard(device);
  }
  template <typename P>
  static int64_t forward(const P& p) {
    return cuda_launcher([](const auto& q, CudaLaunch l) { p_sample_cuda(q, l); })(p);
  }
  template <typename P>
  static int64_t backward(const P& p) {
    return cuda_launcher([](const auto& q, CudaLaunch l) {
      p_sample_backward_cuda(q, l);
    })(p);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) { StepKernels<CudaStep>::register_all(m); }

}  // namespace ops
}  // namespace ddpm
