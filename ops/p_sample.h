// p_sample (the fused reverse step) and its backward: checks, layout and
// kernel parameters shared by the CPU, CUDA and Meta registrations.
#pragma once

#include <string>

#include "checks.h"

namespace ddpm {
namespace ops {

constexpr const char* kPSample = "ddpm.p_sample";
constexpr const char* kPSampleBackward = "ddpm.p_sample_backward";

// The six schedule tables p_sample reads, in schema order.
struct PSampleTableArgs {
  const at::Tensor& sqrt_recip_alphas_cumprod;
  const at::Tensor& sqrt_recipm1_alphas_cumprod;
  const at::Tensor& posterior_mean_coef1;
  const at::Tensor& posterior_mean_coef2;
  const at::Tensor& posterior_log_variance_clipped;
  const at::Tensor& betas;
};

// Checks model_output against x_t and the tables; returns T.
inline int64_t check_p_sample(const char* op, const at::Tensor& model_output,
                              const at::Tensor& x_t, const at::Tensor& t,
                              const PSampleTableArgs& tab, VarType var_type) {
  check_data_tensor(op, "x_t", x_t);
  check_data_tensor(op, "model_output", model_output);
  TORCH_CHECK(model_output.device() == x_t.device(), op,
              ": expected model_output on ", x_t.device(),
              " like x_t, got ", model_output.device());
  TORCH_CHECK(model_output.scalar_type() == x_t.scalar_type(), op,
              ": expected model_output to have dtype ", x_t.scalar_type(),
              " like x_t, got ", model_output.scalar_type());
  if (var_type_is_learned(var_type)) {
    TORCH_CHECK(x_t.dim() >= 2, op,
                ": learned variances need x_t of shape [B, C, ...] (the "
                "model output carries 2C channels), got x_t of shape ",
                x_t.sizes());
    std::vector<int64_t> expected(x_t.sizes().begin(), x_t.sizes().end());
    expected[1] *= 2;
    TORCH_CHECK(model_output.sizes() == at::IntArrayRef(expected), op,
                ": expected model_output to have shape ", at::IntArrayRef(expected),
                " (2C channels: mean and variance halves for learned "
                "variances), got ",
                model_output.sizes());
  } else {
    TORCH_CHECK(model_output.sizes() == x_t.sizes(), op,
                ": expected model_output to have shape ", x_t.sizes(),
                " like x_t, got ", model_output.sizes());
  }
  check_timesteps(op, t, x_t);
  return check_tables(
      op,
      {{"sqrt_recip_alphas_cumprod", &tab.sqrt_recip_alphas_cumprod},
       {"sqrt_recipm1_alphas_cumprod", &tab.sqrt_recipm1_alphas_cumprod},
       {"posterior_mean_coef1", &tab.posterior_mean_coef1},
       {"posterior_mean_coef2", &tab.posterior_mean_coef2},
       {"posterior_log_variance_clipped", &tab.posterior_log_variance_clipped},
       {"betas", &tab.betas}},
      x_t);
}

// Contiguous copies of the tables (no copy when already contiguous).
struct PSampleTablesContig {
  at::Tensor r, rm1, c1, c2, log_var, betas;
  explicit PSampleTablesContig(const PSampleTableArgs& a)
      : r(a.sqrt_recip_alphas_cumprod.contiguous()),
        rm1(a.sqrt_recipm1_alphas_cumprod.contiguous()),
        c1(a.posterior_mean_coef1.contiguous()),
        c2(a.posterior_mean_coef2.contiguous()),
        log_var(a.posterior_log_variance_clipped.contiguous()),
        betas(a.betas.contiguous()) {}
  template <typename Tab>
  PSampleTables<Tab> pointers() const {
    return {r.data_ptr<Tab>(),  rm1.data_ptr<Tab>(),     c1.data_ptr<Tab>(),
            c2.data_ptr<Tab>(), log_var.data_ptr<Tab>(), betas.data_ptr<Tab>()};
  }
};

inline PSampleModes parse_modes(const char* op, const std::string& mean_type,
                                const std::string& var_type,
                                bool clip_denoised) {
  return {parse_mean_type(op, mean_type), parse_var_type(op, var_type),
          clip_denoised};
}

struct PSampleChecked {
  PSampleModes modes;
  int64_t num_timesteps;
};

// Every check of p_sample's arguments (shared with the Meta kernel).
inline PSampleChecked check_p_sample_args(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const PSampleTableArgs& tables,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  const PSampleModes modes =
      parse_modes(kPSample, model_mean_type, model_var_type, clip_denoised);
  const int64_t T =
      check_p_sample(kPSample, model_output, x_t, t, tables, modes.var_type);
  check_like(kPSample, {"noise", &noise}, {"x_t", &x_t});
  return {modes, T};
}

// Every check of p_sample_backward's arguments (shared with the Meta kernel).
inline PSampleChecked check_p_sample_backward_args(
    const at::Tensor& grad_sample, const at::Tensor& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const PSampleTableArgs& tables,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  const PSampleModes modes = parse_modes(kPSampleBackward, model_mean_type,
                                         model_var_type, clip_denoised);
  const int64_t T = check_p_sample(kPSampleBackward, model_output, x_t, t,
                                   tables, modes.var_type);
  check_like(kPSampleBackward, {"noise", &noise}, {"x_t", &x_t});
  check_like(kPSampleBackward, {"grad_sample", &grad_sample}, {"x_t", &x_t});
  check_like(kPSampleBackward, {"grad_pred_xstart", &grad_pred_xstart},
             {"x_t", &x_t});
  return {modes, T};
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> p_sample_impl(
    const at::Tensor& model_output_in, const at::Tensor& x_t_in,
    const at::Tensor& t_in, const at::Tensor& noise_in,
    const PSampleTableArgs& tables_in, const std::string& model_mean_type,
    const std::string& model_var_type, bool clip_denoised,
    const Launch& launch) {
  const PSampleChecked checked = check_p_sample_args(
      model_output_in, x_t_in, t_in, noise_in, tables_in, model_mean_type,
      model_var_type, clip_denoised);
  const PSampleModes modes = checked.modes;
  const int64_t T = checked.num_timesteps;
  const at::Tensor model_output = model_output_in.contiguous();
  const at::Tensor x_t = x_t_in.contiguous();
  const at::Tensor noise = noise_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const PSampleTablesContig tables(tables_in);
  at::Tensor sample = at::empty_like(x_t, at::MemoryFormat::Contiguous);
  at::Tensor pred_xstart = at::empty_like(x_t, at::MemoryFormat::Contiguous);
  if (x_t.size(0) == 0) return {sample, pred_xstart};
  dispatch_types(x_t.scalar_type(), tables.r.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    PSampleParams<S, Tab> p;
    p.model_output = data_of<S>(model_output);
    p.x_t = data_of<S>(x_t);
    p.noise = data_of<S>(noise);
    p.sample = mutable_data_of<S>(sample);
    p.pred_xstart = mutable_data_of<S>(pred_xstart);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = tables.pointers<Tab>();
    p.modes = modes;
    p.batch = x_t.size(0);
    p.sample_numel = sample_numel(x_t);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(kPSample, t, bad, T);
  });
  return {sample, pred_xstart};
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> p_sample_backward_impl(
    const at::Tensor& grad_sample_in, const at::Tensor& grad_pred_xstart_in,
    const at::Tensor& model_output_in, const at::Tensor& x_t_in,
    const at::Tensor& t_in, const at::Tensor& noise_in,
    const PSampleTableArgs& tables_in, const std::string& model_mean_type,
    const std::string& model_var_type, bool clip_denoised,
    const Launch& launch) {
  const PSampleChecked checked = check_p_sample_backward_args(
      grad_sample_in, grad_pred_xstart_in, model_output_in, x_t_in, t_in,
      noise_in, tables_in, model_mean_type, model_var_type, clip_denoised);
  const PSampleModes modes = checked.modes;
  const int64_t T = checked.num_timesteps;
  const at::Tensor grad_sample = grad_sample_in.contiguous();
  const at::Tensor grad_pred_xstart = grad_pred_xstart_in.contiguous();
  const at::Tensor model_output = model_output_in.contiguous();
  const at::Tensor x_t = x_t_in.contiguous();
  const at::Tensor noise = noise_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const PSampleTablesContig tables(tables_in);
  at::Tensor grad_model_output =
      at::empty_like(model_output, at::MemoryFormat::Contiguous);
  at::Tensor grad_x_t = at::empty_like(x_t, at::MemoryFormat::Contiguous);
  if (x_t.size(0) == 0) return {grad_model_output, grad_x_t};
  dispatch_types(x_t.scalar_type(), tables.r.scalar_type(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    PSampleBackwardParams<S, Tab> p;
    p.grad_sample = data_of<S>(grad_sample);
    p.grad_pred_xstart = data_of<S>(grad_pred_xstart);
    p.model_output = data_of<S>(model_output);
    p.x_t = data_of<S>(x_t);
    p.noise = data_of<S>(noise);
    p.grad_model_output = mutable_data_of<S>(grad_model_output);
    p.grad_x_t = mutable_data_of<S>(grad_x_t);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = tables.pointers<Tab>();
    p.modes = modes;
    p.batch = x_t.size(0);
    p.sample_numel = sample_numel(x_t);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(kPSampleBackward, t, bad, T);
  });
  return {grad_model_output, grad_x_t};
}

}  // namespace ops
}  // namespace ddpm
