// The CPU backend: every operator's kernel (kernels.h) launching the CPU
// loops of csrc/cpu, which report a timestep outside [0, T) by its index.
#include "../kernels.h"

namespace ddpm {
namespace ops {
namespace {

struct CpuBackend {
  static constexpr bool kRuns = true;
  struct Guard {
    explicit Guard(const at::Device&) {}
  };
  template <typename S, typename T>
  static int64_t run(const LinearParams<S, T>& p) { return linear_cpu(p); }
  template <typename S, typename T>
  static int64_t run(const LinearBackwardParams<S, T>& p) { return linear_backward_cpu(p); }
  template <typename S, typename T>
  static int64_t run(const StepParams<S, T>& p) { return step_cpu(p); }
  template <typename S, typename T>
  static int64_t run(const StepBackwardParams<S, T>& p) { return step_backward_cpu(p); }
  template <typename S, typename T>
  static int64_t run(const LossParams<S, T>& p) { return loss_cpu(p); }
  template <typename S, typename T>
  static int64_t run(const LossBackwardParams<S, T>& p) { return loss_backward_cpu(p); }
  template <typename S>
  static int64_t run(const PhiloxNormalParams<S>& p) {
    philox_normal_cpu(p);
    return -1;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CPU, m) { register_kernels<CpuBackend>(m); }

}  // namespace ops
}  // namespace ddpm
