// The Meta backend: every operator's kernel (kernels.h) with its checks and
// outputs and no launch, so shapes propagate through meta and fake tensors
// (torch.compile, torch.export) by the very code the CPU and CUDA run.
// Timestep values cannot be checked here: they exist only at run time.
#include "kernels.h"

namespace ddpm {
namespace ops {
namespace {

struct MetaBackend {
  static constexpr bool kRuns = false;  // no launch (and no data)
  using Guard = NoDeviceGuard;
  template <typename P>
  static int64_t run(const P&) { return -1; }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Meta, m) { register_kernels<MetaBackend>(m); }

}  // namespace ops
}  // namespace ddpm
