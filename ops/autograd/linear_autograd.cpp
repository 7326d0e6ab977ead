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

#include "../ddpm_ops.h"
#include "autograd_call.h"

namespace ddpm {
namespace ops {
namespace {

// One linear operator as autograd sees it, by argument name: u and v (v null
// where the operator draws it), the tables a and b, the other constants
// refused alike (more tables, an optional noise_offset), its backward
// operator, and what is differentiable (for the message).
struct LinearInfo {
  const char *u, *v, *t, *a, *b;
  std::vector<const char*> other_constants;
  const char* backward_op;
  const char* differentiable;
};

const LinearInfo kQSample = {"x_start", "noise", "t", "sqrt_alphas_cumprod",
                             "sqrt_one_minus_alphas_cumprod", {"noise_offset"},
                             "q_sample_backward", "x_start and noise"};
// (a generator's key is not needed by the backward: the noise is no input)
const LinearInfo kQSamplePhilox = {"x_start", nullptr, "t", "sqrt_alphas_cumprod",
                                   "sqrt_one_minus_alphas_cumprod", {}, "q_sample_backward",
                                   "x_start"};
const LinearInfo kPosterior = {"x_start", "x_t", "t", "posterior_mean_coef1",
                               "posterior_mean_coef2",
                               {"posterior_variance", "posterior_log_variance_clipped"},
                               "posterior_mean_variance_backward", "x_start and x_t"};

// Where a linear operator's arguments are.
struct LinearArgs {
  int u, v, t, a, b;  // v: -1 where drawn
  std::vector<int> other_constants;
  const LinearInfo* info;
  LinearArgs(const c10::FunctionSchema& s, const LinearInfo* i)
      : u(arg(s, i->u)),
        v(i->v != nullptr ? arg(s, i->v) : -1),
        t(arg(s, i->t)),
        a(arg(s, i->a)),
        b(arg(s, i->b)),
        info(i) {
    for (const char* name : i->other_constants) other_constants.push_back(arg(s, name));
  }
};

class LinearFunction : public torch::autograd::Function<LinearFunction> {
 public:
  // v: an empty stand-in where the operator draws it.
  static variable_list forward(AutogradContext* ctx, const Variable& u, const Variable& v,
                               const KeptCall& call, const LinearArgs* at) {
    const auto& a = call.args;
    ctx->save_for_backward({a[at->t].toTensor(), a[at->a].toTensor(), a[at->b].toTensor()});
    ctx->saved_data["backward_op"] = std::string(at->info->backward_op);
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
    const variable_list none(4);
    if (!grad.defined()) return none;
    variable_list result = none;
    if (u_needs && v_needs) {
      const std::string op = "ddpm::" + ctx->saved_data["backward_op"].toStringRef();
      // through autograd: its not-implemented kernel makes a double backward an error
      torch::jit::Stack g = {grad, t, a, b};
      c10::Dispatcher::singleton().findSchemaOrThrow(op.c_str(), "").callBoxed(&g);
      result[0] = g[0].toTensor();
      result[1] = g[1].toTensor();
      return result;
    }
    if (u_needs) result[0] = ddpm::scale_by_timestep(grad, t, a);
    if (v_needs) result[1] = ddpm::scale_by_timestep(grad, t, b);
    return result;
  }
};

struct LinearAutograd {
  using Context = const LinearInfo*;
  using Args = LinearArgs;

  static void run(CallArgs& args, const Args& at, c10::DispatchKeySet) {
    std::vector<NamedTensor> constants = {args.named_tensor(at.a), args.named_tensor(at.b)};
    for (int i : at.other_constants) constants.push_back({args.name(i), args.optional_tensor(i)});
    refuse_grad_of_constants(args.op(), at.info->differentiable, constants);
    const at::Tensor* v_arg = at.v < 0 ? nullptr : &args.tensor(at.v);
    if (ran_without_graph<2>(args, {&args.tensor(at.u), v_arg})) return;
    refuse_inference_tensors(args);
    // a drawn v is no input: an empty stand-in that never requires grad
    // (autograd's Function takes no undefined input)
    const Variable v =
        at.v < 0 ? at::empty({0}, args.tensor(at.u).options()) : args.tensor(at.v);
    const variable_list out =
        LinearFunction::apply(args.tensor(at.u), v, KeptCall{&args.op(), args.copy()}, &at);
    args.finish(out);
  }
};

// philox_normal: data, not differentiable in its input (which gives the shape)
void philox_normal_autograd(const c10::OperatorHandle& op, c10::DispatchKeySet,
                            torch::jit::Stack* stack) {
  at::AutoDispatchBelowADInplaceOrView guard;
  op.callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  using F = torch::CppFunction;
  m.impl("q_sample", family_kernel<LinearAutograd>(&kQSample));
  m.impl("q_sample_philox", family_kernel<LinearAutograd>(&kQSamplePhilox));
  m.impl("q_sample_philox.generator", family_kernel<LinearAutograd>(&kQSamplePhilox));
  m.impl("q_sample_philox.key", family_kernel<LinearAutograd>(&kQSamplePhilox));
  m.impl("posterior_mean_variance", family_kernel<LinearAutograd>(&kPosterior));
  for (const char* name : {"philox_normal", "philox_normal.generator", "philox_normal.key"}) {
    m.impl(name, F::makeFromBoxedFunction<&philox_normal_autograd>());
  }
}

}  // namespace ops
}  // namespace ddpm
