// The fused reverse steps, p_sample and ddim_sample, and their backward
// operators: checks, layout and kernel parameters shared by the CPU, CUDA and
// Meta registrations. Both steps run the same kernels (see
// ddpm/coefficients.h: a DDIM step only has other per-sample coefficients).
#pragma once

#include <array>
#include <string>

#include "checks.h"

namespace ddpm {
namespace ops {

constexpr const char* kPSample = "ddpm.p_sample";
constexpr const char* kPSampleBackward = "ddpm.p_sample_backward";
constexpr const char* kDdimSample = "ddpm.ddim_sample";
constexpr const char* kDdimSampleBackward = "ddpm.ddim_sample_backward";
constexpr const char* kPSamplePhilox = "ddpm.p_sample_philox";
constexpr const char* kDdimSamplePhilox = "ddpm.ddim_sample_philox";

// The six schedule tables of a step, in schema order, with their names:
// p_sample:    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
//              posterior_mean_coef1, posterior_mean_coef2,
//              posterior_log_variance_clipped, betas
// ddim_sample: the same first four, alphas_cumprod, alphas_cumprod_prev
struct StepTableArgs {
  bool ddim;
  std::array<NamedTensor, 6> tables;

  StepTableArgs(bool is_ddim, const at::Tensor& r, const at::Tensor& rm1,
                const at::Tensor& c1, const at::Tensor& c2,
                const at::Tensor& fifth, const at::Tensor& sixth)
      : ddim(is_ddim),
        tables{{{"sqrt_recip_alphas_cumprod", &r},
                {"sqrt_recipm1_alphas_cumprod", &rm1},
                {"posterior_mean_coef1", &c1},
                {"posterior_mean_coef2", &c2},
                {is_ddim ? "alphas_cumprod" : "posterior_log_variance_clipped",
                 &fifth},
                {is_ddim ? "alphas_cumprod_prev" : "betas", &sixth}}} {}
};

// Contiguous copies of the tables (no copy when already contiguous).
struct StepTablesContig {
  bool ddim;
  std::array<at::Tensor, 6> t;
  explicit StepTablesContig(const StepTableArgs& a) : ddim(a.ddim) {
    for (size_t i = 0; i < 6; ++i) t[i] = a.tables[i].second->contiguous();
  }
  at::ScalarType dtype() const { return t[0].scalar_type(); }
  template <typename Tab>
  PSampleTables<Tab> pointers() const {
    PSampleTables<Tab> p{t[0].data_ptr<Tab>(), t[1].data_ptr<Tab>(),
                         t[2].data_ptr<Tab>(), t[3].data_ptr<Tab>(),
                         nullptr, nullptr, nullptr, nullptr};
    if (ddim) {
      p.alphas_cumprod = t[4].data_ptr<Tab>();
      p.alphas_cumprod_target = t[5].data_ptr<Tab>();
    } else {
      p.posterior_log_variance_clipped = t[4].data_ptr<Tab>();
      p.betas = t[5].data_ptr<Tab>();
    }
    return p;
  }
};

struct StepChecked {
  StepModes modes;
  int64_t num_timesteps;
};

// Checks model_output against x_t, the timesteps and the tables.
inline int64_t check_step_layout(const char* op, const at::Tensor& model_output,
                                 const at::Tensor& x_t, const at::Tensor& t,
                                 const StepTableArgs& tab,
                                 const StepModes& modes) {
  check_data_tensor(op, "x_t", x_t);
  check_data_tensor(op, "model_output", model_output);
  TORCH_CHECK(model_output.device() == x_t.device(), op,
              ": expected model_output on ", x_t.device(), " like x_t, got ",
              model_output.device());
  TORCH_CHECK(model_output.scalar_type() == x_t.scalar_type(), op,
              ": expected model_output to have dtype ", x_t.scalar_type(),
              " like x_t, got ", model_output.scalar_type());
  if (has_var_channels(modes)) {
    TORCH_CHECK(x_t.dim() >= 2, op,
                ": learned variances need x_t of shape [B, C, ...] (the "
                "model output carries 2C channels), got x_t of shape ",
                x_t.sizes());
    std::vector<int64_t> expected(x_t.sizes().begin(), x_t.sizes().end());
    expected[1] *= 2;
    TORCH_CHECK(model_output.sizes() == at::IntArrayRef(expected), op,
                ": expected model_output to have shape ",
                at::IntArrayRef(expected),
                " (2C channels: mean and variance halves for learned "
                "variances), got ",
                model_output.sizes());
  } else {
    TORCH_CHECK(model_output.sizes() == x_t.sizes(), op,
                ": expected model_output to have shape ", x_t.sizes(),
                " like x_t, got ", model_output.sizes());
  }
  check_timesteps(op, t, x_t);
  const auto& n = tab.tables;
  return check_tables(op, {n[0], n[1], n[2], n[3], n[4], n[5]}, x_t);
}

inline StepModes parse_step_modes(const char* op, const std::string& mean_type,
                                  const std::string& var_type,
                                  bool clip_denoised, bool ddim, double eta) {
  TORCH_CHECK(!ddim || (eta >= 0.0 && eta < 1e300), op,
              ": expected eta to be a finite number >= 0, got ", eta);
  return {parse_mean_type(op, mean_type), parse_var_type(op, var_type),
          clip_denoised, ddim, eta};
}

// The modes of a p_sample / ddim_sample schema, parsed and checked.
inline StepModes p_sample_modes(const char* op, c10::string_view mean_type,
                                c10::string_view var_type, bool clip_denoised) {
  return parse_step_modes(op, std::string(mean_type), std::string(var_type),
                          clip_denoised, false, 0.0);
}
inline StepModes ddim_modes(const char* op, double eta,
                            c10::string_view mean_type,
                            c10::string_view var_type, bool clip_denoised) {
  return parse_step_modes(op, std::string(mean_type), std::string(var_type),
                          clip_denoised, true, eta);
}

// Every check of a forward step's arguments (shared with the Meta kernel).
inline StepChecked check_step_args(const char* op,
                                   const at::Tensor& model_output,
                                   const at::Tensor& x_t, const at::Tensor& t,
                                   const NoiseArg& noise,
                                   const StepTableArgs& tables,
                                   const StepModes& modes) {
  const int64_t T = check_step_layout(op, model_output, x_t, t, tables, modes);
  if (noise.tensor != nullptr) check_like(op, {"noise", noise.tensor}, {"x_t", &x_t});
  return {modes, T};
}

// A backward step's optional operands: an absent grad_sample or
// grad_pred_xstart is a zero gradient (autograd's undefined gradient of an
// output the loss does not use); the noise is needed only where it is read.
using OptionalTensor = c10::optional<at::Tensor>;

// The noise enters the backward pass only through a learned variance's
// gradient, which is grad_sample times noise times d sigma.
inline bool step_backward_reads_noise(const StepModes& modes,
                                      const OptionalTensor& grad_sample) {
  return reads_var_channels(modes) && grad_sample.has_value() &&
         grad_sample->defined();
}

inline const at::Tensor* defined_or_null(const OptionalTensor& tensor) {
  return tensor.has_value() && tensor->defined() ? &*tensor : nullptr;
}

// Every check of a backward step's arguments (shared with the Meta kernel).
inline StepChecked check_step_backward_args(
    const char* op, const OptionalTensor& grad_sample,
    const OptionalTensor& grad_pred_xstart, const at::Tensor& model_output,
    const at::Tensor& x_t, const at::Tensor& t, const OptionalTensor& noise,
    const StepTableArgs& tables, const StepModes& modes) {
  const at::Tensor* noise_tensor = defined_or_null(noise);
  const StepChecked checked = check_step_args(
      op, model_output, x_t, t, NoiseArg{noise_tensor, {0, 0}}, tables, modes);
  TORCH_CHECK(noise_tensor != nullptr || !step_backward_reads_noise(modes, grad_sample),
              op, ": expected a noise tensor like x_t: a learned variance's "
              "gradient reads the noise when grad_sample is given, got None");
  if (const at::Tensor* g = defined_or_null(grad_sample)) {
    check_like(op, {"grad_sample", g}, {"x_t", &x_t});
  }
  if (const at::Tensor* g = defined_or_null(grad_pred_xstart)) {
    check_like(op, {"grad_pred_xstart", g}, {"x_t", &x_t});
  }
  return checked;
}

// The outputs of a forward step: allocated (null pointers), given (out=), or,
// for the sample_out overloads, the sample alone (pred_xstart is then
// undefined and not written).
struct StepOutputs {
  const at::Tensor* sample = nullptr;
  const at::Tensor* pred_xstart = nullptr;
  bool write_pred_xstart = true;
};

// The outputs of a forward step, new or given (out=, sample_out); pred_xstart
// undefined when not written. sample may be x_t (sampling loops write x_{t-1}
// over x_t: the kernels allow for it); no other overlap of an output with an
// input or with the other output. noise is null when drawn in the kernel.
inline std::tuple<at::Tensor, at::Tensor> step_outputs(
    const char* op, const StepOutputs& given, const at::Tensor& model_output,
    const at::Tensor& x_t, const at::Tensor* noise) {
  at::Tensor sample = output_like(
      op, "sample", given.sample, x_t,
      {{"model_output", &model_output, false}, {"x_t", &x_t, true}, {"noise", noise, false}});
  at::Tensor pred_xstart;
  if (given.write_pred_xstart) {
    TORCH_CHECK(given.pred_xstart == nullptr || given.sample == nullptr ||
                    sample.numel() == 0 || !given.pred_xstart->is_same(sample),
                op, ": expected sample and pred_xstart to be different tensors");
    pred_xstart = output_like(op, "pred_xstart", given.pred_xstart, x_t,
                              {{"model_output", &model_output, false},
                               {"x_t", &x_t, false},
                               {"noise", noise, false},
                               {"sample", &sample, false}});
  }
  return {sample, pred_xstart};
}

template <typename Launch>
std::tuple<at::Tensor, at::Tensor> step_impl(
    const char* op, const at::Tensor& model_output_in, const at::Tensor& x_t_in,
    const at::Tensor& t_in, const NoiseArg& noise_in,
    const StepTableArgs& tables_in, const StepModes& modes_in,
    const Launch& launch, const StepOutputs& given = {}) {
  const StepChecked checked = check_step_args(
      op, model_output_in, x_t_in, t_in, noise_in, tables_in, modes_in);
  const int64_t T = checked.num_timesteps;
  const at::Tensor model_output = model_output_in.contiguous();
  const at::Tensor x_t = x_t_in.contiguous();
  const bool generate_noise = noise_in.tensor == nullptr;
  const at::Tensor noise = generate_noise ? at::Tensor() : noise_in.tensor->contiguous();
  const at::Tensor t = t_in.contiguous();
  const StepTablesContig tables(tables_in);
  at::Tensor sample, pred_xstart;
  std::tie(sample, pred_xstart) =
      step_outputs(op, given, model_output_in, x_t_in, noise_in.tensor);
  if (x_t.size(0) == 0) return {sample, pred_xstart};
  dispatch_types(x_t.scalar_type(), tables.dtype(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    PSampleParams<S, Tab> p;
    p.model_output = data_of<S>(model_output);
    p.x_t = data_of<S>(x_t);
    p.noise = generate_noise ? nullptr : data_of<S>(noise);
    p.generate_noise = generate_noise;
    p.noise_key = noise_in.key;
    p.sample = mutable_data_of<S>(sample);
    p.pred_xstart = pred_xstart.defined() ? mutable_data_of<S>(pred_xstart) : nullptr;
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = tables.pointers<Tab>();
    p.modes = checked.modes;
    p.batch = x_t.size(0);
    p.sample_numel = sample_numel(x_t);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(op, t, bad, T);
  });
  return {sample, pred_xstart};
}

// Absent gradients are zeros (see check_step_backward_args); the kernels
// get null pointers for them and never read them.
template <typename Launch>
std::tuple<at::Tensor, at::Tensor> step_backward_impl(
    const char* op, const OptionalTensor& grad_sample_in,
    const OptionalTensor& grad_pred_xstart_in, const at::Tensor& model_output_in,
    const at::Tensor& x_t_in, const at::Tensor& t_in,
    const OptionalTensor& noise_in, const StepTableArgs& tables_in,
    const StepModes& modes_in, const Launch& launch) {
  const StepChecked checked = check_step_backward_args(
      op, grad_sample_in, grad_pred_xstart_in, model_output_in, x_t_in, t_in,
      noise_in, tables_in, modes_in);
  const int64_t T = checked.num_timesteps;
  const auto contiguous_or_undefined = [](const at::Tensor* tensor) {
    return tensor != nullptr ? tensor->contiguous() : at::Tensor();
  };
  const at::Tensor grad_sample = contiguous_or_undefined(defined_or_null(grad_sample_in));
  const at::Tensor grad_pred_xstart =
      contiguous_or_undefined(defined_or_null(grad_pred_xstart_in));
  const at::Tensor noise =
      step_backward_reads_noise(checked.modes, grad_sample_in)
          ? noise_in->contiguous()
          : at::Tensor();
  const at::Tensor model_output = model_output_in.contiguous();
  const at::Tensor x_t = x_t_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  const StepTablesContig tables(tables_in);
  at::Tensor grad_model_output =
      at::empty_like(model_output, at::MemoryFormat::Contiguous);
  at::Tensor grad_x_t = at::empty_like(x_t, at::MemoryFormat::Contiguous);
  if (x_t.size(0) == 0) return {grad_model_output, grad_x_t};
  dispatch_types(x_t.scalar_type(), tables.dtype(), [&](auto s, auto tb) {
    using S = decltype(s);
    using Tab = decltype(tb);
    const auto data_or_null = [](const at::Tensor& tensor) -> const S* {
      return tensor.defined() ? data_of<S>(tensor) : nullptr;
    };
    PSampleBackwardParams<S, Tab> p;
    p.grad_sample = data_or_null(grad_sample);
    p.grad_pred_xstart = data_or_null(grad_pred_xstart);
    p.model_output = data_of<S>(model_output);
    p.x_t = data_of<S>(x_t);
    p.noise = data_or_null(noise);
    p.grad_model_output = mutable_data_of<S>(grad_model_output);
    p.grad_x_t = mutable_data_of<S>(grad_x_t);
    p.timesteps = {t.data_ptr<int64_t>(), T};
    p.tables = tables.pointers<Tab>();
    p.modes = checked.modes;
    p.batch = x_t.size(0);
    p.sample_numel = sample_numel(x_t);
    const int64_t bad = launch(p);
    if (bad >= 0) fail_bad_timestep(op, t, bad, T);
  });
  return {grad_model_output, grad_x_t};
}

}  // namespace ops
}  // namespace ddpm
