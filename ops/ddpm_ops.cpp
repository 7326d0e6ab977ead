// The operator schemas (defined once, here) and the C++ API over them.
#include "ddpm_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

#include "ddpm/kernels.h"

TORCH_LIBRARY(ddpm, m) {
  m.def(
      "q_sample(Tensor x_start, Tensor t, Tensor noise, "
      "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod) "
      "-> Tensor");
  m.def(
      "q_sample.out(Tensor x_start, Tensor t, Tensor noise, "
      "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod, *, "
      "Tensor(a!) out) -> Tensor(a!)");
  m.def(
      "q_sample_backward(Tensor grad, Tensor t, Tensor sqrt_alphas_cumprod, "
      "Tensor sqrt_one_minus_alphas_cumprod) "
      "-> (Tensor grad_x_start, Tensor grad_noise)");
  // One input's gradient where a backward needs only one: out[b] =
  // table[t[b]] * input[b] (q_sample's and the posterior's are this, with
  // each of their two tables); one read and one write instead of two writes.
  m.def("scale_by_timestep(Tensor input, Tensor t, Tensor table) -> Tensor");
  m.def(
      "posterior_mean_variance(Tensor x_start, Tensor x_t, Tensor t, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor posterior_variance, Tensor posterior_log_variance_clipped) "
      "-> (Tensor mean, Tensor variance, Tensor log_variance)");
  // out=: the mean into a given tensor (x_t itself allowed); variance and
  // log_variance are per-sample values viewed at x's shape, as above
  m.def(
      "posterior_mean_variance.out(Tensor x_start, Tensor x_t, Tensor t, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor posterior_variance, Tensor posterior_log_variance_clipped, *, "
      "Tensor(a!) mean) -> (Tensor(a!) mean, Tensor variance, Tensor log_variance)");
  m.def(
      "posterior_mean_variance_backward(Tensor grad_mean, Tensor t, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2) "
      "-> (Tensor grad_x_start, Tensor grad_x_t)");
  m.def(
      "p_sample(Tensor model_output, Tensor x_t, Tensor t, Tensor noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor posterior_log_variance_clipped, Tensor betas, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True) -> (Tensor sample, Tensor pred_xstart)");
  m.def(
      "p_sample.out(Tensor model_output, Tensor x_t, Tensor t, Tensor noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor posterior_log_variance_clipped, Tensor betas, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True, *, Tensor(a!) sample, Tensor(b!) pred_xstart) "
      "-> (Tensor(a!) sample, Tensor(b!) pred_xstart)");
  // sample_out: the step writing its sample alone, for sampling loops that
  // drop pred_xstart (a quarter less memory traffic); picked by
  // torch.ops.ddpm.p_sample(..., sample=out), as are the ones below.
  m.def(
      "p_sample.sample_out(Tensor model_output, Tensor x_t, Tensor t, "
      "Tensor noise, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor posterior_log_variance_clipped, "
      "Tensor betas, str model_mean_type=\"epsilon\", "
      "str model_var_type=\"fixed_small\", bool clip_denoised=True, *, "
      "Tensor(a!) sample) -> Tensor(a!)");
  m.def(
      "p_sample_backward(Tensor? grad_sample, Tensor? grad_pred_xstart, "
      "Tensor model_output, Tensor x_t, Tensor t, Tensor? noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor posterior_log_variance_clipped, Tensor betas, "
      "str model_mean_type, str model_var_type, bool clip_denoised) "
      "-> (Tensor grad_model_output, Tensor grad_x_t)");
  m.def(
      "ddim_sample(Tensor model_output, Tensor x_t, Tensor t, Tensor noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor alphas_cumprod, Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True) -> (Tensor sample, Tensor pred_xstart)");
  m.def(
      "ddim_sample.out(Tensor model_output, Tensor x_t, Tensor t, Tensor noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor alphas_cumprod, Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True, *, Tensor(a!) sample, Tensor(b!) pred_xstart) "
      "-> (Tensor(a!) sample, Tensor(b!) pred_xstart)");
  m.def(
      "ddim_sample.sample_out(Tensor model_output, Tensor x_t, Tensor t, "
      "Tensor noise, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor alphas_cumprod, "
      "Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True, *, Tensor(a!) sample) -> Tensor(a!)");
  m.def(
      "ddim_sample_backward(Tensor? grad_sample, Tensor? grad_pred_xstart, "
      "Tensor model_output, Tensor x_t, Tensor t, Tensor? noise, "
      "Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
      "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
      "Tensor alphas_cumprod, Tensor alphas_cumprod_prev, float eta, "
      "str model_mean_type, str model_var_type, bool clip_denoised) "
      "-> (Tensor grad_model_output, Tensor grad_x_t)");
  // In-kernel noise (csrc/ddpm/philox.h): the noise is Philox-4x32-10 normals
  // keyed by (seed, offset, element index), the same on CPU and CUDA.
  m.def("philox_normal(Tensor input, int seed, int offset) -> Tensor");
  m.def(
      "q_sample_philox(Tensor x_start, Tensor t, int seed, int offset, "
      "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod) "
      "-> (Tensor x_t, Tensor noise)");
  m.def(
      "p_sample_philox(Tensor model_output, Tensor x_t, Tensor t, int seed, "
      "int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor posterior_log_variance_clipped, "
      "Tensor betas, str model_mean_type=\"epsilon\", "
      "str model_var_type=\"fixed_small\", bool clip_denoised=True) "
      "-> (Tensor sample, Tensor pred_xstart)");
  m.def(
      "p_sample_philox.out(Tensor model_output, Tensor x_t, Tensor t, int seed, "
      "int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor posterior_log_variance_clipped, "
      "Tensor betas, str model_mean_type=\"epsilon\", "
      "str model_var_type=\"fixed_small\", bool clip_denoised=True, *, "
      "Tensor(a!) sample, Tensor(b!) pred_xstart) "
      "-> (Tensor(a!) sample, Tensor(b!) pred_xstart)");
  m.def(
      "p_sample_philox.sample_out(Tensor model_output, Tensor x_t, Tensor t, "
      "int seed, int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor posterior_log_variance_clipped, "
      "Tensor betas, str model_mean_type=\"epsilon\", "
      "str model_var_type=\"fixed_small\", bool clip_denoised=True, *, "
      "Tensor(a!) sample) -> Tensor(a!)");
  m.def(
      "ddim_sample_philox(Tensor model_output, Tensor x_t, Tensor t, int seed, "
      "int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor alphas_cumprod, "
      "Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True) -> (Tensor sample, Tensor pred_xstart)");
  m.def(
      "ddim_sample_philox.out(Tensor model_output, Tensor x_t, Tensor t, "
      "int seed, int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor alphas_cumprod, "
      "Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True, *, Tensor(a!) sample, Tensor(b!) pred_xstart) "
      "-> (Tensor(a!) sample, Tensor(b!) pred_xstart)");
  m.def(
      "ddim_sample_philox.sample_out(Tensor model_output, Tensor x_t, "
      "Tensor t, int seed, int offset, Tensor sqrt_recip_alphas_cumprod, "
      "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
      "Tensor posterior_mean_coef2, Tensor alphas_cumprod, "
      "Tensor alphas_cumprod_prev, float eta=0.0, "
      "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
      "bool clip_denoised=True, *, Tensor(a!) sample) -> Tensor(a!)");
  // Which CPU noise generator runs here: "avx512", "avx2" or "default" (set
  // TORCH_DDPM_CPU_CAPABILITY=avx2|default to cap it). For tests and reports.
  m.def("_cpu_noise_generator() -> str",
        [] { return std::string(ddpm::cpu_noise_generator()); });
  // Which clone of the CPU element loops runs here (see csrc/cpu/loops.h).
  m.def("_cpu_loop_clone() -> str",
        [] { return std::string(ddpm::cpu_loop_clone()); });
}

namespace ddpm {

at::Tensor q_sample(const at::Tensor& x_start, const at::Tensor& t,
                    const at::Tensor& noise,
                    const at::Tensor& sqrt_alphas_cumprod,
                    const at::Tensor& sqrt_one_minus_alphas_cumprod) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::q_sample", "")
                       .typed<decltype(q_sample)>();
  return op.call(x_start, t, noise, sqrt_alphas_cumprod,
                 sqrt_one_minus_alphas_cumprod);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    const at::Tensor& x_start, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_variance,
    const at::Tensor& posterior_log_variance_clipped) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::posterior_mean_variance", "")
                       .typed<decltype(posterior_mean_variance)>();
  return op.call(x_start, x_t, t, posterior_mean_coef1, posterior_mean_coef2,
                 posterior_variance, posterior_log_variance_clipped);
}

using PSampleSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, c10::string_view, c10::string_view,
    bool);

std::tuple<at::Tensor, at::Tensor> p_sample(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::p_sample", "")
                       .typed<PSampleSig>();
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, posterior_log_variance_clipped, betas,
                 model_mean_type, model_var_type, clip_denoised);
}

std::tuple<at::Tensor, at::Tensor> q_sample_backward(
    const at::Tensor& grad, const at::Tensor& t,
    const at::Tensor& sqrt_alphas_cumprod,
    const at::Tensor& sqrt_one_minus_alphas_cumprod) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::q_sample_backward", "")
                       .typed<decltype(q_sample_backward)>();
  return op.call(grad, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod);
}

at::Tensor scale_by_timestep(const at::Tensor& input, const at::Tensor& t,
                             const at::Tensor& table) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::scale_by_timestep", "")
                       .typed<decltype(scale_by_timestep)>();
  return op.call(input, t, table);
}

std::tuple<at::Tensor, at::Tensor> posterior_mean_variance_backward(
    const at::Tensor& grad_mean, const at::Tensor& t,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ddpm::posterior_mean_variance_backward", "")
          .typed<decltype(posterior_mean_variance_backward)>();
  return op.call(grad_mean, t, posterior_mean_coef1, posterior_mean_coef2);
}

std::tuple<at::Tensor, at::Tensor> p_sample_backward(
    const c10::optional<at::Tensor>& grad_sample,
    const c10::optional<at::Tensor>& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const c10::optional<at::Tensor>& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::p_sample_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const c10::optional<at::Tensor>&,
                           const c10::optional<at::Tensor>&,
                           const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const c10::optional<at::Tensor>&,
                           const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const at::Tensor&,
                           c10::string_view, c10::string_view, bool)>();
  return op.call(grad_sample, grad_pred_xstart, model_output, x_t, t, noise,
                 sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
                 posterior_mean_coef1, posterior_mean_coef2,
                 posterior_log_variance_clipped, betas, model_mean_type,
                 model_var_type, clip_denoised);
}

using StepSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, double, c10::string_view,
    c10::string_view, bool);
using StepBackwardSig = std::tuple<at::Tensor, at::Tensor>(
    const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const c10::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    double, c10::string_view, c10::string_view, bool);

std::tuple<at::Tensor, at::Tensor> ddim_sample(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const at::Tensor& noise, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::ddim_sample", "")
                       .typed<StepSig>();
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, alphas_cumprod, alphas_cumprod_prev, eta,
                 model_mean_type, model_var_type, clip_denoised);
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_backward(
    const c10::optional<at::Tensor>& grad_sample,
    const c10::optional<at::Tensor>& grad_pred_xstart,
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    const c10::optional<at::Tensor>& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::ddim_sample_backward", "")
                       .typed<StepBackwardSig>();
  return op.call(grad_sample, grad_pred_xstart, model_output, x_t, t, noise,
                 sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod,
                 posterior_mean_coef1, posterior_mean_coef2, alphas_cumprod,
                 alphas_cumprod_prev, eta, model_mean_type, model_var_type,
                 clip_denoised);
}

at::Tensor philox_normal(const at::Tensor& input, int64_t seed, int64_t offset) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::philox_normal", "")
                       .typed<decltype(philox_normal)>();
  return op.call(input, seed, offset);
}

std::tuple<at::Tensor, at::Tensor> q_sample_philox(
    const at::Tensor& x_start, const at::Tensor& t, int64_t seed,
    int64_t offset, const at::Tensor& sqrt_alphas_cumprod,
    const at::Tensor& sqrt_one_minus_alphas_cumprod) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::q_sample_philox", "")
                       .typed<decltype(q_sample_philox)>();
  return op.call(x_start, t, seed, offset, sqrt_alphas_cumprod,
                 sqrt_one_minus_alphas_cumprod);
}

using PhiloxStepSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, c10::string_view, c10::string_view,
    bool);
using PhiloxDdimSig = std::tuple<at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, double, c10::string_view,
    c10::string_view, bool);

std::tuple<at::Tensor, at::Tensor> p_sample_philox(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::p_sample_philox", "")
                       .typed<PhiloxStepSig>();
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, posterior_log_variance_clipped, betas,
                 model_mean_type, model_var_type, clip_denoised);
}

std::tuple<at::Tensor, at::Tensor> ddim_sample_philox(
    const at::Tensor& model_output, const at::Tensor& x_t, const at::Tensor& t,
    int64_t seed, int64_t offset, const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::ddim_sample_philox", "")
                       .typed<PhiloxDdimSig>();
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, alphas_cumprod, alphas_cumprod_prev, eta,
                 model_mean_type, model_var_type, clip_denoised);
}

// The dispatcher signature of a sample_out overload: its functional twin's
// arguments, then the output (keyword-only in the schema, so last), returned.
template <typename FunctionalSig>
struct SampleOutSig;
template <typename... Args>
struct SampleOutSig<std::tuple<at::Tensor, at::Tensor>(Args...)> {
  using type = at::Tensor&(Args..., at::Tensor&);
};
template <typename FunctionalSig>
using SampleOut = typename SampleOutSig<FunctionalSig>::type;

at::Tensor& p_sample_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, const at::Tensor& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::p_sample", "sample_out")
                       .typed<SampleOut<PSampleSig>>();
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, posterior_log_variance_clipped, betas,
                 model_mean_type, model_var_type, clip_denoised, sample);
}

at::Tensor& ddim_sample_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, const at::Tensor& noise,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::ddim_sample", "sample_out")
                       .typed<SampleOut<StepSig>>();
  return op.call(model_output, x_t, t, noise, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, alphas_cumprod, alphas_cumprod_prev, eta,
                 model_mean_type, model_var_type, clip_denoised, sample);
}

at::Tensor& p_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, int64_t seed, int64_t offset,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2,
    const at::Tensor& posterior_log_variance_clipped, const at::Tensor& betas,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ddpm::p_sample_philox", "sample_out")
                       .typed<SampleOut<PhiloxStepSig>>();
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, posterior_log_variance_clipped, betas,
                 model_mean_type, model_var_type, clip_denoised, sample);
}

at::Tensor& ddim_sample_philox_out(
    at::Tensor& sample, const at::Tensor& model_output, const at::Tensor& x_t,
    const at::Tensor& t, int64_t seed, int64_t offset,
    const at::Tensor& sqrt_recip_alphas_cumprod,
    const at::Tensor& sqrt_recipm1_alphas_cumprod,
    const at::Tensor& posterior_mean_coef1,
    const at::Tensor& posterior_mean_coef2, const at::Tensor& alphas_cumprod,
    const at::Tensor& alphas_cumprod_prev, double eta,
    const std::string& model_mean_type, const std::string& model_var_type,
    bool clip_denoised) {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("ddpm::ddim_sample_philox", "sample_out")
          .typed<SampleOut<PhiloxDdimSig>>();
  return op.call(model_output, x_t, t, seed, offset, sqrt_recip_alphas_cumprod,
                 sqrt_recipm1_alphas_cumprod, posterior_mean_coef1,
                 posterior_mean_coef2, alphas_cumprod, alphas_cumprod_prev, eta,
                 model_mean_type, model_var_type, clip_denoised, sample);
}

}  // namespace ddpm
