// The operator table: every ddpm operator, said once.
//
// Each family of operators is a list of named arguments here, and a step
// kind (ddpm/coefficients.h) is one StepKindInfo line. From them come:
// - the schemas (op_table.cpp: TORCH_LIBRARY, each schema text built from
//   these lists, each variant's alias annotations added alike);
// - every backend's kernels (register_kernels<Backend>: one boxed kernel per
//   family reads its arguments by the positions the table gives, so CPU,
//   CUDA and Meta run one path, Meta without the launch);
// - the autograd registrations (autograd/): the functional operators'
//   derivatives, the out=/sample= overloads' refusal of gradients, the
//   backward operators' not-implemented derivative.
// - the C++ API (ddpm_ops.h, ddpm_ops.cpp), from the same lists.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "ddpm/coefficients.h"
#include "op_args.h"

namespace ddpm {
namespace ops {

// The argument lists (op_args.h) give the kernels their positions: an enum
// of the names (QSampleArgs::noise is noise's position; an out= overload's
// output comes after the last).
#define DDPM_ARG_POSITION(type, name) name,
#define DDPM_ARG_POSITION3(type, name, value) name,
struct QSampleArgs {
  enum : size_t { DDPM_Q_SAMPLE_ARGS(DDPM_ARG_POSITION) DDPM_Q_SAMPLE_OPTIONS(DDPM_ARG_POSITION3) out };
};
struct QSamplePhiloxArgs { enum : size_t { DDPM_Q_SAMPLE_PHILOX_ARGS(DDPM_ARG_POSITION) }; };
struct PhiloxNormalArgs { enum : size_t { DDPM_PHILOX_NORMAL_ARGS(DDPM_ARG_POSITION) }; };
struct QSampleGeneratorArgs { enum : size_t { DDPM_Q_SAMPLE_GENERATOR_ARGS(DDPM_ARG_POSITION) }; };
struct PhiloxNormalGeneratorArgs {
  enum : size_t { DDPM_PHILOX_NORMAL_GENERATOR_ARGS(DDPM_ARG_POSITION) };
};
struct QSampleBackwardArgs { enum : size_t { DDPM_Q_SAMPLE_BACKWARD_ARGS(DDPM_ARG_POSITION) }; };
struct ScaleByTimestepArgs { enum : size_t { DDPM_SCALE_BY_TIMESTEP_ARGS(DDPM_ARG_POSITION) }; };
struct PosteriorArgs { enum : size_t { DDPM_POSTERIOR_ARGS(DDPM_ARG_POSITION) mean }; };
struct PosteriorBackwardArgs { enum : size_t { DDPM_POSTERIOR_BACKWARD_ARGS(DDPM_ARG_POSITION) }; };
// the backward's positions are the forward's plus one (grad comes first)
struct DiffusionMseArgs {
  enum : size_t {
    DDPM_DIFFUSION_MSE_INPUTS(DDPM_ARG_POSITION) DDPM_DIFFUSION_MSE_OPTIONS(DDPM_ARG_POSITION3)
  };
};
#undef DDPM_ARG_POSITION3
#undef DDPM_ARG_POSITION

// Where a step's noise comes from: a tensor, or Philox drawn in the kernel
// from (seed, offset) (the *_philox operators), or from a generator's state
// (their .generator overloads).
enum class NoiseSource { kTensor, kPhilox, kGenerator };
constexpr NoiseSource kNoiseSources[] = {NoiseSource::kTensor, NoiseSource::kPhilox,
                                         NoiseSource::kGenerator};

// One kind of reverse step as an operator (a DDPM_STEP_KINDS line): its
// name, the schedule tables it reads in schema order (the first four are
// every step's; the last two fill StepTables::kind_tables), its own
// arguments' schema text (with and without defaults; eta is the only one so
// far) and its trailing options' (with defaults; DDIM's
// use_clipped_model_output).
struct StepKindInfo {
  StepKind kind;
  const char* name;
  std::array<const char*, 6> tables;
  std::vector<std::string> own_args, own_args_no_defaults, own_options;
  bool takes_eta() const { return !own_args.empty(); }
  bool takes_use_clipped_model_output() const { return !own_options.empty(); }
};

// Every step kind, from DDPM_STEP_KINDS.
const std::vector<StepKindInfo>& step_kinds();
const StepKindInfo& step_kind_info(StepKind kind);

// The operator name of a step: "p_sample", "ddim_sample_philox", ... (a
// generator's is the _philox operator's), and the overload names of its
// functional, out= and sample_out forms ("", "out", "sample_out"; with a
// generator "generator", "generator_out", "generator_sample_out").
std::string step_op_name(const StepKindInfo& info, NoiseSource noise);
std::array<std::string, 3> step_overloads(NoiseSource noise);

// "name.overload", or "name" for the default overload: how the dispatcher
// names an operator's overload (registration, schemas, messages).
std::string qualified_op_name(const std::string& name, const std::string& overload);

// Positions of a step's arguments in its schema.
struct StepArgPositions {
  size_t model_output = 0, x_t = 1, t = 2;
  size_t noise, seed, offset;  // noise for a tensor, seed and offset for Philox
  size_t generator;            // for a generator (SIZE_MAX otherwise)
  size_t first_table;          // then the six tables
  size_t eta;                  // if the kind takes it
  size_t mean_type, var_type, clip_denoised, clip_bound, clip_rescale;
  size_t use_clipped_model_output;  // if the kind takes it
  size_t sample, pred_xstart;       // out= / sample_out arguments
};
StepArgPositions step_arg_positions(const StepKindInfo& info, NoiseSource noise);

// A step's backward operator: (grad_sample?, grad_pred_xstart?, model_output,
// x_t, t, noise?, tables..., [eta], modes) -> (grad_model_output, grad_x_t).
struct StepBackwardPositions {
  size_t grad_sample = 0, grad_pred_xstart = 1, model_output = 2, x_t = 3, t = 4,
         noise = 5, first_table = 6;
  size_t eta, mean_type, var_type, clip_denoised, clip_bound, clip_rescale;
  size_t use_clipped_model_output;
};
StepBackwardPositions step_backward_positions(const StepKindInfo& info);

// Every operator's name (with ".overload"), for registrations and tests.
struct OpNames {
  std::vector<std::string> functional;  // differentiable (autograd/)
  std::vector<std::string> out;         // out= and sample_out: not differentiable
  std::vector<std::string> backward;    // backward operators
};
const OpNames& op_names();
// Every operator's schema, as TORCH_LIBRARY(ddpm) defines it.
const std::vector<std::string>& op_schemas();

}  // namespace ops
}  // namespace ddpm
