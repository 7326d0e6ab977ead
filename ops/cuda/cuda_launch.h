// The thin glue between ATen's CUDA state and the torch-free kernels: the
// current stream and the device's multiprocessor count, under a device guard
// held by the caller.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "ddpm/kernels.h"

namespace ddpm {
namespace ops {

inline CudaLaunch current_cuda_launch() {
  return {static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()),
          at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

// Wraps a kernel entry point as a backend launch for the *_impl templates:
// runs it on the current stream, checks the launch, and reports no bad
// timestep (the kernels write NaN for those; raising would need a sync).
template <typename Kernel>
auto cuda_launcher(Kernel kernel) {
  return [kernel](const auto& params) -> int64_t {
    kernel(params, current_cuda_launch());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return -1;
  };
}

}  // namespace ops
}  // namespace ddpm
