// CPU registrations of the fused steps (p_sample, ddim_sample) and their
// backward operators.
#include <torch/library.h>

#include "../step_kernels.h"

namespace ddpm {
namespace ops {
namespace {

struct CpuStep {
  struct NoGuard {};
  static NoGuard guard(const at::Device&) { return {}; }
  template <typename P>
  static int64_t forward(const P& p) {
    return p_sample_cpu(p);
  }
  template <typename P>
  static int64_t backward(const P& p) {
    return p_sample_backward_cpu(p);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CPU, m) { StepKernels<CpuStep>::register_all(m); }

}  // namespace ops
}  // namespace ddpm
