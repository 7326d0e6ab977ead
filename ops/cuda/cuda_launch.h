// The thin glue between ATen's CUDA state and the torch-free kernels: the
// current stream and the device's multiprocessor count, under a device guard
// held by the caller.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include "ddpm/kernels.h"

namespace ddpm {
namespace ops {

inline CudaLaunch current_cuda_launch() {
  return {static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()),
          at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

// Whether a launch draws in-kernel noise (philox_normal always does).
template <typename P>
auto draws_noise(const P& p, int) -> decltype(p.generate_noise) {
  return p.generate_noise;
}
template <typename P>
bool draws_noise(const P&, long) {
  return false;
}
template <typename S>
bool draws_noise(const PhiloxNormalParams<S>&, int) {
  return true;
}

// In-kernel noise takes its (seed, offset) as numbers, which a CUDA graph
// bakes into the captured kernel: every replay would draw the same noise,
// silently. So it is refused during capture.
inline void refuse_noise_in_capture() {
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() ==
                  c10::cuda::CaptureStatus::None,
              "ddpm: in-kernel noise (the *_philox operators, philox_normal) "
              "cannot be captured in a CUDA graph: its (seed, offset) would be "
              "fixed in the graph and every replay would draw the same noise. "
              "Capture the step with explicit noise instead (torch.randn_like "
              "inside the graph draws anew at each replay).");
}

// Wraps a kernel entry point as a backend launch for the *_impl templates:
// runs it on the current stream, checks the launch, and reports no bad
// timestep (the kernels write NaN for those; raising would need a sync).
template <typename Kernel>
auto cuda_launcher(Kernel kernel) {
  return [kernel](const auto& params) -> int64_t {
    if (draws_noise(params, 0)) refuse_noise_in_capture();
    kernel(params, current_cuda_launch());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return -1;
  };
}

}  // namespace ops
}  // namespace ddpm
