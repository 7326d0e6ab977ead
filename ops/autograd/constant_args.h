// Arguments an operator is not differentiable in: the schedule tables.
// Autograd would leave their gradient None without a word; one that requires
// grad (in grad mode) is refused instead, by name.
#pragma once

#include <ATen/core/grad_mode.h>

#include <initializer_list>

#include "../checks.h"

namespace ddpm {
namespace ops {

// differentiable: the inputs op has gradients for, for the message.
inline void refuse_grad_of_constants(const char* op, const char* differentiable,
                                     std::initializer_list<NamedTensor> constants) {
  if (!at::GradMode::is_enabled()) return;
  for (const NamedTensor& arg : constants) {
    const at::Tensor& x = *arg.second;
    TORCH_CHECK(!x.defined() || !x.requires_grad(), op, ": ", arg.first,
                " requires grad, but ", op, " has no gradient for it (only for ",
                differentiable, "): pass ", arg.first, ".detach()");
  }
}

}  // namespace ops
}  // namespace ddpm
