// The CUDA backend: every operator's kernel (kernels.h) launching the CUDA
// kernels of csrc/cuda on the current stream of the data's device. A
// timestep outside [0, T) cannot be reported without a host sync: the kernels
// write NaN for its sample.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include "../kernels.h"

namespace ddpm {
namespace ops {
namespace {

CudaLaunch current_cuda_launch() {
  return {static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()),
          at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

// In-kernel noise takes its (seed, offset) as numbers, which a CUDA graph
// bakes into the captured kernel: every replay would draw the same noise,
// silently. So it is refused during capture.
void refuse_noise_in_capture() {
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None,
              "ddpm: in-kernel noise (the *_philox operators, philox_normal) "
              "cannot be captured in a CUDA graph: its (seed, offset) would be "
              "fixed in the graph and every replay would draw the same noise. "
              "Capture the step with explicit noise instead (torch.randn_like "
              "inside the graph draws anew at each replay).");
}

// Runs kernel(params, launch) on the current stream and checks the launch.
template <typename Kernel, typename P>
int64_t launched(Kernel kernel, const P& p, bool draws_noise) {
  if (draws_noise) refuse_noise_in_capture();
  kernel(p, current_cuda_launch());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return -1;
}

struct CudaBackend {
  static constexpr bool kRuns = true;
  using Guard = c10::cuda::CUDAGuard;
  template <typename S, typename T>
  static int64_t run(const LinearParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { linear_cuda(q, l); }, p, p.generate_noise);
  }
  template <typename S, typename T>
  static int64_t run(const LinearBackwardParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { linear_backward_cuda(q, l); }, p, false);
  }
  template <typename S, typename T>
  static int64_t run(const StepParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { step_cuda(q, l); }, p, p.generate_noise);
  }
  template <typename S, typename T>
  static int64_t run(const StepBackwardParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { step_backward_cuda(q, l); }, p, false);
  }
  template <typename S, typename T>
  static int64_t run(const LossParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { loss_cuda(q, l); }, p, false);
  }
  template <typename S, typename T>
  static int64_t run(const LossBackwardParams<S, T>& p) {
    return launched([](const auto& q, CudaLaunch l) { loss_backward_cuda(q, l); }, p, false);
  }
  template <typename S>
  static int64_t run(const PhiloxNormalParams<S>& p) {
    return launched([](const auto& q, CudaLaunch l) { philox_normal_cuda(q, l); }, p, true);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) { register_kernels<CudaBackend>(m); }

}  // namespace ops
}  // namespace ddpm
