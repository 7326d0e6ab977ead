// The schema of every ddpm operator, written out: the source of truth for
// argument names, order and defaults. The kernels find their arguments here
// by name (each family's Args struct, resolved at an operator's first call);
// tests/python/published_schemas.txt is this list as registered (python3 -m
// torch_ddpm schemas prints it).
#include "operators.h"

#include <torch/library.h>

#include <string>

namespace ddpm {
namespace ops {
namespace {

// Offset noise (noise_offset [B, C]): the noise is noise + noise_offset[b, c],
// in the same pass (lucidrains' and diffusers' noise_offset). The .generator
// overloads take (seed, offset) from a torch.Generator when the call runs
// (graph-safe: in a CUDA graph each replay draws anew); None: the device's
// default generator.
std::vector<OperatorDef> linear_and_loss_operators() {
  return {
    // x_t = sqrt_alphas_cumprod[t]*x_start + sqrt_one_minus_alphas_cumprod[t]*noise
    {"q_sample(Tensor x_start, Tensor t, Tensor noise, Tensor sqrt_alphas_cumprod, "
     "Tensor sqrt_one_minus_alphas_cumprod, Tensor? noise_offset=None) -> Tensor",
     Role::kDifferentiable},
    {"q_sample.out(Tensor x_start, Tensor t, Tensor noise, Tensor sqrt_alphas_cumprod, "
     "Tensor sqrt_one_minus_alphas_cumprod, Tensor? noise_offset=None, *, Tensor(a!) out) "
     "-> Tensor(a!)",
     Role::kOut},
    {"q_sample_backward(Tensor grad, Tensor t, Tensor sqrt_alphas_cumprod, "
     "Tensor sqrt_one_minus_alphas_cumprod) -> (Tensor grad_x_start, Tensor grad_noise)",
     Role::kBackward},
    // table[t[b]] * input[b]: the one gradient written when only one input needs it
    {"scale_by_timestep(Tensor input, Tensor t, Tensor table) -> Tensor", Role::kBackward},
    // q(x_{t-1} | x_t, x_0): the mean, and the variances as [B, 1, ...] views at x's shape
    {"posterior_mean_variance(Tensor x_start, Tensor x_t, Tensor t, "
     "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, Tensor posterior_variance, "
     "Tensor posterior_log_variance_clipped) "
     "-> (Tensor mean, Tensor variance, Tensor log_variance)",
     Role::kDifferentiable},
    {"posterior_mean_variance.out(Tensor x_start, Tensor x_t, Tensor t, "
     "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, Tensor posterior_variance, "
     "Tensor posterior_log_variance_clipped, *, Tensor(a!) mean) "
     "-> (Tensor(a!) mean, Tensor variance, Tensor log_variance)",
     Role::kOut},
    {"posterior_mean_variance_backward(Tensor grad_mean, Tensor t, "
     "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2) "
     "-> (Tensor grad_x_start, Tensor grad_x_t)",
     Role::kBackward},
    // In-kernel noise (csrc/ddpm/philox.h): Philox-4x32-10 normals keyed by
    // (seed, offset, element index), the same on CPU and CUDA.
    {"philox_normal(Tensor input, int seed, int offset) -> Tensor", Role::kDifferentiable},
    {"q_sample_philox(Tensor x_start, Tensor t, int seed, int offset, "
     "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod) "
     "-> (Tensor x_t, Tensor noise)",
     Role::kDifferentiable},
    {"philox_normal.generator(Tensor input, Generator? generator) -> Tensor",
     Role::kDifferentiable},
    // .key: int64 [2], (seed, offset) as a tensor, so that the key can be an
    // input of an exported program (torch.export makes int arguments
    // constants); on the data's CUDA device it is read when the kernel runs
    // (the steps have .key overloads too)
    {"philox_normal.key(Tensor input, Tensor key) -> Tensor", Role::kDifferentiable},
    {"q_sample_philox.generator(Tensor x_start, Tensor t, Generator? generator, "
     "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod) "
     "-> (Tensor x_t, Tensor noise)",
     Role::kDifferentiable},
    {"q_sample_philox.key(Tensor x_start, Tensor t, Tensor key, "
     "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod) "
     "-> (Tensor x_t, Tensor noise)",
     Role::kDifferentiable},
    // The training loss per sample, [B] (float32 for 16-bit data: it is a sum):
    // weight[t] * mean((model_output - target)^2), target "epsilon", "start_x" or "v".
    {"diffusion_mse(Tensor model_output, Tensor x_start, Tensor noise, Tensor t, "
     "Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod, Tensor? weight=None, "
     "str target=\"epsilon\", Tensor? noise_offset=None) -> Tensor",
     Role::kDifferentiable},
    {"diffusion_mse_backward(Tensor grad, Tensor model_output, Tensor x_start, Tensor noise, "
     "Tensor t, Tensor sqrt_alphas_cumprod, Tensor sqrt_one_minus_alphas_cumprod, "
     "Tensor? weight, str target, Tensor? noise_offset) -> Tensor",
     Role::kBackward},
  };
}

// The steps. clip_bound [B] (with clip_denoised): pred_xstart is clamped to
// [-|s_b|, |s_b|] instead of [-1, 1]; clip_rescale also divides it by the
// bound (Imagen's dynamic thresholding). DDIM's eta = 0 is deterministic;
// use_clipped_model_output: the direction term's noise prediction is the one
// re-derived from the clipped pred_xstart (improved-diffusion's DDIM) or, if
// false, the model's own (diffusers' default). Options added after an
// operator was published are trailing and defaulted, in the backward
// operators too, so that earlier calls are unchanged.
std::vector<StepKindInfo> step_kind_list() {
  return {
    {StepKind::kDdpm, "p_sample",
     "Tensor model_output, Tensor x_t, Tensor t, {noise}, Tensor sqrt_recip_alphas_cumprod, "
     "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
     "Tensor posterior_mean_coef2, Tensor posterior_log_variance_clipped, Tensor betas, "
     "str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
     "bool clip_denoised=True, Tensor? clip_bound=None, bool clip_rescale=False",
     "Tensor? grad_sample, Tensor? grad_pred_xstart, Tensor model_output, Tensor x_t, Tensor t, "
     "Tensor? noise, Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
     "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, "
     "Tensor posterior_log_variance_clipped, Tensor betas, str model_mean_type, "
     "str model_var_type, bool clip_denoised, Tensor? clip_bound=None, "
     "bool clip_rescale=False",
     {"sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
      "posterior_mean_coef2", "posterior_log_variance_clipped", "betas"}},
    // alphas_cumprod_next passed as alphas_cumprod_prev with eta = 0 gives the
    // reverse (ODE) step x_t -> x_{t+1} of ddim_reverse_sample.
    {StepKind::kDdim, "ddim_sample",
     "Tensor model_output, Tensor x_t, Tensor t, {noise}, Tensor sqrt_recip_alphas_cumprod, "
     "Tensor sqrt_recipm1_alphas_cumprod, Tensor posterior_mean_coef1, "
     "Tensor posterior_mean_coef2, Tensor alphas_cumprod, Tensor alphas_cumprod_prev, "
     "float eta=0., str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
     "bool clip_denoised=True, Tensor? clip_bound=None, bool clip_rescale=False, "
     "bool use_clipped_model_output=True",
     "Tensor? grad_sample, Tensor? grad_pred_xstart, Tensor model_output, Tensor x_t, Tensor t, "
     "Tensor? noise, Tensor sqrt_recip_alphas_cumprod, Tensor sqrt_recipm1_alphas_cumprod, "
     "Tensor posterior_mean_coef1, Tensor posterior_mean_coef2, Tensor alphas_cumprod, "
     "Tensor alphas_cumprod_prev, float eta, str model_mean_type, str model_var_type, "
     "bool clip_denoised, Tensor? clip_bound=None, bool clip_rescale=False, "
     "bool use_clipped_model_output=True",
     {"sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_mean_coef1",
      "posterior_mean_coef2", "alphas_cumprod", "alphas_cumprod_prev"}},
    // In sigma space, t indexing the inference steps: sigmas[t] the step's
    // sigma, sigmas_next[t] the one it goes to (0 at the end). eta = 0 is
    // diffusers' EulerDiscreteScheduler, eta = 1 EulerAncestralDiscreteScheduler.
    // x_t is the sigma-scaled sample (the model sees x_t/sqrt(sigma^2 + 1)).
    {StepKind::kEuler, "euler_sample",
     "Tensor model_output, Tensor x_t, Tensor t, {noise}, Tensor sigmas, Tensor sigmas_next, "
     "float eta=0., str model_mean_type=\"epsilon\", str model_var_type=\"fixed_small\", "
     "bool clip_denoised=False, Tensor? clip_bound=None, bool clip_rescale=False",
     "Tensor? grad_sample, Tensor? grad_pred_xstart, Tensor model_output, Tensor x_t, Tensor t, "
     "Tensor? noise, Tensor sigmas, Tensor sigmas_next, float eta, str model_mean_type, "
     "str model_var_type, bool clip_denoised, Tensor? clip_bound=None, bool clip_rescale=False",
     {"sigmas", "sigmas_next", nullptr, nullptr, nullptr, nullptr}},
    // DPM-Solver++ multistep, t indexing the inference steps as Euler's, x_t
    // in the variance-preserving scale. solver_order is this step's order (a
    // scheduler lowers it at the first and last steps); orders 2 and 3 read
    // pred_xstart_1 and pred_xstart_2, the pred_xstart outputs of the steps
    // one and two before, and sigmas_1[t], sigmas_2[t], those steps' sigmas.
    // algorithm_type "dpmsolver++" (ODE) or "sde-dpmsolver++" (with noise).
    {StepKind::kDpmSolver, "dpm_solver_sample",
     "Tensor model_output, Tensor x_t, Tensor t, {noise}, Tensor sigmas, Tensor sigmas_next, "
     "Tensor sigmas_1, Tensor sigmas_2, Tensor? pred_xstart_1=None, "
     "Tensor? pred_xstart_2=None, int solver_order=1, str solver_type=\"midpoint\", "
     "str algorithm_type=\"dpmsolver++\", str model_mean_type=\"epsilon\", "
     "str model_var_type=\"fixed_small\", bool clip_denoised=False, Tensor? clip_bound=None, "
     "bool clip_rescale=False",
     "Tensor? grad_sample, Tensor? grad_pred_xstart, Tensor model_output, Tensor x_t, Tensor t, "
     "Tensor? noise, Tensor sigmas, Tensor sigmas_next, Tensor sigmas_1, Tensor sigmas_2, "
     "int solver_order, str solver_type, str algorithm_type, str model_mean_type, "
     "str model_var_type, bool clip_denoised, Tensor? clip_bound=None, bool clip_rescale=False",
     {"sigmas", "sigmas_next", "sigmas_1", "sigmas_2", nullptr, nullptr}},
  };
}

// A step kind's ten operators, from its two argument lists.
void add_step_operators(const StepKindInfo& kind, std::vector<OperatorDef>& defs) {
  const std::string name = kind.name;
  const auto args = [&](const char* noise) {
    std::string text = kind.arguments;
    text.replace(text.find("{noise}"), 7, noise);
    return text;
  };
  const char* kPair = " -> (Tensor sample, Tensor pred_xstart)";
  const char* kOut = ", *, Tensor(a!) sample, Tensor(b!) pred_xstart) "
                     "-> (Tensor(a!) sample, Tensor(b!) pred_xstart)";
  // sample_out: the sample alone, for sampling loops that drop pred_xstart
  const char* kSampleOut = ", *, Tensor(a!) sample) -> Tensor(a!)";
  struct Source {
    const char* suffix;
    const char* noise;
    const char* overload_prefix;
  };
  for (const Source& s : {Source{"", "Tensor noise", ""}, Source{"_philox", "int seed, int offset", ""},
                          Source{"_philox", "Generator? generator", "generator"},
                          Source{"_philox", "Tensor key", "key"}}) {
    const std::string op = name + s.suffix;
    const std::string prefix = s.overload_prefix;
    const std::string dot = prefix.empty() ? "." : "." + prefix + "_";
    defs.push_back({op + (prefix.empty() ? "" : "." + prefix) + "(" + args(s.noise) + ")" + kPair,
                    Role::kDifferentiable, &kind});
    defs.push_back({op + dot + "out(" + args(s.noise) + kOut, Role::kOut, &kind});
    defs.push_back({op + dot + "sample_out(" + args(s.noise) + kSampleOut, Role::kOut, &kind});
  }
  defs.push_back({name + "_backward(" + kind.backward_arguments +
                      ") -> (Tensor grad_model_output, Tensor grad_x_t)",
                  Role::kBackward, &kind});
}

}  // namespace

// (Function-local: other files' static initializers, the kernels'
// registrations, use them before this file's statics would be made.)
const std::vector<StepKindInfo>& step_kinds() {
  static const std::vector<StepKindInfo> kinds = step_kind_list();
  return kinds;
}

const std::vector<OperatorDef>& operator_defs() {
  static const std::vector<OperatorDef> defs = [] {
    std::vector<OperatorDef> all = linear_and_loss_operators();
    for (const StepKindInfo& kind : step_kinds()) add_step_operators(kind, all);
    return all;
  }();
  return defs;
}

}  // namespace ops
}  // namespace ddpm

TORCH_LIBRARY(ddpm, m) {
  for (const ddpm::ops::OperatorDef& def : ddpm::ops::operator_defs()) m.def(def.schema.c_str());
  // Which CPU noise generator runs here: "avx512", "avx2" or "default" (set
  // TORCH_DDPM_CPU_CAPABILITY=avx2|default to cap it). For tests and reports.
  m.def("_cpu_noise_generator() -> str",
        [] { return std::string(ddpm::cpu_noise_generator()); });
  // Which clone of the CPU element loops runs here (see csrc/cpu/loops.h).
  m.def("_cpu_loop_clone() -> str", [] { return std::string(ddpm::cpu_loop_clone()); });
}
