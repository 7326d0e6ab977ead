// CPU registrations of q_sample (its out=, backward and in-kernel-noise
// variants) and philox_normal.
#include <torch/library.h>

#include "../q_sample.h"

namespace ddpm {
namespace ops {
namespace {

at::Tensor q_sample_cpu_op(const at::Tensor& x_start, const at::Tensor& t,
                           const at::Tensor& noise, const at::Tensor& sa,
                           const at::Tensor& s1ma) {
  return q_sample_impl(x_start, t, noise, sa, s1ma,
                       [](const auto& p) { return q_sample_cpu(p); });
}

at::Tensor& q_sample_out_cpu_op(const at::Tensor& x_start, const at::Tensor& t,
                                const at::Tensor& noise, const at::Tensor& sa,
                                const at::Tensor& s1ma, at::Tensor& out) {
  q_sample_impl(x_start, t, noise, sa, s1ma,
                [](const auto& p) { return q_sample_cpu(p); }, &out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> q_sample_philox_cpu_op(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sa, const at::Tensor& s1ma) {
  return q_sample_philox_impl(x_start, t, seed, offset, sa, s1ma,
                              [](const auto& p) { return q_sample_cpu(p); });
}

at::Tensor philox_normal_cpu_op(const at::Tensor& input, int64_t seed,
                                int64_t offset) {
  return philox_normal_impl(input, seed, offset, [](const auto& p) {
    philox_normal_cpu(p);
    return int64_t{-1};
  });
}

at::Tensor scale_by_timestep_cpu_op(const at::Tensor& input,
                                   const at::Tensor& t,
                                   const at::Tensor& table) {
  return scale_by_timestep_impl(
      input, t, table, [](const auto& p) { return q_sample_backward_cpu(p); });
}

std::tuple<at::Tensor, at::Tensor> q_sample_backward_cpu_op(
    const at::Tensor& grad, const at::Tensor& t, const at::Tensor& sa,
    const at::Tensor& s1ma) {
  return q_sample_backward_impl(
      grad, t, sa, s1ma, [](const auto& p) { return q_sample_backward_cpu(p); });
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CPU, m) {
  m.impl("q_sample", &q_sample_cpu_op);
  m.impl("q_sample.out", &q_sample_out_cpu_op);
  m.impl("q_sample_backward", &q_sample_backward_cpu_op);
  m.impl("scale_by_timestep", &scale_by_timestep_cpu_op);
  m.impl("q_sample_philox", &q_sample_philox_cpu_op);
  m.impl("philox_normal", &philox_normal_cpu_op);
}

}  // namespace ops
}  // namespace ddpm
