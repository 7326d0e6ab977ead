// What the autograd kernels share: a boxed operator call kept whole, to be
// run below autograd inside a torch::autograd::Function's forward, and the
// refusal of a gradient the operator cannot give (a schedule table that
// requires grad, whose gradient autograd would leave None without a word).
#pragma once

#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>

#include <array>
#include <string>
#include <vector>

#include "../call_args.h"
#include "../checks.h"

namespace ddpm {
namespace ops {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

// An operator call: the operator and its arguments.
struct KeptCall {
  const c10::OperatorHandle* op;
  std::vector<c10::IValue> args;

  // Runs it below autograd (the backend's kernel); returns its results.
  std::vector<c10::IValue> run_below_autograd() const {
    at::AutoDispatchBelowADInplaceOrView guard;
    torch::jit::Stack stack = args;
    op->callBoxed(&stack);
    return stack;
  }
};

// Refuses constants (schedule tables, optional ones null when absent) that
// require grad; differentiable:
// the inputs op has gradients for, for the message. (Any container of
// NamedTensor: no allocation on the way through.)
template <typename NamedTensors>
void refuse_grad_of_constants(const c10::OperatorHandle& op, const char* differentiable,
                              const NamedTensors& constants) {
  if (!at::GradMode::is_enabled()) return;
  for (const NamedTensor& arg : constants) {
    if (arg.second == nullptr) continue;  // an absent Tensor? argument
    const at::Tensor& x = *arg.second;
    if (!x.defined() || !x.requires_grad()) continue;
    const std::string name = error_name(op);
    TORCH_CHECK(false, name, ": ", arg.first, " requires grad, but ", name,
                " has no gradient for it (only for ", differentiable, "): pass ", arg.first,
                ".detach()");
  }
}

// Runs the call below autograd at once where there is nothing to record (no
// differentiable input requires grad, or grad mode is off): no graph node, no
// copy of the arguments. Returns whether it ran.
template <size_t N>
bool ran_without_graph(CallArgs& args, const std::array<const at::Tensor*, N>& differentiable) {
  if (at::GradMode::is_enabled()) {
    for (const at::Tensor* x : differentiable) {
      if (x != nullptr && x->defined() && x->requires_grad()) return false;
    }
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  args.op().callBoxed(args.stack());
  return true;
}

// Refuses a call that autograd will record (some differentiable input
// requires grad) if an argument it would save is an inference tensor (made
// under torch.inference_mode(), such as a table cached there): autograd's own
// error names neither the operator nor the argument.
inline void refuse_inference_tensors(const CallArgs& args) {
  for (int i = 0; i < static_cast<int>(args.count()); ++i) {
    const at::Tensor* x = args.optional_tensor(i);
    if (x == nullptr || !x->is_inference()) continue;
    const std::string name = error_name(args.op());
    TORCH_CHECK(false, name, ": ", args.name(i), " is an inference tensor (made under "
                "torch.inference_mode()), which autograd cannot save for the backward pass of ",
                name, ": make it outside inference mode (or .clone() it there), or call ", name,
                " under torch.no_grad() if no gradient is wanted");
  }
}

// An output's gradient for a backward operator's Tensor? argument: None when
// autograd left it undefined (set_materialize_grads(false): no full-size zero
// tensor is filled for an output the loss does not use).
inline c10::IValue grad_or_none(const at::Tensor& grad) {
  return grad.defined() ? c10::IValue(grad) : c10::IValue();
}

}  // namespace ops
}  // namespace ddpm
