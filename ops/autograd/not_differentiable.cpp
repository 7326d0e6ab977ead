// The operators that are not differentiable themselves (operators.cpp's
// Role::kBackward and Role::kOut).
//
// The backward operators (no double backward): PyTorch's not-implemented
// kernel at Autograd makes differentiating through them an error ("derivative
// for ... is not implemented") instead of a silently detached result, and
// lets them run on meta tensors under torch 1.13, whose AutogradMeta key has
// no fallthrough.
//
// The out= and sample_out overloads (as PyTorch's own out= functions): in
// grad mode, an argument that requires grad is refused by name; otherwise the
// operator runs below autograd, and the version of every tensor it writes is
// bumped as an in-place op bumps it, so that autograd notices a tensor saved
// for a backward pass being overwritten.
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../call_args.h"
#include "../operators.h"

namespace ddpm {
namespace ops {
namespace {

void out_overload_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                           torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const auto& args = schema.arguments();
  const size_t first = stack->size() - args.size();
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < args.size(); ++i) {
    const c10::IValue& value = (*stack)[first + i];
    if (!value.isTensor() || !value.toTensor().defined()) continue;
    const at::Tensor& x = value.toTensor();
    const bool is_output = args[i].alias_info() != nullptr && args[i].alias_info()->isWrite();
    if (is_output) written.push_back(x);
    if (!at::GradMode::is_enabled() || !x.requires_grad()) continue;
    const std::string functional = error_name(op);
    const std::string name = functional + "." + schema.overload_name();
    TORCH_CHECK(!is_output, name, ": ", args[i].name(),
                " requires grad, and an output= tensor is written in place, which "
                "autograd cannot track: pass one that does not require grad");
    TORCH_CHECK(false, name, ": ", args[i].name(),
                " requires grad, but the out= and sample= overloads are not "
                "differentiable (as PyTorch's out= functions): call ",
                functional, " without them for gradients, or pass ", args[i].name(),
                ".detach() (or run under torch.no_grad())");
  }
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
  for (const at::Tensor& x : written) torch::autograd::impl::bump_version(x);
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  for (const OperatorDef& def : operator_defs()) {
    if (def.role == Role::kBackward) {
      m.impl(def.name().c_str(), torch::autograd::autogradNotImplementedFallback());
    } else if (def.role == Role::kOut) {
      m.impl(def.name().c_str(),
             torch::CppFunction::makeFromBoxedFunction<&out_overload_autograd>());
    }
  }
}

}  // namespace ops
}  // namespace ddpm
