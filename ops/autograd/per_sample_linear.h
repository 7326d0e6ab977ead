// The backward of a per-sample linear map y = a[t]*u + b[t]*v (q_sample:
// x_start and noise; the posterior mean: x_start and x_t), shared by their
// autograd functions: only the gradients autograd asks for are written.
#pragma once

#include <torch/autograd.h>

#include <utility>

#include "../ddpm_ops.h"

namespace ddpm {
namespace ops {

// (a[t]*grad, b[t]*grad), each undefined unless its input needs it: both
// from both_op() (one read, two writes), or one from scale_by_timestep (one
// read, one write; training's usual case, where q_sample's noise is a
// constant). grad undefined (the output unused): neither.
template <typename BothOp>
std::pair<at::Tensor, at::Tensor> per_sample_linear_grads(
    const at::Tensor& grad, const at::Tensor& t, const at::Tensor& a,
    bool u_needs, const at::Tensor& b, bool v_needs, const BothOp& both_op) {
  if (!grad.defined()) return {};
  if (u_needs && v_needs) {
    auto g = both_op();
    return {std::get<0>(g), std::get<1>(g)};
  }
  return {u_needs ? ddpm::scale_by_timestep(grad, t, a) : at::Tensor(),
          v_needs ? ddpm::scale_by_timestep(grad, t, b) : at::Tensor()};
}

}  // namespace ops
}  // namespace ddpm
