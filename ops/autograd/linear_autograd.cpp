// Autograd of the per-sample linear operators, out = a[t]*u + b[t]*v:
//   q_sample                 in x_start and noise
//   q_sample_philox          in x_start (the drawn noise is data, like
//                            randn's result, and is not differentiable)
//   posterior_mean_variance  the mean, in x_start and x_t (variance and
//                            log_variance depend on t alone)
// and philox_normal (its result does not require grad). The tables are
// refused if they require grad. The backward passes are operators: the
// operator's backward (both gradients, one read and two writes), or
// scale_by_timestep where one input alone needs a gradient (one read, one
// write: training's usual case, where q_sample's noise is a constant).
#include <torch/library.h>

#include <string>
#include <vector>

#include "../ddpm_ops.h"
#include "../op_table.h"
#include "autograd_call.h"

namespace ddpm {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

// One linear operator as autograd sees it: argument positions (v SIZE_MAX:
// drawn, not an input), its tables, its backward operator.
struct LinearAutograd {
  std::string op;        // its name
  std::string overload;  // and overload
  size_t u, v, t, a, b;
  std::vector<size_t> other_tables;  // refused with a and b if they require grad
  size_t optional_constant;          // a Tensor? refused alike (SIZE_MAX: none)
  const char* backward_op;
  const char* differentiable;  // for the message
};

const std::vector<LinearAutograd>& linear_operators() {
  using Q = QSampleArgs;
  using QP = QSamplePhiloxArgs;
  using QG = QSampleGeneratorArgs;
  using P = PosteriorArgs;
  static const std::vector<LinearAutograd> all = {
      {"q_sample", "", Q::x_start, Q::noise, Q::t, Q::sqrt_alphas_cumprod,
       Q::sqrt_one_minus_alphas_cumprod, {}, Q::noise_offset, "q_sample_backward",
       "x_start and noise"},
      {"q_sample_philox", "", QP::x_start, SIZE_MAX, QP::t, QP::sqrt_alphas_cumprod,
       QP::sqrt_one_minus_alphas_cumprod, {}, SIZE_MAX, "q_sample_backward", "x_start"},
      // the drawn key is not needed by the backward: the generator's is drawn
      // by the kernel, on the device under graph capture
      {"q_sample_philox", "generator", QG::x_start, SIZE_MAX, QG::t, QG::sqrt_alphas_cumprod,
       QG::sqrt_one_minus_alphas_cumprod, {}, SIZE_MAX, "q_sample_backward", "x_start"},
      {"posterior_mean_variance", "", P::x_start, P::x_t, P::t, P::posterior_mean_coef1,
       P::posterior_mean_coef2, {P::posterior_variance, P::posterior_log_variance_clipped},
       SIZE_MAX, "posterior_mean_variance_backward", "x_start and x_t"},
  };
  return all;
}

const LinearAutograd& linear_operator(const c10::OperatorHandle& op) {
  const std::string& name = op.schema().name();  // "ddpm::q_sample"
  const std::string& overload = op.schema().overload_name();
  for (const LinearAutograd& info : linear_operators()) {
    if (name.size() == info.op.size() + 6 && name.compare(6, std::string::npos, info.op) == 0 &&
        overload == info.overload) {
      return info;
    }
  }
  TORCH_CHECK(false, "ddpm: ", name, " is not a linear operator");
}

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  // v: an empty stand-in where the operator draws it.
  static variable_list forward(AutogradContext* ctx, const Variable& u, const Variable& v,
                               const KeptCall& call, const LinearAutograd* info) {
    const auto& a = call.args;
    ctx->save_for_backward({a[info->t].toTensor(), a[info->a].toTensor(), a[info->b].toTensor()});
    ctx->saved_data["backward_op"] = std::string(info->backward_op);
    variable_list results;
    for (const c10::IValue& r : call.run_below_autograd()) results.push_back(r.toTensor());
    // the outputs after the first (drawn noise, variances) have no gradient;
    // no zero gradient is filled at x's full shape for them, nor for an
    // unused first output
    ctx->mark_non_differentiable(variable_list(results.begin() + 1, results.end()));
    ctx->set_materialize_grads(false);
    return results;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &grad = grads[0], &t = saved[0], &a = saved[1], &b = saved[2];
    const bool u_needs = ctx->needs_input_grad(0), v_needs = ctx->needs_input_grad(1);
    if (!grad.defined()) return {Variable(), Variable(), Variable(), Variable()};
    if (u_needs && v_needs) {
      const std::string op = ctx->saved_data["backward_op"].toStringRef();
      // through autograd: its not-implemented kernel makes a double backward an error
      torch::jit::Stack g = {grad, t, a, b};
      backward_handle(op).callBoxed(&g);
      return {g[0].toTensor(), g[1].toTensor(), Variable(), Variable()};
    }
    return {u_needs ? ddpm::scale_by_timestep(grad, t, a) : Variable(),
            v_needs ? ddpm::scale_by_timestep(grad, t, b) : Variable(), Variable(), Variable()};
  }

 private:
  static const c10::OperatorHandle& backward_handle(const std::string& name) {
    static const std::vector<std::pair<std::string, c10::OperatorHandle>> handles = [] {
      std::vector<std::pair<std::string, c10::OperatorHandle>> found;
      for (const LinearAutograd& info : linear_operators()) {
        found.emplace_back(info.backward_op, c10::Dispatcher::singleton().findSchemaOrThrow(
                                                 (std::string("ddpm::") + info.backward_op).c_str(),
                                                 ""));
      }
      return found;
    }();
    for (const auto& h : handles) {
      if (h.first == name) return h.second;
    }
    TORCH_CHECK(false, "ddpm: no backward operator ", name);
  }
};

void linear_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const LinearAutograd& info = linear_operator(op);
  std::array<NamedTensor, 4> tables = {args.named_tensor(info.a), args.named_tensor(info.b)};
  size_t num_tables = 2;
  for (size_t i : info.other_tables) tables[num_tables++] = args.named_tensor(i);
  if (info.optional_constant != SIZE_MAX) {
    tables[num_tables++] = {args.name(info.optional_constant),
                            args.optional_tensor(info.optional_constant)};
  }
  refuse_grad_of_constants(op, info.differentiable,
                           c10::ArrayRef<NamedTensor>(tables.data(), num_tables));
  const at::Tensor* v_arg = info.v == SIZE_MAX ? nullptr : &args.tensor(info.v);
  if (ran_without_graph<2>(op, stack, {&args.tensor(info.u), v_arg})) return;
  // a drawn v is no input: an empty stand-in that never requires grad
  // (autograd's Function takes no undefined input)
  const Variable v =
      info.v == SIZE_MAX ? at::empty({0}, args.tensor(info.u).options()) : args.tensor(info.v);
  const variable_list out =
      LinearFunction::apply(args.tensor(info.u), v, KeptCall{&op, args.copy()}, &info);
  args.finish(out);
}

// philox_normal: data, not differentiable in its input (which gives the shape)
void philox_normal_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet,
                            torch::jit::Stack* stack) {
  at::AutoDispatchBelowADInplaceOrView guard;
  op.callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  using F = torch::CppFunction;
  for (const LinearAutograd& info : linear_operators()) {
    const std::string name = qualified_op_name(info.op, info.overload);
    m.impl(name.c_str(), F::makeFromBoxedFunction<&linear_autograd>());
  }
  for (const char* name : {"philox_normal", "philox_normal.generator"}) {
    m.impl(name, F::makeFromBoxedFunction<&philox_normal_autograd>());
  }
}

}  // namespace ops
}  // namespace ddpm
