// Autograd of the reverse steps, every kind and noise source (the table's
// step operators): (sample, pred_xstart) are differentiable in model_output
// (both halves for learned variances; the variance half gets zero from a
// DDIM step) and x_t. The tables and a clip bound are refused if they
// require grad; the noise is a constant. The backward is the kind's backward
// operator; for in-kernel noise it gets philox_normal(x_t, seed, offset)
// where it reads the noise (a learned variance's gradient: rounded to a
// 16-bit dtype there, where the forward used float).
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../op_table.h"
#include "../step.h"
#include "autograd_call.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

// The step's backward operator, found once per kind.
const c10::OperatorHandle& backward_op(const StepKindInfo& info) {
  static std::vector<c10::OperatorHandle> ops = [] {
    std::vector<c10::OperatorHandle> found;
    for (const StepKindInfo& k : step_kinds()) {
      found.push_back(c10::Dispatcher::singleton().findSchemaOrThrow(
          ("ddpm::" + std::string(k.name) + "_backward").c_str(), ""));
    }
    return found;
  }();
  return ops.at(static_cast<size_t>(&info - step_kinds().data()));
}

class StepFunction : public torch::autograd::Function<StepFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& model_output,
                               const Variable& x_t, const KeptCall& call) {
    const StepOp which = step_op_of(*call.op);
    const StepArgPositions at = step_arg_positions(*which.info, which.noise);
    const auto& a = call.args;
    variable_list saved = {model_output, x_t, a[at.t].toTensor()};
    saved.push_back(which.noise == NoiseSource::kTensor ? a[at.noise].toTensor() : Variable());
    for (size_t i = 0; i < 6; ++i) saved.push_back(a[at.first_table + i].toTensor());
    ctx->save_for_backward(saved);
    ctx->saved_data["kind"] = static_cast<int64_t>(which.info->kind);
    ctx->saved_data["philox"] = which.noise == NoiseSource::kPhilox;
    if (which.noise == NoiseSource::kPhilox) {
      ctx->saved_data["seed"] = a[at.seed];
      ctx->saved_data["offset"] = a[at.offset];
    }
    // the arguments after the tables (the kind's own, the modes, the options):
    // the backward operator takes them in the same order
    c10::impl::GenericList modes(c10::AnyType::get());
    for (size_t i = at.first_table + 6; i < a.size(); ++i) modes.push_back(a[i]);
    ctx->saved_data["modes"] = modes;
    // no zero gradient is filled for an output the loss does not use: the
    // backward operator takes None for it and never reads it
    ctx->set_materialize_grads(false);
    const auto results = call.run_below_autograd();
    return {results[0].toTensor(), results[1].toTensor()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const StepKindInfo& info =
        step_kind_info(static_cast<StepKind>(ctx->saved_data["kind"].toInt()));
    const auto& d = ctx->saved_data;
    const StepBackwardPositions at = step_backward_positions(info);
    torch::jit::Stack stack = {grad_or_none(grads[0]), grad_or_none(grads[1]), s[0], s[1], s[2],
                               s[3].defined() ? c10::IValue(s[3]) : c10::IValue()};
    for (size_t i = 0; i < 6; ++i) stack.push_back(s[4 + i]);
    const c10::List<c10::IValue> modes = d.at("modes").toList();
    for (size_t i = 0; i < modes.size(); ++i) stack.push_back(modes.get(i));
    const c10::OperatorHandle& op = backward_op(info);
    if (d.at("philox").toBool() &&
        step_backward_reads_noise(read_step_modes("ddpm", CallArgs(op, &stack), info, at),
                                  grads[0].defined() ? &grads[0] : nullptr)) {
      stack[at.noise] = ddpm::philox_normal(s[1], d.at("seed").toInt(), d.at("offset").toInt());
    }
    op.callBoxed(&stack);
    return {stack[0].toTensor(), stack[1].toTensor(), Variable()};
  }
};

// A .generator call whose backward needs its noise (a learned variance's
// gradient), run as the (seed, offset) operator with the key drawn here, so
// that the backward can draw the same noise; under CUDA graph capture the
// key exists only on the device, and this is refused. Returns whether it ran.
bool ran_with_drawn_key(const c10::OperatorHandle& op, torch::jit::Stack* stack,
                        const StepOp& which, const StepArgPositions& at) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  if (!at::GradMode::is_enabled()) return false;
  if (!args.tensor(at.model_output).requires_grad() && !args.tensor(at.x_t).requires_grad()) {
    return false;
  }
  if (!reads_var_channels(read_step_modes(name.c_str(), args, *which.info, at))) return false;
  const NoiseKey key = draw_noise_key(name.c_str(), args.value(at.generator),
                                      args.tensor(at.x_t).device());
  TORCH_CHECK(key.seed_on_device == nullptr, name,
              ": a learned variance's gradient needs the step's noise again, and inside a "
              "CUDA graph capture a generator's noise is known on the device only: capture "
              "the step without gradients, or draw the noise as a tensor (p_sample with "
              "torch.randn_like)");
  const c10::OperatorHandle seeded = c10::Dispatcher::singleton().findSchemaOrThrow(
      ("ddpm::" + step_op_name(*which.info, NoiseSource::kPhilox)).c_str(), "");
  const StepArgPositions seeded_at = step_arg_positions(*which.info, NoiseSource::kPhilox);
  torch::jit::Stack call_stack = args.copy();
  call_stack[at.generator] = static_cast<int64_t>(key.seed);
  call_stack.insert(call_stack.begin() + seeded_at.offset, static_cast<int64_t>(key.offset));
  seeded.callBoxed(&call_stack);
  args.finish({call_stack[0].toTensor(), call_stack[1].toTensor()});
  return true;
}

void step_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const StepOp which = step_op_of(op);
  const StepArgPositions at = step_arg_positions(*which.info, which.noise);
  if (which.noise == NoiseSource::kGenerator && ran_with_drawn_key(op, stack, which, at)) return;
  std::array<NamedTensor, 7> constants;
  for (size_t i = 0; i < 6; ++i) {
    constants[i] = {which.info->tables[i], &args.tensor(at.first_table + i)};
  }
  constants[6] = {"clip_bound", args.optional_tensor(at.clip_bound)};
  refuse_grad_of_constants(op, "model_output and x_t", constants);
  if (ran_without_graph<2>(op, stack, {&args.tensor(at.model_output), &args.tensor(at.x_t)})) {
    return;
  }
  const auto out = StepFunction::apply(args.tensor(at.model_output), args.tensor(at.x_t),
                                       KeptCall{&op, args.copy()});
  args.finish({out[0], out[1]});
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  for (const StepKindInfo& info : step_kinds()) {
    for (NoiseSource noise : kNoiseSources) {
      const std::string name =
          qualified_op_name(step_op_name(info, noise), step_overloads(noise)[0]);
      m.impl(name.c_str(), torch::CppFunction::makeFromBoxedFunction<&step_autograd>());
    }
  }
}

}  // namespace ops
}  // namespace ddpm
