// The CPU loops' only way to use threads. csrc/ is torch-free: the operator
// library implements run_chunks with ATen's intra-op pool (at::parallel_for,
// so torch.set_num_threads applies: ops/cpu/cpu_kernels.cpp), the
// host-emulation tests with a serial loop (tests/cuda_host/cuda_host.cpp).
#pragma once

#include <cstdint>

namespace ddpm {
namespace cpu {

// Calls chunk(context, lo, hi) over [begin, end) cut into pieces of about
// `grain` or more, in parallel.
using Chunk = void (*)(const void* context, int64_t lo, int64_t hi);
void run_chunks(int64_t begin, int64_t end, int64_t grain, Chunk chunk, const void* context);

// The same with any callable f(lo, hi).
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  run_chunks(
      begin, end, grain,
      [](const void* context, int64_t lo, int64_t hi) { (*static_cast<const F*>(context))(lo, hi); },
      &f);
}

}  // namespace cpu
}  // namespace ddpm
