#include "step.h"

#include <cstring>
#include <vector>

namespace ddpm {
namespace ops {

int64_t check_step_layout(const char* op, const at::Tensor& model_output,
                          const at::Tensor& x_t, const at::Tensor& t,
                          const StepTableArgs& tables, const StepModes& modes) {
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
  const auto& n = tables;
  return check_tables(op, {n[0], n[1], n[2], n[3], n[4], n[5]}, x_t);
}

StepModes parse_step_modes(const char* op, StepKind kind, const std::string& mean_type,
                           const std::string& var_type, bool clip_denoised, double eta,
                           bool clip_rescale, bool use_clipped_model_output) {
  TORCH_CHECK(!step_kind_info(kind).takes_eta() || (eta >= 0.0 && eta < 1e300), op,
              ": expected eta to be a finite number >= 0, got ", eta);
  StepModes modes;
  modes.kind = kind;
  modes.mean_type = parse_mean_type(op, mean_type);
  modes.var_type = parse_var_type(op, var_type);
  modes.clip_denoised = clip_denoised;
  modes.eta = eta;
  modes.clip_rescale = clip_rescale;
  modes.model_noise = !use_clipped_model_output;
  return modes;
}

void check_clip_bound(const char* op, const at::Tensor* clip_bound, const at::Tensor& x_t,
                      const StepModes& modes) {
  if (clip_bound == nullptr) {
    TORCH_CHECK(!modes.clip_rescale, op,
                ": clip_rescale=True divides pred_xstart by the per-sample clip_bound, but "
                "clip_bound is None: pass clip_bound (shape [B]) or clip_rescale=False");
    return;
  }
  TORCH_CHECK(modes.clip_denoised, op,
              ": clip_bound is pred_xstart's per-sample clamp, but clip_denoised=False: pass "
              "clip_denoised=True to clip, or clip_bound=None");
  const at::Tensor& s = *clip_bound;
  check_float_dtype(op, "clip_bound", s);
  TORCH_CHECK(s.dim() == 1 && s.size(0) == x_t.size(0), op,
              ": expected clip_bound to have shape [", x_t.size(0),
              "] (one bound per sample), got ", s.sizes());
  TORCH_CHECK(s.device() == x_t.device(), op, ": expected clip_bound on ", x_t.device(),
              " like x_t, got ", s.device());
}

std::tuple<at::Tensor, at::Tensor> step_outputs(const char* op, const StepOutputs& given,
                                                const at::Tensor& model_output,
                                                const at::Tensor& x_t,
                                                const at::Tensor* noise) {
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

namespace {

StepTableArgs table_args(const CallArgs& args, const StepKindInfo& info, size_t first) {
  StepTableArgs tables;
  for (size_t i = 0; i < 6; ++i) tables[i] = {info.tables[i], &args.tensor(first + i)};
  return tables;
}

}  // namespace

StepCall read_step_call(const CallArgs& args, const StepKindInfo& info, NoiseSource noise) {
  const StepArgPositions at = step_arg_positions(info, noise);
  StepCall c;
  c.op = error_name(args.op());
  const char* op = c.op.c_str();
  if (noise == NoiseSource::kPhilox) {
    c.noise = generated_noise(op, args.integer(at.seed), args.integer(at.offset));
  } else if (noise == NoiseSource::kGenerator) {
    c.noise = generator_noise(args.value(at.generator));
  } else {
    c.noise = explicit_noise(args.tensor(at.noise));
  }
  c.modes = read_step_modes(op, args, info, at);
  c.clip_bound = args.optional_tensor(at.clip_bound);
  c.model_output = &args.tensor(at.model_output);
  c.x_t = &args.tensor(at.x_t);
  c.t = &args.tensor(at.t);
  c.tables = table_args(args, info, at.first_table);
  const auto overloads = step_overloads(noise);
  if (args.overload() == overloads[1]) {
    c.outputs = {&args.tensor(at.sample), &args.tensor(at.pred_xstart), true};
  } else if (args.overload() == overloads[2]) {
    c.outputs = {&args.tensor(at.sample), nullptr, false};
  }
  return c;
}

StepOp step_op_of(const c10::OperatorHandle& op) {
  // ddpm::<kind name>[_philox], compared in place (this runs on every call)
  const std::string& full = op.schema().name();
  const char* name = full.c_str() + full.find("::") + 2;
  for (const StepKindInfo& info : step_kinds()) {
    const size_t n = std::strlen(info.name);
    if (std::strncmp(name, info.name, n) != 0) continue;
    if (name[n] == '\0') return {&info, NoiseSource::kTensor};
    if (std::strcmp(name + n, "_philox") == 0) {
      const bool generator = op.schema().overload_name().rfind("generator", 0) == 0;
      return {&info, generator ? NoiseSource::kGenerator : NoiseSource::kPhilox};
    }
  }
  TORCH_CHECK(false, "ddpm: ", full, " is not a step operator");
}

StepBackwardCall read_step_backward_call(const CallArgs& args) {
  // ddpm::<kind name>_backward
  const std::string& full = args.op().schema().name();
  const std::string name = full.substr(full.find("::") + 2);
  const StepKindInfo* info = nullptr;
  for (const StepKindInfo& k : step_kinds()) {
    if (name == std::string(k.name) + "_backward") info = &k;
  }
  TORCH_CHECK(info != nullptr, "ddpm: ", full, " is not a step's backward operator");
  const StepBackwardPositions at = step_backward_positions(*info);
  StepBackwardCall c;
  c.op = error_name(args.op());
  const char* op = c.op.c_str();
  c.modes = read_step_modes(op, args, *info, at);
  c.clip_bound = args.optional_tensor(at.clip_bound);
  c.grad_sample = args.optional_tensor(at.grad_sample);
  c.grad_pred_xstart = args.optional_tensor(at.grad_pred_xstart);
  c.model_output = &args.tensor(at.model_output);
  c.x_t = &args.tensor(at.x_t);
  c.t = &args.tensor(at.t);
  c.noise = args.optional_tensor(at.noise);
  c.tables = table_args(args, *info, at.first_table);
  c.num_timesteps = check_step_layout(op, *c.model_output, *c.x_t, *c.t, c.tables, c.modes);
  if (c.noise != nullptr) check_like(op, {"noise", c.noise}, {"x_t", c.x_t});
  check_clip_bound(op, c.clip_bound, *c.x_t, c.modes);
  TORCH_CHECK(c.noise != nullptr || !step_backward_reads_noise(c.modes, c.grad_sample), op,
              ": expected a noise tensor like x_t: a learned variance's "
              "gradient reads the noise when grad_sample is given, got None");
  if (c.grad_sample != nullptr) check_like(op, {"grad_sample", c.grad_sample}, {"x_t", c.x_t});
  if (c.grad_pred_xstart != nullptr) {
    check_like(op, {"grad_pred_xstart", c.grad_pred_xstart}, {"x_t", c.x_t});
  }
  return c;
}

}  // namespace ops
}  // namespace ddpm
