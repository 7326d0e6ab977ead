// The operator table (see op_table.h) and the schemas made from it.
#include "op_table.h"

#include <torch/library.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ddpm/kernels.h"

namespace ddpm {
namespace ops {

// Schema text of an argument: its type, its name, its default.
#define DDPM_SCHEMA_TYPE_Tensor "Tensor"
#define DDPM_SCHEMA_TYPE_OptTensor "Tensor?"
#define DDPM_SCHEMA_TYPE_OptGenerator "Generator?"
#define DDPM_SCHEMA_TYPE_int "int"
#define DDPM_SCHEMA_TYPE_float "float"
#define DDPM_SCHEMA_TYPE_str "str"
#define DDPM_SCHEMA_TYPE_bool "bool"
#define DDPM_SCHEMA_DEFAULT_float(value) #value
#define DDPM_SCHEMA_DEFAULT_str(value) #value
#define DDPM_SCHEMA_DEFAULT_bool(value) ((value) ? "True" : "False")
#define DDPM_SCHEMA_DEFAULT_OptTensor(value) #value
#define DDPM_ARG_SCHEMA(type, name) DDPM_SCHEMA_TYPE_##type " " #name,
#define DDPM_ARG_SCHEMA_DEFAULT(type, name, value) \
  std::string(DDPM_SCHEMA_TYPE_##type " " #name "=") + DDPM_SCHEMA_DEFAULT_##type(value),
#define DDPM_ARG_SCHEMA_NO_DEFAULT(type, name, value) DDPM_SCHEMA_TYPE_##type " " #name,

const std::vector<StepKindInfo>& step_kinds() {
#define DDPM_TABLE_NAME(type, name) #name,
#define DDPM_STEP_KIND_INFO(kind, op, TABLES, OWN_ARGS, OWN_OPTIONS)                 \
  StepKindInfo{StepKind::kind,                                                       \
               #op,                                                                  \
               {TABLES(DDPM_TABLE_NAME)},                                            \
               {OWN_ARGS(DDPM_ARG_SCHEMA_DEFAULT)},                                  \
               {OWN_ARGS(DDPM_ARG_SCHEMA_NO_DEFAULT)},                               \
               {OWN_OPTIONS(DDPM_ARG_SCHEMA_DEFAULT)}},
  static const std::vector<StepKindInfo> kinds = {DDPM_STEP_KINDS(DDPM_STEP_KIND_INFO)};
#undef DDPM_STEP_KIND_INFO
#undef DDPM_TABLE_NAME
  return kinds;
}

const StepKindInfo& step_kind_info(StepKind kind) {
  for (const StepKindInfo& info : step_kinds()) {
    if (info.kind == kind) return info;
  }
  TORCH_CHECK(false, "ddpm: no operator for step kind ", static_cast<int>(kind));
}

std::string step_op_name(const StepKindInfo& info, NoiseSource noise) {
  return std::string(info.name) + (noise == NoiseSource::kTensor ? "" : "_philox");
}

std::string qualified_op_name(const std::string& name, const std::string& overload) {
  return overload.empty() ? name : name + "." + overload;
}

std::array<std::string, 3> step_overloads(NoiseSource noise) {
  if (noise == NoiseSource::kGenerator) {
    return {"generator", "generator_out", "generator_sample_out"};
  }
  return {"", "out", "sample_out"};
}

StepArgPositions step_arg_positions(const StepKindInfo& info, NoiseSource noise) {
  StepArgPositions at;
  size_t next = 3;
  at.noise = at.seed = at.offset = at.generator = SIZE_MAX;
  if (noise == NoiseSource::kPhilox) {
    at.seed = next++;
    at.offset = next++;
  } else if (noise == NoiseSource::kGenerator) {
    at.generator = next++;
  } else {
    at.noise = next++;
  }
  at.first_table = next;
  next += 6;
  at.eta = info.takes_eta() ? next++ : SIZE_MAX;
  at.mean_type = next++;
  at.var_type = next++;
  at.clip_denoised = next++;
  at.clip_bound = next++;
  at.clip_rescale = next++;
  at.use_clipped_model_output = info.takes_use_clipped_model_output() ? next++ : SIZE_MAX;
  at.sample = next++;
  at.pred_xstart = next;
  return at;
}

StepBackwardPositions step_backward_positions(const StepKindInfo& info) {
  StepBackwardPositions at;
  size_t next = at.first_table + 6;
  at.eta = info.takes_eta() ? next++ : SIZE_MAX;
  at.mean_type = next++;
  at.var_type = next++;
  at.clip_denoised = next++;
  at.clip_bound = next++;
  at.clip_rescale = next++;
  at.use_clipped_model_output = info.takes_use_clipped_model_output() ? next : SIZE_MAX;
  return at;
}

namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}
std::vector<std::string> tensors(const std::vector<const char*>& names) {
  std::vector<std::string> out;
  for (const char* n : names) out.push_back(std::string("Tensor ") + n);
  return out;
}
std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A step's arguments after its noise: the tables, eta for DDIM, the modes;
// with_defaults: the forward operators' (a backward operator takes every
// argument explicitly but the trailing options).
std::vector<std::string> step_tail(const StepKindInfo& info, bool with_defaults) {
  std::vector<std::string> args = tensors({info.tables.begin(), info.tables.end()});
  if (with_defaults) {
    return args + info.own_args +
           std::vector<std::string>{DDPM_STEP_MODES(DDPM_ARG_SCHEMA_DEFAULT)} + info.own_options;
  }
  return args + info.own_args_no_defaults +
         std::vector<std::string>{DDPM_STEP_BASE_MODES(DDPM_ARG_SCHEMA_NO_DEFAULT)
                                      DDPM_STEP_CLIP_OPTIONS(DDPM_ARG_SCHEMA_DEFAULT)} +
         info.own_options;
}

struct Schemas {
  std::vector<std::string> text;
  OpNames names;
  void add(std::vector<std::string>* list, const std::string& name, const std::string& overload,
           const std::vector<std::string>& args, const std::string& returns) {
    const std::string full = qualified_op_name(name, overload);
    text.push_back(full + "(" + join(args) + ") -> " + returns);
    list->push_back(full);
  }
};

// (Built on first use, from other files' static initializers too: every
// list is local, so none is used before it is made.)
Schemas build_schemas() {
  const std::vector<std::string> kQSample = {DDPM_Q_SAMPLE_ARGS(DDPM_ARG_SCHEMA)
                                                 DDPM_Q_SAMPLE_OPTIONS(DDPM_ARG_SCHEMA_DEFAULT)};
  const std::vector<std::string> kQSamplePhilox = {DDPM_Q_SAMPLE_PHILOX_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kPhiloxNormal = {DDPM_PHILOX_NORMAL_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kQSampleGenerator = {
      DDPM_Q_SAMPLE_GENERATOR_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kPhiloxNormalGenerator = {
      DDPM_PHILOX_NORMAL_GENERATOR_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kGeneratorNoise = {DDPM_STEP_GENERATOR_NOISE(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kQSampleBackward = {
      DDPM_Q_SAMPLE_BACKWARD_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kScaleByTimestep = {
      DDPM_SCALE_BY_TIMESTEP_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kPosterior = {DDPM_POSTERIOR_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kPosteriorBackward = {
      DDPM_POSTERIOR_BACKWARD_ARGS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kMse = {DDPM_DIFFUSION_MSE_INPUTS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kMseOptions = {
      DDPM_DIFFUSION_MSE_OPTIONS(DDPM_ARG_SCHEMA_DEFAULT)};
  const std::vector<std::string> kMseOptionsNoDefaults = {
      DDPM_DIFFUSION_MSE_OPTIONS(DDPM_ARG_SCHEMA_NO_DEFAULT)};
  const std::vector<std::string> kMseGrad = {DDPM_DIFFUSION_MSE_BACKWARD_GRAD(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kInputs = {DDPM_STEP_INPUTS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kNoise = {DDPM_STEP_NOISE(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kNoiseKey = {DDPM_STEP_PHILOX_NOISE(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kBackwardGrads = {DDPM_STEP_BACKWARD_GRADS(DDPM_ARG_SCHEMA)};
  const std::vector<std::string> kBackwardNoise = {DDPM_STEP_BACKWARD_NOISE(DDPM_ARG_SCHEMA)};
  Schemas s;
  OpNames& n = s.names;
  s.add(&n.functional, "q_sample", "", kQSample, "Tensor");
  s.add(&n.out, "q_sample", "out", kQSample + std::vector<std::string>{"*", "Tensor(a!) out"},
        "Tensor(a!)");
  s.add(&n.backward, "q_sample_backward", "", kQSampleBackward,
        "(Tensor grad_x_start, Tensor grad_noise)");
  s.add(&n.backward, "scale_by_timestep", "", kScaleByTimestep, "Tensor");
  s.add(&n.functional, "posterior_mean_variance", "", kPosterior,
        "(Tensor mean, Tensor variance, Tensor log_variance)");
  // out=: the mean into a given tensor (x_t itself allowed); variance and
  // log_variance are per-sample values viewed at x's shape
  s.add(&n.out, "posterior_mean_variance", "out",
        kPosterior + std::vector<std::string>{"*", "Tensor(a!) mean"},
        "(Tensor(a!) mean, Tensor variance, Tensor log_variance)");
  s.add(&n.backward, "posterior_mean_variance_backward", "", kPosteriorBackward,
        "(Tensor grad_x_start, Tensor grad_x_t)");
  // In-kernel noise (csrc/ddpm/philox.h): Philox-4x32-10 normals keyed by
  // (seed, offset, element index), the same on CPU and CUDA.
  s.add(&n.functional, "philox_normal", "", kPhiloxNormal, "Tensor");
  s.add(&n.functional, "q_sample_philox", "", kQSamplePhilox, "(Tensor x_t, Tensor noise)");
  // (seed, offset) from a generator when the call runs: graph-safe
  s.add(&n.functional, "philox_normal", "generator", kPhiloxNormalGenerator, "Tensor");
  s.add(&n.functional, "q_sample_philox", "generator", kQSampleGenerator,
        "(Tensor x_t, Tensor noise)");
  // The training loss, [B] (float32 for 16-bit data: it is a sum).
  s.add(&n.functional, "diffusion_mse", "", kMse + kMseOptions, "Tensor");
  s.add(&n.backward, "diffusion_mse_backward", "", kMseGrad + kMse + kMseOptionsNoDefaults,
        "Tensor");
  for (const StepKindInfo& info : step_kinds()) {
    for (NoiseSource noise : kNoiseSources) {
      const std::string name = step_op_name(info, noise);
      const auto& noise_args = noise == NoiseSource::kTensor   ? kNoise
                               : noise == NoiseSource::kPhilox ? kNoiseKey
                                                               : kGeneratorNoise;
      const auto args = kInputs + noise_args + step_tail(info, true);
      const auto overloads = step_overloads(noise);
      s.add(&n.functional, name, overloads[0], args, "(Tensor sample, Tensor pred_xstart)");
      s.add(&n.out, name, overloads[1],
            args + std::vector<std::string>{"*", "Tensor(a!) sample", "Tensor(b!) pred_xstart"},
            "(Tensor(a!) sample, Tensor(b!) pred_xstart)");
      // sample_out: the step writing its sample alone, for sampling loops
      // that drop pred_xstart (a quarter less memory traffic); picked by
      // torch.ops.ddpm.<step>(..., sample=out)
      s.add(&n.out, name, overloads[2],
            args + std::vector<std::string>{"*", "Tensor(a!) sample"}, "Tensor(a!)");
    }
    s.add(&n.backward, std::string(info.name) + "_backward", "",
          kBackwardGrads + kInputs + kBackwardNoise + step_tail(info, false),
          "(Tensor grad_model_output, Tensor grad_x_t)");
  }
  return s;
}

const Schemas& schemas() {
  static const Schemas s = build_schemas();
  return s;
}

}  // namespace

const OpNames& op_names() { return schemas().names; }

const std::vector<std::string>& op_schemas() { return schemas().text; }

}  // namespace ops
}  // namespace ddpm

TORCH_LIBRARY(ddpm, m) {
  for (const std::string& schema : ddpm::ops::op_schemas()) m.def(schema.c_str());
  // Which CPU noise generator runs here: "avx512", "avx2" or "default" (set
  // TORCH_DDPM_CPU_CAPABILITY=avx2|default to cap it). For tests and reports.
  m.def("_cpu_noise_generator() -> str",
        [] { return std::string(ddpm::cpu_noise_generator()); });
  // Which clone of the CPU element loops runs here (see csrc/cpu/loops.h).
  m.def("_cpu_loop_clone() -> str", [] { return std::string(ddpm::cpu_loop_clone()); });
}
