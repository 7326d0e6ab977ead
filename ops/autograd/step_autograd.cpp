// Autograd of the reverse steps, every kind and noise source: (sample,
// pred_xstart) are differentiable in model_output (both halves for learned
// variances; the variance half gets zero from a DDIM step) and x_t. The
// tables, a clip bound and a multistep step's earlier pred_xstart are refused
// if they require grad; the noise is a constant. The backward is the kind's backward operator, its arguments
// taken by name from the forward call; for in-kernel noise it gets
// philox_normal(x_t, seed, offset) where it reads the noise (a learned
// variance's gradient: rounded to a 16-bit dtype there, where the forward
// used float).
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../operators.h"
#include "../step.h"
#include "autograd_call.h"

namespace ddpm {
namespace ops {
namespace {

c10::OperatorHandle find_op(const std::string& name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(("ddpm::" + name).c_str(), "");
}

// What a kind's autograd calls: its backward operator, and for a .generator
// call whose backward needs the noise, the (seed, offset) operator.
struct KindOps {
  c10::OperatorHandle backward, seeded;
};
const KindOps& kind_ops(const StepKindInfo& kind) {
  static const std::vector<KindOps> found = [] {
    std::vector<KindOps> all;
    for (const StepKindInfo& k : step_kinds()) {
      all.push_back({find_op(std::string(k.name) + "_backward"),
                     find_op(std::string(k.name) + "_philox")});
    }
    return all;
  }();
  return found.at(static_cast<size_t>(&kind - step_kinds().data()));
}

// The tensors the backward reads, saved by name (version-checked by autograd).
const char* const kSavedTensors[] = {"model_output", "x_t", "t", "noise"};

class StepFunction : public torch::autograd::Function<StepFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& model_output,
                               const Variable& x_t, const KeptCall& call, const StepArgs* at) {
    const auto& a = call.args;
    variable_list saved = {model_output, x_t, a[at->t].toTensor(),
                           at->noise >= 0 ? a[at->noise].toTensor() : Variable()};
    for (size_t i = 0; i < at->kind->table_count(); ++i) {
      saved.push_back(a[at->tables[i]].toTensor());
    }
    ctx->save_for_backward(saved);
    ctx->saved_data["kind"] = static_cast<int64_t>(at->kind - step_kinds().data());
    if (at->noise_source == NoiseSource::kPhilox) {
      ctx->saved_data["seed"] = a[at->key.seed];
      ctx->saved_data["offset"] = a[at->key.offset];
    }
    // every other argument the backward operator takes (the kind's own, the
    // modes, the clip bound), kept under its name
    for (int i : {at->eta, at->model_mean_type, at->model_var_type, at->clip_denoised,
                  at->clip_bound, at->clip_rescale, at->use_clipped_model_output,
                  at->solver_order, at->solver_type, at->algorithm_type}) {
      if (i >= 0) ctx->saved_data[call.op->schema().arguments()[i].name()] = a[i];
    }
    // no zero gradient is filled for an output the loss does not use: the
    // backward operator takes None for it and never reads it
    ctx->set_materialize_grads(false);
    const auto results = call.run_below_autograd();
    return {results[0].toTensor(), results[1].toTensor()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto& d = ctx->saved_data;
    const StepKindInfo& kind = step_kinds().at(static_cast<size_t>(d.at("kind").toInt()));
    const c10::OperatorHandle& op = kind_ops(kind).backward;
    // the backward operator's arguments, by name
    torch::jit::Stack stack;
    for (const c10::Argument& argument : op.schema().arguments()) {
      const std::string& name = argument.name();
      if (name == "grad_sample") {
        stack.push_back(grad_or_none(grads[0]));
      } else if (name == "grad_pred_xstart") {
        stack.push_back(grad_or_none(grads[1]));
      } else if (d.count(name) > 0) {
        stack.push_back(d.at(name));
      } else {
        stack.push_back(saved_tensor(kind, s, name));
      }
    }
    const StepArgs at(op.schema(), &kind);
    if (d.count("seed") > 0 &&
        step_backward_reads_noise(read_step_modes("ddpm", CallArgs(op, &stack), at),
                                  grads[0].defined() ? &grads[0] : nullptr)) {
      stack[static_cast<size_t>(at.noise)] =
          ddpm::philox_normal(s[1], d.at("seed").toInt(), d.at("offset").toInt());
    }
    op.callBoxed(&stack);
    return {stack[0].toTensor(), stack[1].toTensor(), Variable(), Variable()};
  }

 private:
  // the saved tensor of that name (model_output, x_t, t, noise, or a table)
  static c10::IValue saved_tensor(const StepKindInfo& kind, const variable_list& s,
                                  const std::string& name) {
    for (size_t i = 0; i < 4; ++i) {
      if (name == kSavedTensors[i]) return s[i].defined() ? c10::IValue(s[i]) : c10::IValue();
    }
    for (size_t i = 0; i < kind.table_count(); ++i) {
      if (name == kind.tables[i]) return s[4 + i];
    }
    TORCH_CHECK(false, "ddpm: ", kind.name, "_backward takes ", name,
                ", which its forward operators do not");
  }
};

// The step's arguments that are constants for autograd: refused if they
// require grad (autograd would leave their gradient None without a word).
void refuse_grad_of_step_constants(const CallArgs& args, const StepArgs& at) {
  std::array<NamedTensor, 9> constants;
  constants.fill({nullptr, nullptr});
  for (size_t i = 0; i < at.kind->table_count(); ++i) constants[i] = args.named_tensor(at.tables[i]);
  constants[6] = {"clip_bound", args.optional_tensor(at.clip_bound)};
  // (an earlier step's pred_xstart: its own step's gradient is that step's)
  for (size_t i = 0; i < 2; ++i) {
    if (at.history[i] >= 0) {
      constants[7 + i] = {args.name(at.history[i]), args.optional_tensor(at.history[i])};
    }
  }
  refuse_grad_of_constants(args.op(), "model_output and x_t", constants);
}

// A .generator or .key call whose backward needs its noise (a learned
// variance's gradient), run as the (seed, offset) operator with the key drawn
// or read here (once the call's constants and timesteps are known good), so
// that the backward can draw the same noise; a key that exists only on the
// device (a generator under CUDA graph capture, a key tensor on the GPU) is
// refused. Returns whether it ran.
// call_noise_key's view of this caller: a call that runs (its key is read).
struct KeyReader {
  static constexpr bool kRuns = true;
};

bool ran_with_drawn_key(CallArgs& args, const StepArgs& at) {
  const std::string name = error_name(args.op());
  if (!at::GradMode::is_enabled()) return false;
  if (!args.tensor(at.model_output).requires_grad() && !args.tensor(at.x_t).requires_grad()) {
    return false;
  }
  if (!reads_var_channels(read_step_modes(name.c_str(), args, at))) return false;
  refuse_grad_of_step_constants(args, at);
  const StepCall c = read_step_call(args, at);
  // the key as the kernels' backends take it (t checked before a generator draws)
  const NoiseKey key =
      call_noise_key<KeyReader>(name.c_str(), args, at.key, *c.x_t, c.t, c.num_timesteps);
  const bool from_key = at.noise_source == NoiseSource::kKey;
  TORCH_CHECK(!key.on_device(), name,
              ": a learned variance's gradient needs the step's noise again, and ",
              from_key ? "a key tensor on the GPU is read by the kernel only: pass the key on "
                         "the CPU"
                       : "inside a CUDA graph capture a generator's noise is known on the "
                         "device only: capture the step without gradients",
              ", or draw the noise as a tensor (p_sample with torch.randn_like)");
  const c10::OperatorHandle& seeded = kind_ops(*at.kind).seeded;
  torch::jit::Stack stack;
  for (const c10::Argument& argument : seeded.schema().arguments()) {
    if (argument.name() == "seed") {
      stack.push_back(static_cast<int64_t>(key.seed));
    } else if (argument.name() == "offset") {
      stack.push_back(static_cast<int64_t>(key.offset));
    } else {
      stack.push_back(args.value(arg(args.schema(), argument.name().c_str())));
    }
  }
  seeded.callBoxed(&stack);
  args.finish({stack[0].toTensor(), stack[1].toTensor()});
  return true;
}

struct StepAutograd {
  using Context = const StepKindInfo*;
  using Args = StepArgs;

  static void run(CallArgs& args, const StepArgs& at, c10::DispatchKeySet) {
    if ((at.noise_source == NoiseSource::kGenerator || at.noise_source == NoiseSource::kKey) &&
        ran_with_drawn_key(args, at)) {
      return;
    }
    refuse_grad_of_step_constants(args, at);
    const c10::OperatorHandle& op = args.op();
    if (ran_without_graph<2>(args, {&args.tensor(at.model_output), &args.tensor(at.x_t)})) {
      return;
    }
    refuse_inference_tensors(args);
    const auto out = StepFunction::apply(args.tensor(at.model_output), args.tensor(at.x_t),
                                         KeptCall{&op, args.copy()}, &at);
    args.finish({out[0], out[1]});
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  for (const OperatorDef& def : operator_defs()) {
    if (def.step_kind != nullptr && def.role == Role::kDifferentiable) {
      m.impl(def.name().c_str(), family_kernel<StepAutograd>(def.step_kind));
    }
  }
}

}  // namespace ops
}  // namespace ddpm
