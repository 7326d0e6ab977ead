// One boxed operator call: its arguments on the dispatcher's stack, read by
// the positions of the operator table, and its results put back. Every
// kernel (CPU, CUDA, Meta, autograd) is a boxed function of this form.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <string>
#include <utility>
#include <vector>

namespace ddpm {
namespace ops {

class CallArgs {
 public:
  CallArgs(const c10::OperatorHandle& op, torch::jit::Stack* stack)
      : op_(op),
        stack_(stack),
        count_(op.schema().arguments().size()),
        first_(stack->size() - count_) {}

  const at::Tensor& tensor(size_t i) const { return at(i).toTensor(); }
  // a Tensor? argument: null when None (or undefined)
  const at::Tensor* optional_tensor(size_t i) const {
    const c10::IValue& v = at(i);
    return v.isTensor() && v.toTensor().defined() ? &v.toTensor() : nullptr;
  }
  int64_t integer(size_t i) const { return at(i).toInt(); }
  double real(size_t i) const { return at(i).toDouble(); }
  const std::string& str(size_t i) const { return at(i).toStringRef(); }
  bool flag(size_t i) const { return at(i).toBool(); }
  const c10::IValue& value(size_t i) const { return at(i); }

  // An argument's name in the schema (for messages), and it with its tensor.
  const char* name(size_t i) const { return op_.schema().arguments()[i].name().c_str(); }
  std::pair<const char*, const at::Tensor*> named_tensor(size_t i) const {
    return {name(i), &tensor(i)};
  }
  size_t count() const { return count_; }

  const c10::OperatorHandle& op() const { return op_; }
  const std::string& overload() const { return op_.schema().overload_name(); }
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
  const c10::IValue& at(size_t i) const { return (*stack_)[first_ + i]; }

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

}  // namespace ops
}  // namespace ddpm
