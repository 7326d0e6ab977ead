// The CPU backend: every operator's kernel (kernels.h) launching the CPU
// loops of csrc/cpu, which report a timestep outside [0, T) by its index;
// and their threads, ATen's intra-op pool.
#include <ATen/Parallel.h>

#include "../kernels.h"
#include "cpu/parallel.h"

namespace ddpm {
namespace cpu {

void run_chunks(int64_t begin, int64_t end, int64_t grain, Chunk chunk, const void* context) {
  at::parallel_for(begin, end, grain,
                   [&](int64_t lo, int64_t hi) { chunk(context, lo, hi); });
}

}  // namespace cpu

namespace ops {
namespace {

struct CpuBackend {
  static constexpr bool kRuns = true;
  using Guard = NoDeviceGuard;
  // -1, or the index of a sample whose t is out of range
  template <typename P>
  static int64_t run(const P& p) { return cpu_kernel(p); }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CPU, m) { register_kernels<CpuBackend>(m); }

}  // namespace ops
}  // namespace ddpm
