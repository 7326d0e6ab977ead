// Autograd of diffusion_mse, in model_output, x_start and noise (the tables,
// weight and noise_offset are refused if they require grad). The backward operator writes
// model_output's gradient in one pass; the target's inputs get theirs from
// it where they require grad (rare in training: the data and the noise are
// constants), since d loss/d target = -d loss/d out:
//   epsilon: grad_noise = -g;  start_x: grad_x_start = -g;
//   v:       grad_noise = -sqrt(abar)*g, grad_x_start = sqrt(1-abar)*g.
#include <torch/library.h>

#include "../ddpm_ops.h"
#include "../loss.h"
#include "autograd_call.h"

namespace ddpm {
namespace ops {
namespace {

class DiffusionMseFunction : public torch::autograd::Function<DiffusionMseFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& model_output,
                               const Variable& x_start, const Variable& noise,
                               const KeptCall& call, const LossArgs* at) {
    const auto& a = call.args;
    const auto tensor_or_undefined = [&](int i) {
      return a[i].isTensor() ? a[i].toTensor() : at::Tensor();
    };
    ctx->save_for_backward({model_output, x_start, noise, a[at->t].toTensor(),
                            a[at->sqrt_alphas_cumprod].toTensor(),
                            a[at->sqrt_one_minus_alphas_cumprod].toTensor(),
                            tensor_or_undefined(at->weight),
                            tensor_or_undefined(at->noise_offset)});
    ctx->saved_data["target"] = a[at->target];
    ctx->set_materialize_grads(false);
    return {call.run_below_autograd()[0].toTensor()};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return {Variable(), Variable(), Variable(), Variable(), Variable()};
    const auto s = ctx->get_saved_variables();
    const at::Tensor &t = s[3], &sqrt_abar = s[4], &sqrt_one_minus_abar = s[5];
    const std::string target = ctx->saved_data["target"].toStringRef();
    // through autograd: its not-implemented kernel makes a double backward an error
    torch::jit::Stack stack = {grad, s[0], s[1], s[2], t, sqrt_abar, sqrt_one_minus_abar,
                               grad_or_none(s[6]), target, grad_or_none(s[7])};
    backward_handle().callBoxed(&stack);
    const at::Tensor g = stack[0].toTensor();
    const LossTarget kind = parse_loss_target("ddpm.diffusion_mse", target);
    Variable grad_x_start, grad_noise;
    if (ctx->needs_input_grad(1)) {
      if (kind == LossTarget::kStartX) grad_x_start = -g;
      if (kind == LossTarget::kV) grad_x_start = ddpm::scale_by_timestep(g, t, sqrt_one_minus_abar);
    }
    if (ctx->needs_input_grad(2)) {
      if (kind == LossTarget::kEpsilon) grad_noise = -g;
      if (kind == LossTarget::kV) grad_noise = -ddpm::scale_by_timestep(g, t, sqrt_abar);
    }
    return {ctx->needs_input_grad(0) ? g : Variable(), grad_x_start, grad_noise, Variable(),
            Variable()};
  }

 private:
  static const c10::OperatorHandle& backward_handle() {
    static const c10::OperatorHandle handle =
        c10::Dispatcher::singleton().findSchemaOrThrow("ddpm::diffusion_mse_backward", "");
    return handle;
  }
};

struct DiffusionMseAutograd {
  using Context = NoContext;
  using Args = LossArgs;

  static void run(CallArgs& args, const LossArgs& at, c10::DispatchKeySet) {
    const std::array<NamedTensor, 4> constants = {
        args.named_tensor(at.sqrt_alphas_cumprod),
        args.named_tensor(at.sqrt_one_minus_alphas_cumprod),
        NamedTensor{"weight", args.optional_tensor(at.weight)},
        NamedTensor{"noise_offset", args.optional_tensor(at.noise_offset)}};
    refuse_grad_of_constants(args.op(), "model_output, x_start and noise", constants);
    const at::Tensor &model_output = args.tensor(at.model_output),
                     &x_start = args.tensor(at.x_start), &noise = args.tensor(at.noise);
    if (ran_without_graph<3>(args, {&model_output, &x_start, &noise})) return;
    refuse_inference_tensors(args);
    const variable_list out = DiffusionMseFunction::apply(
        model_output, x_start, noise, KeptCall{&args.op(), args.copy()}, &at);
    args.finish(out);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("diffusion_mse", family_kernel<DiffusionMseAutograd>());
}

}  // namespace ops
}  // namespace ddpm
