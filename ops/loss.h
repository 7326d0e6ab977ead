// The training loss and its backward operator (see LossParams in
// ddpm/kernels.h): one boxed kernel each for every backend (see kernels.h
// for what a Backend is).
//   diffusion_mse(model_output, x_start, noise, t, sqrt_alphas_cumprod,
//                 sqrt_one_minus_alphas_cumprod, weight=None,
//                 target="epsilon", noise_offset=None) -> loss [B]
//     loss[b] = weight[t_b] * mean((model_output[b] - target[b])^2), in
//     float64 for float64 data, else float32
//   diffusion_mse_backward(grad, <the same>) -> grad_model_output
// model_output is read where it lies when each sample is contiguous (a
// channel slice such as the mean half of a learned-variance output is);
// otherwise from a contiguous copy.
#pragma once

#include <string>

#include "call_args.h"
#include "checks.h"

namespace ddpm {
namespace ops {

// Where diffusion_mse's (and its backward's) arguments are.
struct LossArgs {
  int grad;  // the backward's (-1 in the forward)
  int model_output, x_start, noise, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, weight,
      target, noise_offset;
  LossArgs(const c10::FunctionSchema& s, NoContext)
      : grad(optional_arg(s, "grad")), model_output(arg(s, "model_output")),
        x_start(arg(s, "x_start")), noise(arg(s, "noise")), t(arg(s, "t")),
        sqrt_alphas_cumprod(arg(s, "sqrt_alphas_cumprod")),
        sqrt_one_minus_alphas_cumprod(arg(s, "sqrt_one_minus_alphas_cumprod")),
        weight(arg(s, "weight")), target(arg(s, "target")),
        noise_offset(arg(s, "noise_offset")) {}
};

// A checked loss call.
struct LossCall {
  const at::Tensor *model_output, *x_start, *noise, *t, *a, *b, *weight, *noise_offset;
  LossTarget target;
  int64_t T;
};

inline LossCall check_loss_call(const char* op, const CallArgs& args, const LossArgs& at) {
  LossCall c;
  c.model_output = &args.tensor(at.model_output);
  c.x_start = &args.tensor(at.x_start);
  c.noise = &args.tensor(at.noise);
  c.t = &args.tensor(at.t);
  c.a = &args.tensor(at.sqrt_alphas_cumprod);
  c.b = &args.tensor(at.sqrt_one_minus_alphas_cumprod);
  c.weight = args.optional_tensor(at.weight);
  c.noise_offset = args.optional_tensor(at.noise_offset);
  check_data_tensor(op, "x_start", *c.x_start);
  check_like(op, args.named_tensor(at.model_output), args.named_tensor(at.x_start));
  check_like(op, args.named_tensor(at.noise), args.named_tensor(at.x_start));
  check_timesteps(op, *c.t, *c.x_start);
  const NamedTensor a = args.named_tensor(at.sqrt_alphas_cumprod);
  const NamedTensor b = args.named_tensor(at.sqrt_one_minus_alphas_cumprod);
  c.T = c.weight == nullptr ? check_tables(op, {a, b}, *c.x_start)
                            : check_tables(op, {a, b, {"weight", c.weight}}, *c.x_start);
  c.target = parse_loss_target(op, args.str(at.target));
  check_noise_offset(op, c.noise_offset, *c.x_start);
  return c;
}

// The loss's dtype: the sum's (float32 for 16-bit data).
inline at::ScalarType loss_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// model_output as the kernels read it: itself when each sample is
// contiguous (any batch stride), else a contiguous copy.
inline at::Tensor samples_contiguous(const at::Tensor& x) {
  int64_t expected = 1;
  for (int64_t d = x.dim() - 1; d >= 1; --d) {
    if (x.size(d) != 1 && x.stride(d) != expected) return x.contiguous();
    expected *= x.size(d);
  }
  return x;
}

// The fields both directions share, from contiguous operands.
template <typename S, typename Tab, typename P>
void fill_loss_params(P& p, const LossCall& c, const at::Tensor& model_output,
                      const at::Tensor& x_start, const at::Tensor& noise, const at::Tensor& t,
                      const at::Tensor& a, const at::Tensor& b, const at::Tensor& weight,
                      const at::Tensor& noise_offset) {
  p.model_output = data_of<S>(model_output);
  p.model_output_batch_stride = model_output.stride(0);
  p.x_start = data_of<S>(x_start);
  p.noise = data_of<S>(noise);
  p.timesteps = {t.data_ptr<int64_t>(), c.T};
  p.tables = {a.data_ptr<Tab>(), b.data_ptr<Tab>()};
  p.weight = weight.defined() ? weight.data_ptr<Tab>() : nullptr;
  p.target = c.target;
  p.batch = x_start.size(0);
  p.sample_numel = sample_numel(x_start);
  p.noise_offset = noise_offset_of<S>(noise_offset, x_start);
}

// Runs fn(S{}, Tab{}, operands...) with the operands made contiguous as the
// kernels read them.
template <typename Fn>
void with_loss_operands(const LossCall& c, const Fn& fn) {
  const at::Tensor model_output = samples_contiguous(*c.model_output);
  const at::Tensor x_start = c.x_start->contiguous(), noise = c.noise->contiguous();
  const at::Tensor t = c.t->contiguous(), a = c.a->contiguous(), b = c.b->contiguous();
  const at::Tensor weight = c.weight != nullptr ? c.weight->contiguous() : at::Tensor();
  const at::Tensor noise_offset =
      c.noise_offset != nullptr ? c.noise_offset->contiguous() : at::Tensor();
  dispatch_types(x_start.scalar_type(), a.scalar_type(), [&](auto s, auto tab) {
    fn(s, tab, model_output, x_start, noise, t, a, b, weight, noise_offset);
  });
}

// diffusion_mse: the loss, [B]; diffusion_mse_backward: model_output's
// gradient from the loss's (grad, [B]).
struct DiffusionMse {
  using Context = NoContext;
  using Args = LossArgs;

  template <typename Backend>
  static void run(CallArgs& args, const Args& at) {
    const std::string name = error_name(args.op());
    const char* n = name.c_str();
    const LossCall c = check_loss_call(n, args, at);
    const bool backward = at.grad >= 0;
    const c10::SymInt batch = c.x_start->sym_size(0);
    const at::ScalarType dtype = loss_dtype(*c.x_start);
    if (backward) {
      const at::Tensor& grad = args.tensor(at.grad);
      TORCH_CHECK(grad.scalar_type() == dtype && grad.dim() == 1 && grad.sym_size(0) == batch &&
                      grad.device() == c.x_start->device(),
                  n, ": expected grad to be the loss's gradient, a ", dtype, " tensor of shape [",
                  batch, "] on ", c.x_start->device(), ", got ", grad.scalar_type(), " ",
                  grad.sym_sizes(), " on ", grad.device());
    }
    const typename Backend::Guard guard(c.x_start->device());
    at::Tensor result = backward ? at::empty_like(*c.x_start, at::MemoryFormat::Contiguous)
                                 : at::empty_symint({batch}, c.x_start->options().dtype(dtype));
    if (Backend::kRuns && c.x_start->size(0) > 0) {
      const at::Tensor grad = backward ? args.tensor(at.grad).contiguous() : at::Tensor();
      const int64_t tiles = c.x_start->size(0) * loss_tiles_per_sample(sample_numel(*c.x_start));
      const at::Tensor partials =
          backward ? at::Tensor() : at::empty({tiles}, c.x_start->options().dtype(at::kDouble));
      with_loss_operands(c, [&](auto s, auto tab, const auto&... operands) {
        using S = decltype(s);
        using Tab = decltype(tab);
        int64_t bad;
        if (backward) {
          LossBackwardParams<S, Tab> p;
          fill_loss_params<S, Tab>(p, c, operands...);
          p.grad = grad.data_ptr<acc_t<S>>();
          p.grad_model_output = mutable_data_of<S>(result);
          bad = Backend::run(p);
        } else {
          LossParams<S, Tab> p;
          fill_loss_params<S, Tab>(p, c, operands...);
          p.loss = result.data_ptr<acc_t<S>>();
          p.partials = partials.data_ptr<double>();
          bad = Backend::run(p);
        }
        if (bad >= 0) fail_bad_timestep(n, *c.t, bad, c.T);
      });
    }
    args.finish({result});
  }
};

}  // namespace ops
}  // namespace ddpm
