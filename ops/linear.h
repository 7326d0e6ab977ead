// The per-sample linear operators, out = a[t]*u + b[t]*v, and their backward
// operators: one boxed kernel each for every backend (see step.h for what a
// Backend is).
//   q_sample:  x_t = sqrt_alphas_cumprod[t]*x_start
//                    + sqrt_one_minus_alphas_cumprod[t]*noise
//              (functional, out=; q_sample_philox: the noise drawn in the
//              kernel, returned too)
//   posterior_mean_variance:  mean = posterior_mean_coef1[t]*x_start
//                                    + posterior_mean_coef2[t]*x_t
//              with variance and log_variance, one value per sample returned
//              as [B, 1, ..., 1] views expanded to x's shape, as
//              improved-diffusion's _extract_into_tensor broadcasts them
//   backward:  (a[t]*grad, b[t]*grad): q_sample_backward,
//              posterior_mean_variance_backward; scale_by_timestep: the first
//   philox_normal: the noise alone
#pragma once

#include <array>
#include <cstdint>

#include "call_args.h"
#include "checks.h"
#include "op_table.h"

namespace ddpm {
namespace ops {

// The backward operators' shared positions, as the table spells them.
struct LinearBackwardArgs {
  enum : size_t { grad = 0, t = 1, a = 2, b = 3 };
};
// (positions of different operators' enums: compared as numbers)
constexpr bool same_position(size_t a, size_t b) { return a == b; }
static_assert(same_position(QSampleBackwardArgs::t, LinearBackwardArgs::t) &&
                  same_position(PosteriorBackwardArgs::t, LinearBackwardArgs::t) &&
                  same_position(ScaleByTimestepArgs::t, LinearBackwardArgs::t) &&
                  same_position(QSampleBackwardArgs::sqrt_one_minus_alphas_cumprod,
                                LinearBackwardArgs::b) &&
                  same_position(PosteriorBackwardArgs::posterior_mean_coef2,
                                LinearBackwardArgs::b) &&
                  same_position(ScaleByTimestepArgs::table, LinearBackwardArgs::a),
              "the backward operators' arguments moved");

// A checked linear call, ready to run.
struct LinearCall {
  const at::Tensor* u;
  const at::Tensor* v;  // null: drawn in the kernel from key into noise_out
  NoiseKey key = {0, 0};
  const at::Tensor* t;
  const at::Tensor *a, *b;
  std::array<const at::Tensor*, 2> per_sample_tables = {nullptr, nullptr};
  const at::Tensor* noise_offset = nullptr;  // q_sample's, added to v
  int64_t T;
};

// The positions of a linear call's arguments (v: SIZE_MAX where drawn;
// per_sample: SIZE_MAX where none).
struct LinearPositions {
  size_t u, v, t, a, b;
  std::array<size_t, 2> per_sample = {SIZE_MAX, SIZE_MAX};
};

// Checks u (a data tensor), v (like u, if it is an argument), t and the
// tables (per-sample ones included); returns the call.
inline LinearCall check_linear_call(const char* op, const CallArgs& args,
                                    const LinearPositions& at) {
  LinearCall c;
  c.u = &args.tensor(at.u);
  c.v = at.v == SIZE_MAX ? nullptr : &args.tensor(at.v);
  c.t = &args.tensor(at.t);
  c.a = &args.tensor(at.a);
  c.b = &args.tensor(at.b);
  const auto& per_sample = at.per_sample;
  const size_t a = at.a, b = at.b;
  check_data_tensor(op, args.name(at.u), *c.u);
  if (c.v != nullptr) check_like(op, args.named_tensor(at.v), args.named_tensor(at.u));
  check_timesteps(op, *c.t, *c.u);
  if (per_sample[0] == SIZE_MAX) {
    c.T = check_tables(op, {args.named_tensor(a), args.named_tensor(b)}, *c.u);
  } else {
    c.T = check_tables(op,
                       {args.named_tensor(a), args.named_tensor(b),
                        args.named_tensor(per_sample[0]), args.named_tensor(per_sample[1])},
                       *c.u);
    c.per_sample_tables = {&args.tensor(per_sample[0]), &args.tensor(per_sample[1])};
  }
  return c;
}

// Runs the kernel: out (and noise_out, and per_sample where the call has
// per-sample tables) are allocated and checked.
template <typename Backend>
void run_linear(const char* op, const LinearCall& c, at::Tensor& out, at::Tensor* noise_out,
                std::array<at::Tensor, 2>* per_sample) {
  const bool has_per_sample = c.per_sample_tables[0] != nullptr;
  if (!Backend::kRuns || c.u->size(0) == 0 || (c.u->numel() == 0 && !has_per_sample)) return;
  const at::Tensor u = c.u->contiguous();
  const at::Tensor v = c.v != nullptr ? c.v->contiguous() : at::Tensor();
  const at::Tensor t = c.t->contiguous();
  const at::Tensor a = c.a->contiguous(), b = c.b->contiguous();
  const at::Tensor noise_offset =
      c.noise_offset != nullptr ? c.noise_offset->contiguous() : at::Tensor();
  std::array<at::Tensor, 2> per_sample_tables;
  if (has_per_sample) {
    for (int j = 0; j < 2; ++j) per_sample_tables[j] = c.per_sample_tables[j]->contiguous();
  }
  dispatch_types(u.scalar_type(), a.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    LinearParams<S, Tab> p;
    p.u = data_of<S>(u);
    p.v = v.defined() ? data_of<S>(v) : nullptr;
    p.out = mutable_data_of<S>(out);
    p.timesteps = {t.data_ptr<int64_t>(), c.T};
    p.tables = {a.data_ptr<Tab>(), b.data_ptr<Tab>()};
    p.batch = u.size(0);
    p.sample_numel = sample_numel(u);
    p.generate_noise = !v.defined();
    p.noise_key = c.key;
    p.noise_out = noise_out != nullptr ? mutable_data_of<S>(*noise_out) : nullptr;
    p.noise_offset = noise_offset_of<S>(noise_offset, u);
    if (has_per_sample) {
      for (int j = 0; j < 2; ++j) {
        p.per_sample_tables[j] = per_sample_tables[j].data_ptr<Tab>();
        p.per_sample[j] = mutable_data_of<S>((*per_sample)[j]);
      }
    }
    const int64_t bad = Backend::run(p);
    if (bad >= 0) fail_bad_timestep(op, t, bad, c.T);
  });
}

// q_sample and q_sample.out: the output may be x_start (in place); no other
// overlap. With a noise_offset [B, C] the noise is noise + noise_offset[b, c].
template <typename Backend>
void q_sample_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet, torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  using A = QSampleArgs;
  LinearCall c = check_linear_call(
      name.c_str(), args,
      {A::x_start, A::noise, A::t, A::sqrt_alphas_cumprod, A::sqrt_one_minus_alphas_cumprod});
  c.noise_offset = args.optional_tensor(A::noise_offset);
  check_noise_offset(name.c_str(), c.noise_offset, *c.u);
  const typename Backend::Guard guard(c.u->device());
  at::Tensor out = output_like(
      name.c_str(), "out", args.overload() == "out" ? &args.tensor(A::out) : nullptr, *c.u,
      {{"x_start", c.u, true}, {"noise", c.v, false}, {"noise_offset", c.noise_offset, false}});
  run_linear<Backend>(name.c_str(), c, out, nullptr, nullptr);
  args.finish({out});
}

// q_sample_philox: (x_t, noise) with the noise drawn from (seed, offset),
// or (.generator) from the key drawn from a generator
template <typename Backend>
void q_sample_philox_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                            torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  using A = QSamplePhiloxArgs;
  using G = QSampleGeneratorArgs;
  const bool generator = args.overload() == "generator";
  LinearCall c = check_linear_call(
      name.c_str(), args,
      generator ? LinearPositions{G::x_start, SIZE_MAX, G::t, G::sqrt_alphas_cumprod,
                                  G::sqrt_one_minus_alphas_cumprod}
                : LinearPositions{A::x_start, SIZE_MAX, A::t, A::sqrt_alphas_cumprod,
                                  A::sqrt_one_minus_alphas_cumprod});
  if (!generator) {
    c.key = check_noise_key(name.c_str(), args.integer(A::seed), args.integer(A::offset));
  } else if (Backend::kRuns) {
    c.key = draw_noise_key(name.c_str(), args.value(G::generator), c.u->device());
  }
  const typename Backend::Guard guard(c.u->device());
  at::Tensor out = at::empty_like(*c.u, at::MemoryFormat::Contiguous);
  at::Tensor noise = at::empty_like(*c.u, at::MemoryFormat::Contiguous);
  run_linear<Backend>(name.c_str(), c, out, &noise, nullptr);
  args.finish({out, noise});
}

// posterior_mean_variance and .out: the mean may be x_t (in place); no
// other overlap.
template <typename Backend>
void posterior_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                      torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  using A = PosteriorArgs;
  const LinearCall c = check_linear_call(
      name.c_str(), args,
      {A::x_start, A::x_t, A::t, A::posterior_mean_coef1, A::posterior_mean_coef2,
       {A::posterior_variance, A::posterior_log_variance_clipped}});
  const at::Tensor& x_start = *c.u;
  const typename Backend::Guard guard(x_start.device());
  at::Tensor mean = output_like(name.c_str(), "mean",
                                args.overload() == "out" ? &args.tensor(A::mean) : nullptr,
                                x_start, {{"x_start", c.u, false}, {"x_t", c.v, true}});
  std::array<at::Tensor, 2> variances = {at::empty({x_start.size(0)}, x_start.options()),
                                         at::empty({x_start.size(0)}, x_start.options())};
  run_linear<Backend>(name.c_str(), c, mean, nullptr, &variances);
  const auto shape = per_sample_shape(x_start);
  args.finish({mean, variances[0].view(shape).expand(x_start.sizes()),
               variances[1].view(shape).expand(x_start.sizes())});
}

// q_sample_backward, posterior_mean_variance_backward: (a[t]*grad,
// b[t]*grad); scale_by_timestep: a[t]*grad alone (one read, one write).
template <typename Backend>
void linear_backward_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                            torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  const char* n = name.c_str();
  using A = LinearBackwardArgs;
  const bool both = args.count() > A::b;
  const at::Tensor& grad = args.tensor(A::grad);
  const at::Tensor& t = args.tensor(A::t);
  check_data_tensor(n, args.name(A::grad), grad);
  check_timesteps(n, t, grad);
  const int64_t T =
      both ? check_tables(n, {args.named_tensor(A::a), args.named_tensor(A::b)}, grad)
           : check_tables(n, {args.named_tensor(A::a)}, grad);
  const typename Backend::Guard guard(grad.device());
  at::Tensor grad_u = at::empty_like(grad, at::MemoryFormat::Contiguous);
  at::Tensor grad_v = both ? at::empty_like(grad, at::MemoryFormat::Contiguous) : at::Tensor();
  if (Backend::kRuns && grad.numel() > 0) {
    const at::Tensor g = grad.contiguous();
    const at::Tensor tc = t.contiguous();
    const at::Tensor a = args.tensor(A::a).contiguous();
    const at::Tensor b = both ? args.tensor(A::b).contiguous() : a;
    dispatch_types(g.scalar_type(), a.scalar_type(), [&](auto s, auto tb) {
      using S = decltype(s);
      using Tab = decltype(tb);
      LinearBackwardParams<S, Tab> p;
      p.grad = data_of<S>(g);
      p.grad_u = mutable_data_of<S>(grad_u);
      p.grad_v = both ? mutable_data_of<S>(grad_v) : nullptr;
      p.timesteps = {tc.data_ptr<int64_t>(), T};
      p.tables = {a.data_ptr<Tab>(), b.data_ptr<Tab>()};
      p.batch = g.size(0);
      p.sample_numel = sample_numel(g);
      const int64_t bad = Backend::run(p);
      if (bad >= 0) fail_bad_timestep(n, tc, bad, T);
    });
  }
  if (both) {
    args.finish({grad_u, grad_v});
  } else {
    args.finish({grad_u});
  }
}

// philox_normal: a contiguous tensor like input holding the noise of (seed, offset)
template <typename Backend>
void philox_normal_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                          torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const std::string name = error_name(op);
  using A = PhiloxNormalArgs;
  using G = PhiloxNormalGeneratorArgs;
  static_assert(same_position(A::input, G::input), "philox_normal's input moved");
  const at::Tensor& input = args.tensor(A::input);
  check_float_dtype(name.c_str(), "input", input);
  NoiseKey key = {0, 0};
  if (args.overload() != "generator") {
    key = check_noise_key(name.c_str(), args.integer(A::seed), args.integer(A::offset));
  } else if (Backend::kRuns) {
    key = draw_noise_key(name.c_str(), args.value(G::generator), input.device());
  }
  const typename Backend::Guard guard(input.device());
  at::Tensor out = at::empty_like(input, at::MemoryFormat::Contiguous);
  if (Backend::kRuns && out.numel() > 0) {
    dispatch_types(out.scalar_type(), at::kFloat, [&](auto s, auto) {
      using S = decltype(s);
      Backend::run(PhiloxNormalParams<S>{mutable_data_of<S>(out), out.numel(), key});
    });
  }
  args.finish({out});
}

}  // namespace ops
}  // namespace ddpm
