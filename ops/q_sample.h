// q_sample and its backward: argument checks, layout and kernel parameters,
// shared by the CPU, CUDA and Meta registrations. `launch(params)` runs a
// backend's kernel and returns -1 or the index of a timestep out of range.
#pragma once

#include "checks.h"

namespace ddpm {
namespace ops {

constexpr const char* kQSample = "ddpm.q_sample";
constexpr const char* kQSampleBackward = "ddpm.q_sample_backward";
constexpr const char* kQSamplePhilox = "ddpm.q_sample_philox";
constexpr const char* kPhiloxNormal = "ddpm.philox_normal";
constexpr const char* kScaleByTimestep = "ddpm.scale_by_timestep";

inline int64_t check_q_sample_tables(const char* op, const at::Tensor& x,
                                    const at::Tensor& sa,
                                    const at::Tensor& s1ma) {
  return check_tables(op,
                      {{"sqrt_alphas_cumprod", &sa},
                       {"sqrt_one_minus_alphas_cumprod", &s1ma}},
                      x);
}

inline int64_t check_q_sample(const at::Tensor& x_start, const at::Tensor& t,
                              const at::Tensor& noise, const at::Tensor& sa,
                              const at::Tensor& s1ma) {
  check_data_tensor(kQSample, "x_start", x_start);
  check_like(kQSample, {"noise", &noise}, {"x_start", &x_start});
  check_timesteps(kQSample, t, x_start);
  return check_q_sample_tables(kQSample, x_start, sa, s1ma);
}

// q_sample_philox: x_start, t and the tables; the noise is drawn.
inline int64_t check_q_sample_philox(const at::Tensor& x_start,
                                     const at::Tensor& t, const at::Tensor& sa,
                                     const at::Tensor& s1ma) {
  check_data_tensor(kQSamplePhilox, "x_start", x_start);
  check_timesteps(kQSamplePhilox, t, x_start);
  return check_q_sample_tables(kQSamplePhilox, x_start, sa, s1ma);
}

inline void check_philox_normal(const at::Tensor& input) {
  TORCH_CHECK(input.defined(), kPhiloxNormal,
              ": expected input to be a tensor, got None");
  const auto dtype = input.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble ||
                  dtype == at::kHalf || dtype == at::kBFloat16,
              kPhiloxNormal,
              ": expected input to have dtype float32, float64, float16 or "
              "bfloat16, got ",
              dtype);
}

inline int64_t check_q_sample_backward(const at::Tensor& grad,
                                       const at::Tensor& t,
                                       const at::Tensor& sa,
                                       const at::Tensor& s1ma) {
  check_data_tensor(kQSampleBackward, "grad", grad);
  check_timesteps(kQSampleBackward, t, grad);
  return check_q_sample_tables(kQSampleBackward, grad, sa, s1ma);
}

inline int64_t check_scale_by_timestep(const at::Tensor& input,
                                       const at::Tensor& t,
                                       const at::Tensor& table) {
  check_data_tensor(kScaleByTimestep, "input", input);
  check_timesteps(kScaleByTimestep, t, input);
  return check_tables(kScaleByTimestep, {{"table", &table}}, input);
}

// q_sample's output, new or given (out=), which may be x_start (in place:
// the kernels allow for it); no other overlap.
inline at::Tensor q_sample_output(const at::Tensor* given,
                                  const at::Tensor& x_start,
                                  const at::Tensor& noise) {
  return output_like(kQSample, "out", given, x_start,
                     {{"x_start", &x_start, true}, {"noise", &noise, false}});
}

template <typename Launch>
at::Tensor q_sample_impl(const at::Tensor& x_start_in, const at::Tensor& t_in,
                         const at::Tensor& noise_in, const at::Tensor& sa_in,
                         const at::Tensor& s1ma_in, const Launch& launch,
                         const at::Tensor* out_given = nullptr) {
  const int64_t T = check_q_sample(x_start_in, t_in, noise_in, sa_in, s1ma_in);
  const at::Tensor x_start = x_start_in.contiguous();
  const at::Tensor noise = noise_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const at::Tensor sa = sa_in.contiguous();
  const at::Tensor s1ma = s1ma_in.contiguous();
  at::Tensor out = q_sample_output(out_given, x_start_in, noise_in);
  if (out.numel() == 0) return out;
  dispatch_types(x_start.scalar_type(), sa.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    QSampleParams<S, Tab> p;
    p.x_start = data_of<S>(x_start);
    p.noise = data_of<S>(noise);
    p.out = mutable_data_of<S>(out);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = {sa.data_ptr<Tab>(), s1ma.data_ptr<Tab>()};
    p.batch = x_start.size(0);
    p.sample_numel = sample_numel(x_start);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(kQSample, t, bad, T);
  });
  return out;
}

// (x_t, noise) with the noise drawn in the kernel from (seed, offset).
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> q_sample_philox_impl(
    const at::Tensor& x_start_in, const at::Tensor& t_in, int64_t seed,
    int64_t offset, const at::Tensor& sa_in, const at::Tensor& s1ma_in,
    const Launch& launch) {
  const int64_t T = check_q_sample_philox(x_start_in, t_in, sa_in, s1ma_in);
  const NoiseKey key = check_noise_key(kQSamplePhilox, seed, offset);
  const at::Tensor x_start = x_start_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const at::Tensor sa = sa_in.contiguous();
  const at::Tensor s1ma = s1ma_in.contiguous();
  at::Tensor out = at::empty_like(x_start, at::MemoryFormat::Contiguous);
  at::Tensor noise = at::empty_like(x_start, at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return {out, noise};
  dispatch_types(x_start.scalar_type(), sa.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    QSampleParams<S, Tab> p;
    p.x_start = data_of<S>(x_start);
    p.noise = nullptr;
    p.out = mutable_data_of<S>(out);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = {sa.data_ptr<Tab>(), s1ma.data_ptr<Tab>()};
    p.batch = x_start.size(0);
    p.sample_numel = sample_numel(x_start);
    p.generate_noise = true;
    p.noise_key = key;
    p.noise_out = mutable_data_of<S>(noise);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(kQSamplePhilox, t, bad, T);
  });
  return {out, noise};
}

// A contiguous tensor like input holding the Philox normals of (seed, offset).
template <typename Launch>
at::Tensor philox_normal_impl(const at::Tensor& input, int64_t seed,
                              int64_t offset, const Launch& launch) {
  check_philox_normal(input);
  const NoiseKey key = check_noise_key(kPhiloxNormal, seed, offset);
  at::Tensor out = at::empty_like(input, at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;
  dispatch_types(out.scalar_type(), at::kFloat, [&](auto s, auto) {
    using S = decltype(s);
    launch(PhiloxNormalParams<S>{mutable_data_of<S>(out), out.numel(), key});
  });
  return out;
}

// q_sample's backward kernel on checked arguments: grad_x_start =
// sa[t] * grad and, unless grad_noise is undefined, grad_noise = s1ma[t] *
// grad (both outputs new contiguous tensors like grad).
template <typename Launch>
void launch_q_sample_backward(const char* op, const at::Tensor& grad_in,
                              const at::Tensor& t_in, const at::Tensor& sa_in,
                              const at::Tensor& s1ma_in, int64_t T,
                              at::Tensor& grad_x_start, at::Tensor& grad_noise,
                              const Launch& launch) {
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const at::Tensor sa = sa_in.contiguous();
  const at::Tensor s1ma = s1ma_in.contiguous();
  if (grad.numel() == 0) return;
  dispatch_types(grad.scalar_type(), sa.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    QSampleBackwardParams<S, Tab> p;
    p.grad = data_of<S>(grad);
    p.grad_x_start = mutable_data_of<S>(grad_x_start);
    p.grad_noise = grad_noise.defined() ? mutable_data_of<S>(grad_noise) : nullptr;
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = {sa.data_ptr<Tab>(), s1ma.data_ptr<Tab>()};
    p.batch = grad.size(0);
    p.sample_numel = sample_numel(grad);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(op, t, bad, T);
  });
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> q_sample_backward_impl(
    const at::Tensor& grad, const at::Tensor& t, const at::Tensor& sa,
    const at::Tensor& s1ma, const Launch& launch) {
  const int64_t T = check_q_sample_backward(grad, t, sa, s1ma);
  at::Tensor grad_x_start = at::empty_like(grad, at::MemoryFormat::Contiguous);
  at::Tensor grad_noise = at::empty_like(grad, at::MemoryFormat::Contiguous);
  launch_q_sample_backward(kQSampleBackward, grad, t, sa, s1ma, T, grad_x_start,
                           grad_noise, launch);
  return {grad_x_start, grad_noise};
}

// scale_by_timestep is q_sample's backward kernel with only its first output:
// out = table[t] * input.
template <typename Launch>
at::Tensor scale_by_timestep_impl(const at::Tensor& input,
                                  const at::Tensor& t,
                                  const at::Tensor& table,
                                  const Launch& launch) {
  const int64_t T = check_scale_by_timestep(input, t, table);
  at::Tensor out = at::empty_like(input, at::MemoryFormat::Contiguous);
  at::Tensor none;
  launch_q_sample_backward(kScaleByTimestep, input, t, table, table, T, out,
                           none, launch);
  return out;
}

}  // namespace ops
}  // namespace ddpm
