// posterior_mean_variance and its backward: checks, layout and kernel
// parameters shared by the CPU, CUDA and Meta registrations.
//
// variance and log_variance hold one value per sample and are returned as
// [B, 1, ..., 1] views expanded to x's shape, as improved-diffusion's
// _extract_into_tensor broadcasts them.
#pragma once

#include "checks.h"

namespace ddpm {
namespace ops {

constexpr const char* kPosterior = "ddpm.posterior_mean_variance";
constexpr const char* kPosteriorBackward =
    "ddpm.posterior_mean_variance_backward";

inline int64_t check_posterior(const at::Tensor& x_start, const at::Tensor& x_t,
                               const at::Tensor& t, const at::Tensor& coef1,
                               const at::Tensor& coef2,
                               const at::Tensor& variance,
                               const at::Tensor& log_variance) {
  check_data_tensor(kPosterior, "x_start", x_start);
  check_like(kPosterior, {"x_t", &x_t}, {"x_start", &x_start});
  check_timesteps(kPosterior, t, x_start);
  return check_tables(kPosterior,
                      {{"posterior_mean_coef1", &coef1},
                       {"posterior_mean_coef2", &coef2},
                       {"posterior_variance", &variance},
                       {"posterior_log_variance_clipped", &log_variance}},
                      x_start);
}

inline int64_t check_posterior_backward(const at::Tensor& grad_mean,
                                        const at::Tensor& t,
                                        const at::Tensor& coef1,
                                        const at::Tensor& coef2) {
  check_data_tensor(kPosteriorBackward, "grad_mean", grad_mean);
  check_timesteps(kPosteriorBackward, t, grad_mean);
  return check_tables(
      kPosteriorBackward,
      {{"posterior_mean_coef1", &coef1}, {"posterior_mean_coef2", &coef2}},
      grad_mean);
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_outputs(
    const at::Tensor& x, at::Tensor mean, const at::Tensor& variance,
    const at::Tensor& log_variance) {
  const auto shape = per_sample_shape(x);
  return {mean, variance.view(shape).expand(x.sizes()),
          log_variance.view(shape).expand(x.sizes())};
}

// The posterior mean, new or given (out=), which may be x_t (in place: the
// kernels allow for it); no other overlap.
inline at::Tensor posterior_mean_output(const at::Tensor* given,
                                        const at::Tensor& x_start,
                                        const at::Tensor& x_t) {
  return output_like(kPosterior, "mean", given, x_start,
                     {{"x_start", &x_start, false}, {"x_t", &x_t, true}});
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance_impl(
    const at::Tensor& x_start_in, const at::Tensor& x_t_in,
    const at::Tensor& t_in, const at::Tensor& coef1_in,
    const at::Tensor& coef2_in, const at::Tensor& variance_in,
    const at::Tensor& log_variance_in, const Launch& launch,
    const at::Tensor* mean_given = nullptr) {
  const int64_t T = check_posterior(x_start_in, x_t_in, t_in, coef1_in,
                                    coef2_in, variance_in, log_variance_in);
  const at::Tensor x_start = x_start_in.contiguous();
  const at::Tensor x_t = x_t_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const at::Tensor coef1 = coef1_in.contiguous();
  const at::Tensor coef2 = coef2_in.contiguous();
  const at::Tensor var_table = variance_in.contiguous();
  const at::Tensor log_var_table = log_variance_in.contiguous();
  at::Tensor mean = posterior_mean_output(mean_given, x_start_in, x_t_in);
  at::Tensor variance = at::empty({x_start.size(0)}, x_start.options());
  at::Tensor log_variance = at::empty({x_start.size(0)}, x_start.options());
  if (x_start.size(0) > 0) {
    dispatch_types(
        x_start.scalar_type(), coef1.scalar_type(), [&](auto s, auto tb) {
          using S = decltype(s);
          using Tab = decltype(tb);
          PosteriorParams<S, Tab> p;
          p.x_start = data_of<S>(x_start);
          p.x_t = data_of<S>(x_t);
          p.mean = mutable_data_of<S>(mean);
          p.variance = mutable_data_of<S>(variance);
          p.log_variance = mutable_data_of<S>(log_variance);
          p.timesteps = {t.data_ptr<int64_t>(), T};
          p.tables = {coef1.data_ptr<Tab>(), coef2.data_ptr<Tab>(),
                      var_table.data_ptr<Tab>(), log_var_table.data_ptr<Tab>()};
          p.batch = x_start.size(0);
          p.sample_numel = sample_numel(x_start);
          const int64_t bad = launch(p);
          if (bad >= 0) fail_bad_timestep(kPosterior, t, bad, T);
        });
  }
  return posterior_outputs(x_start, mean, variance, log_variance);
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward_impl(
    const at::Tensor& grad_in, const at::Tensor& t_in,
    const at::Tensor& coef1_in, const at::Tensor& coef2_in,
    const Launch& launch) {
  const int64_t T = check_posterior_backward(grad_in, t_in, coef1_in, coef2_in);
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const at::Tensor coef1 = coef1_in.contiguous();
  const at::Tensor coef2 = coef2_in.contiguous();
  at::Tensor grad_x_start = at::empty_like(grad, at::MemoryFormat::Contiguous);
  at::Tensor grad_x_t = at::empty_like(grad, at::MemoryFormat::Contiguous);
  if (grad.numel() == 0) return {grad_x_start, grad_x_t};
  dispatch_types(grad.scalar_type(), coef1.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    PosteriorBackwardParams<S, Tab> p;
    p.grad_mean = data_of<S>(grad);
    p.grad_x_start = mutable_data_of<S>(grad_x_start);
    p.grad_x_t = mutable_data_of<S>(grad_x_t);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = {coef1.data_ptr<Tab>(), coef2.data_ptr<Tab>(), nullptr, nullptr};
    p.batch = grad.size(0);
    p.sample_numel = sample_numel(grad);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(kPosteriorBackward, t, bad, T);
  });
  return {grad_x_start, grad_x_t};
}

}  // namespace ops
}  // namespace ddpm
