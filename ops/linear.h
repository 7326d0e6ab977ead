// The per-sample linear operators, out = a[t]*u + b[t]*v, and their backward
// operators: one boxed kernel per family for every backend (see kernels.h
// for what a Backend is).
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

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "call_args.h"
#include "checks.h"

namespace ddpm {
namespace ops {

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

// Checks u (a data tensor), v (like u, where the call has it: v >= 0), t and
// the tables (per-sample ones included, where per_sample[0] >= 0); returns
// the call.
inline LinearCall check_linear_call(const char* op, const CallArgs& args, int u, int v, int t,
                                    int a, int b, std::array<int, 2> per_sample = {-1, -1}) {
  LinearCall c;
  c.u = &args.tensor(u);
  c.v = v < 0 ? nullptr : &args.tensor(v);
  c.t = &args.tensor(t);
  c.a = &args.tensor(a);
  c.b = &args.tensor(b);
  check_data_tensor(op, args.name(u), *c.u);
  if (c.v != nullptr) check_like(op, args.named_tensor(v), args.named_tensor(u));
  check_timesteps(op, *c.t, *c.u);
  if (per_sample[0] < 0) {
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
// per-sample tables) are allocated and checked. Every sample's t is read,
// also where the samples are empty.
template <typename Backend>
void run_linear(const char* op, const LinearCall& c, at::Tensor& out, at::Tensor* noise_out,
                std::array<at::Tensor, 2>* per_sample) {
  const bool has_per_sample = c.per_sample_tables[0] != nullptr;
  if (!Backend::kRuns || c.u->size(0) == 0) return;
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

// q_sample and q_sample.out: x_t from x_start and a noise tensor (noise +
// noise_offset[b, c] with a [B, C] offset); the output may be x_start (in
// place), no other overlap. q_sample_philox (and .generator): (x_t, noise),
// the noise drawn in the kernel from (seed, offset) or from a generator's
// key, drawn once the call is known good.
struct QSample {
  using Context = NoContext;
  struct Args {
    int x_start, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod;
    int noise, noise_offset, out;  // q_sample's (-1 in q_sample_philox's)
    NoiseKeyArgs key;              // q_sample_philox's
    Args(const c10::FunctionSchema& s, NoContext)
        : x_start(arg(s, "x_start")), t(arg(s, "t")),
          sqrt_alphas_cumprod(arg(s, "sqrt_alphas_cumprod")),
          sqrt_one_minus_alphas_cumprod(arg(s, "sqrt_one_minus_alphas_cumprod")),
          noise(optional_arg(s, "noise")), noise_offset(optional_arg(s, "noise_offset")),
          out(optional_arg(s, "out")), key(s) {}
  };

  template <typename Backend>
  static void run(CallArgs& args, const Args& at) {
    const std::string name = error_name(args.op());
    const bool drawn = at.noise < 0;
    LinearCall c = check_linear_call(name.c_str(), args, at.x_start, at.noise, at.t,
                                     at.sqrt_alphas_cumprod, at.sqrt_one_minus_alphas_cumprod);
    c.noise_offset = args.optional_tensor(at.noise_offset);
    check_noise_offset(name.c_str(), c.noise_offset, *c.u);
    const typename Backend::Guard guard(c.u->device());
    if (drawn) c.key = call_noise_key<Backend>(name.c_str(), args, at.key, *c.u, c.t, c.T);
    at::Tensor out = output_like(name.c_str(), args, at.out, *c.u, at.x_start);
    at::Tensor noise = drawn ? at::empty_like(*c.u, at::MemoryFormat::Contiguous) : at::Tensor();
    run_linear<Backend>(name.c_str(), c, out, drawn ? &noise : nullptr, nullptr);
    args.finish(drawn ? std::vector<at::Tensor>{out, noise} : std::vector<at::Tensor>{out});
  }
};

// posterior_mean_variance and .out: the mean may be x_t (in place); no
// other overlap.
struct Posterior {
  using Context = NoContext;
  struct Args {
    int x_start, x_t, t, posterior_mean_coef1, posterior_mean_coef2, posterior_variance,
        posterior_log_variance_clipped;
    int mean;  // .out's (-1: allocated)
    Args(const c10::FunctionSchema& s, NoContext)
        : x_start(arg(s, "x_start")), x_t(arg(s, "x_t")), t(arg(s, "t")),
          posterior_mean_coef1(arg(s, "posterior_mean_coef1")),
          posterior_mean_coef2(arg(s, "posterior_mean_coef2")),
          posterior_variance(arg(s, "posterior_variance")),
          posterior_log_variance_clipped(arg(s, "posterior_log_variance_clipped")),
          mean(optional_arg(s, "mean")) {}
  };

  template <typename Backend>
  static void run(CallArgs& args, const Args& at) {
    const std::string name = error_name(args.op());
    const LinearCall c = check_linear_call(
        name.c_str(), args, at.x_start, at.x_t, at.t, at.posterior_mean_coef1,
        at.posterior_mean_coef2, {at.posterior_variance, at.posterior_log_variance_clipped});
    const at::Tensor& x_start = *c.u;
    const typename Backend::Guard guard(x_start.device());
    at::Tensor mean = output_like(name.c_str(), args, at.mean, x_start, at.x_t);
    std::array<at::Tensor, 2> variances = {
        at::empty_symint({x_start.sym_size(0)}, x_start.options()),
        at::empty_symint({x_start.sym_size(0)}, x_start.options())};
    run_linear<Backend>(name.c_str(), c, mean, nullptr, &variances);
    const auto shape = per_sample_shape(x_start);
    args.finish({mean, variances[0].view_symint(shape).expand_symint(x_start.sym_sizes()),
                 variances[1].view_symint(shape).expand_symint(x_start.sym_sizes())});
  }
};

// q_sample_backward(grad, t, a, b), posterior_mean_variance_backward(grad_mean,
// t, a, b): (a[t]*grad, b[t]*grad); scale_by_timestep(input, t, table):
// a[t]*input alone (one read, one write).
struct LinearBackward {
  using Context = NoContext;
  struct Args {
    int grad, t, a, b;  // b: -1 for scale_by_timestep
    Args(const c10::FunctionSchema& s, NoContext)
        : grad(first_of(s, {"grad", "grad_mean", "input"})),
          t(arg(s, "t")),
          a(first_of(s, {"sqrt_alphas_cumprod", "posterior_mean_coef1", "table"})),
          b(std::max(optional_arg(s, "sqrt_one_minus_alphas_cumprod"),
                     optional_arg(s, "posterior_mean_coef2"))) {}
    // the position of the one of `names` the schema has
    static int first_of(const c10::FunctionSchema& s, std::initializer_list<const char*> names) {
      for (const char* n : names) {
        if (optional_arg(s, n) >= 0) return optional_arg(s, n);
      }
      return arg(s, *names.begin());
    }
  };

  template <typename Backend>
  static void run(CallArgs& args, const Args& at) {
    const std::string name = error_name(args.op());
    const char* n = name.c_str();
    const bool both = at.b >= 0;
    const at::Tensor& grad = args.tensor(at.grad);
    const at::Tensor& t = args.tensor(at.t);
    check_data_tensor(n, args.name(at.grad), grad);
    check_timesteps(n, t, grad);
    const int64_t T =
        both ? check_tables(n, {args.named_tensor(at.a), args.named_tensor(at.b)}, grad)
             : check_tables(n, {args.named_tensor(at.a)}, grad);
    const typename Backend::Guard guard(grad.device());
    at::Tensor grad_u = at::empty_like(grad, at::MemoryFormat::Contiguous);
    at::Tensor grad_v = both ? at::empty_like(grad, at::MemoryFormat::Contiguous) : at::Tensor();
    if (Backend::kRuns && grad.size(0) > 0) {
      const at::Tensor g = grad.contiguous();
      const at::Tensor tc = t.contiguous();
      const at::Tensor a = args.tensor(at.a).contiguous();
      const at::Tensor b = both ? args.tensor(at.b).contiguous() : a;
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
};

// philox_normal: a contiguous tensor like input holding the noise of (seed,
// offset), or (.generator) of the key drawn from a generator.
struct PhiloxNormal {
  using Context = NoContext;
  struct Args {
    int input;
    NoiseKeyArgs key;
    Args(const c10::FunctionSchema& s, NoContext) : input(arg(s, "input")), key(s) {}
  };

  template <typename Backend>
  static void run(CallArgs& args, const Args& at) {
    const std::string name = error_name(args.op());
    const at::Tensor& input = args.tensor(at.input);
    check_float_dtype(name.c_str(), "input", input);
    const typename Backend::Guard guard(input.device());
    const NoiseKey key = call_noise_key<Backend>(name.c_str(), args, at.key, input, nullptr, 0);
    at::Tensor out = at::empty_like(input, at::MemoryFormat::Contiguous);
    if (Backend::kRuns && out.numel() > 0) {
      dispatch_types(out.scalar_type(), at::kFloat, [&](auto s, auto) {
        using S = decltype(s);
        Backend::run(PhiloxNormalParams<S>{mutable_data_of<S>(out), out.numel(), key});
      });
    }
    args.finish({out});
  }
};

}  // namespace ops
}  // namespace ddpm
