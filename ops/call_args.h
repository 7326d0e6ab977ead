// One boxed operator call: its arguments on the dispatcher's stack, read at
// positions each family finds by name in the operator's schema (its Args
// struct), and its results put back. Every kernel (CPU, CUDA, Meta,
// autograd) is a boxed function of this form.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ddpm {
namespace ops {

// An argument's position in a schema, found by name; -1 where the schema has
// no such argument (an optional() one).
inline int optional_arg(const c10::FunctionSchema& schema, const char* name) {
  const auto index = schema.argumentIndexWithName(name);
  return index ? static_cast<int>(*index) : -1;
}
inline int arg(const c10::FunctionSchema& schema, const char* name) {
  const int index = optional_arg(schema, name);
  TORCH_CHECK(index >= 0, "ddpm: ", schema.name(), ".", schema.overload_name(),
              " has no argument ", name);
  return index;
}

class CallArgs {
 public:
  CallArgs(const c10::OperatorHandle& op, torch::jit::Stack* stack)
      : op_(op),
        stack_(stack),
        count_(op.schema().arguments().size()),
        first_(stack->size() - count_) {}

  const at::Tensor& tensor(int i) const { return at(i).toTensor(); }
  // a Tensor? argument: null when None (or undefined), or where the schema
  // has none (i = -1)
  const at::Tensor* optional_tensor(int i) const {
    if (i < 0) return nullptr;
    const c10::IValue& v = at(i);
    return v.isTensor() && v.toTensor().defined() ? &v.toTensor() : nullptr;
  }
  int64_t integer(int i) const { return at(i).toInt(); }
  double real(int i) const { return at(i).toDouble(); }
  const std::string& str(int i) const { return at(i).toStringRef(); }
  bool flag(int i) const { return at(i).toBool(); }
  const c10::IValue& value(int i) const { return at(i); }

  // An argument's name in the schema (for messages), and it with its tensor.
  const char* name(int i) const { return schema().arguments()[i].name().c_str(); }
  std::pair<const char*, const at::Tensor*> named_tensor(int i) const {
    return {name(i), &tensor(i)};
  }
  size_t count() const { return count_; }
  // whether argument i is one the operator writes (an out= or sample= tensor)
  bool is_output(int i) const {
    const auto* alias = schema().arguments()[i].alias_info();
    return alias != nullptr && alias->isWrite();
  }

  const c10::OperatorHandle& op() const { return op_; }
  torch::jit::Stack* stack() const { return stack_; }
  const c10::FunctionSchema& schema() const { return op_.schema(); }
  // The arguments as they are (a copy), to call the operator again.
  std::vector<c10::IValue> copy() const {
    return {stack_->begin() + first_, stack_->end()};
  }

  // Replaces the arguments with the results.
  void finish(std::vector<at::Tensor> results) {
    torch::jit::drop(*stack_, count_);
    for (at::Tensor& r : results) torch::jit::push(*stack_, std::move(r));
  }

 private:
  const c10::IValue& at(int i) const { return (*stack_)[first_ + static_cast<size_t>(i)]; }

  const c10::OperatorHandle& op_;
  torch::jit::Stack* stack_;
  size_t count_, first_;
};

// The operator's name as error messages give it: "ddpm.p_sample" for
// ddpm::p_sample and its overloads.
inline std::string error_name(const c10::OperatorHandle& op) {
  std::string name = op.schema().name();
  const size_t colons = name.find("::");
  if (colons != std::string::npos) name.replace(colons, 2, ".");
  return name;
}

// A family's boxed kernel for one operator (Family::run serves every
// operator of the family): Family::Args, where the family's arguments are,
// is resolved by name from the operator's schema at its first call and kept.
// Family::Context is what the registration knows beyond the schema (a step's
// kind), or NoContext. Backend: the CPU, CUDA or Meta backend's kernel
// (Family::run<Backend>), or void for autograd's (Family::run).
struct NoContext {};

template <typename Family, typename Backend = void>
class FamilyKernel final : public c10::OperatorKernel {
 public:
  using Context = typename Family::Context;
  explicit FamilyKernel(Context context = {}) : context_(context) {}

  void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                  torch::jit::Stack* stack) {
    std::call_once(resolved_, [&] {
      args_ = std::make_unique<const typename Family::Args>(op.schema(), context_);
    });
    CallArgs call(op, stack);
    if constexpr (std::is_void<Backend>::value) {
      Family::run(call, *args_, keys);
    } else {
      Family::template run<Backend>(call, *args_);
    }
  }

 private:
  Context context_;
  std::once_flag resolved_;
  std::unique_ptr<const typename Family::Args> args_;
};

// A family's kernel, for torch::Library::impl.
template <typename Family, typename Backend = void>
torch::CppFunction family_kernel(typename Family::Context context = {}) {
  return torch::CppFunction::makeFromBoxedFunctor(
      std::make_unique<FamilyKernel<Family, Backend>>(context));
}

}  // namespace ops
}  // namespace ddpm
