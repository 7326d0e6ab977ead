// The CPU backend: every operator's kernel (kernels.h) launching the CPU
// loops of csrc/cpu, which report a timestep outside [0, T) by its index.
#include "../kernels.h"

namespace ddpm {
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
