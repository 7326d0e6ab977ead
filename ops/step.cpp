#include "step.h"

#include <vector>

namespace ddpm {
namespace ops {

int64_t check_step_layout(const char* op, const at::Tensor& model_output,
                          const at::Tensor& x_t, const at::Tensor& t,
                          c10::ArrayRef<NamedTensor> tables, const StepModes& modes) {
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
    std::vector<c10::SymInt> expected(x_t.sym_sizes().begin(), x_t.sym_sizes().end());
    expected[1] = expected[1] * 2;
    TORCH_CHECK(model_output.sym_sizes() == c10::SymIntArrayRef(expected), op,
                ": expected model_output to have shape ", c10::SymIntArrayRef(expected),
                " (2C channels: mean and variance halves for learned "
                "variances), got ",
                model_output.sym_sizes());
  } else {
    TORCH_CHECK(model_output.sym_sizes() == x_t.sym_sizes(), op,
                ": expected model_output to have shape ", x_t.sym_sizes(),
                " like x_t, got ", model_output.sym_sizes());
  }
  check_timesteps(op, t, x_t);
  return check_tables(op, tables, x_t);
}

StepArgs::StepArgs(const c10::FunctionSchema& s, const StepKindInfo* info)
    : kind(info),
      noise_source(optional_arg(s, "seed") >= 0        ? NoiseSource::kPhilox
                   : optional_arg(s, "generator") >= 0 ? NoiseSource::kGenerator
                   : optional_arg(s, "key") >= 0       ? NoiseSource::kKey
                                                       : NoiseSource::kTensor),
      model_output(arg(s, "model_output")),
      x_t(arg(s, "x_t")),
      t(arg(s, "t")),
      noise(optional_arg(s, "noise")),
      key(s),
      tables(),
      eta(optional_arg(s, "eta")),
      model_mean_type(arg(s, "model_mean_type")),
      model_var_type(arg(s, "model_var_type")),
      clip_denoised(arg(s, "clip_denoised")),
      clip_bound(arg(s, "clip_bound")),
      clip_rescale(arg(s, "clip_rescale")),
      use_clipped_model_output(optional_arg(s, "use_clipped_model_output")),
      history{optional_arg(s, "pred_xstart_1"), optional_arg(s, "pred_xstart_2")},
      solver_order(optional_arg(s, "solver_order")),
      solver_type(optional_arg(s, "solver_type")),
      algorithm_type(optional_arg(s, "algorithm_type")),
      sample(optional_arg(s, "sample")),
      pred_xstart(optional_arg(s, "pred_xstart")),
      grad_sample(optional_arg(s, "grad_sample")),
      grad_pred_xstart(optional_arg(s, "grad_pred_xstart")) {
  tables.fill(-1);
  for (size_t i = 0; i < info->table_count(); ++i) tables[i] = arg(s, info->tables[i]);
}

StepModes read_step_modes(const char* op, const CallArgs& args, const StepArgs& at) {
  const double eta = at.eta >= 0 ? args.real(at.eta) : 0.0;
  TORCH_CHECK(eta >= 0.0 && eta < 1e300, op, ": expected eta to be a finite number >= 0, got ",
              eta);
  StepModes modes;
  modes.kind = at.kind->kind;
  modes.mean_type = parse_mean_type(op, args.str(at.model_mean_type));
  TORCH_CHECK(kind_has_posterior_mean(modes.kind) || modes.mean_type != MeanType::kPreviousX,
              op, ": model_mean_type=\"previous_x\" is a posterior mean, which ", op,
              " does not form: expected \"epsilon\", \"start_x\" or \"v\"");
  modes.var_type = parse_var_type(op, args.str(at.model_var_type));
  modes.clip_denoised = args.flag(at.clip_denoised);
  modes.eta = eta;
  modes.clip_rescale = args.flag(at.clip_rescale);
  modes.model_noise = at.use_clipped_model_output >= 0 && !args.flag(at.use_clipped_model_output);
  if (at.solver_order >= 0) {
    const int64_t order = args.integer(at.solver_order);
    TORCH_CHECK(order >= 1 && order <= 3, op, ": expected solver_order to be 1, 2 or 3, got ",
                order);
    modes.solver_order = static_cast<int32_t>(order);
    modes.heun = parse_solver_type_is_heun(op, args.str(at.solver_type));
    modes.sde = parse_algorithm_type_is_sde(op, args.str(at.algorithm_type));
  }
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
  TORCH_CHECK(s.dim() == 1 && s.sym_size(0) == x_t.sym_size(0), op,
              ": expected clip_bound to have shape [", x_t.sym_size(0),
              "] (one bound per sample), got ", s.sym_sizes());
  TORCH_CHECK(s.device() == x_t.device(), op, ": expected clip_bound on ", x_t.device(),
              " like x_t, got ", s.device());
}

std::tuple<at::Tensor, at::Tensor> step_outputs(const char* op, const CallArgs& args,
                                                const StepArgs& at, const at::Tensor& x_t) {
  const bool write_pred_xstart = at.sample < 0 || at.pred_xstart >= 0;  // not sample_out
  TORCH_CHECK(at.sample < 0 || at.pred_xstart < 0 || x_t.numel() == 0 ||
                  !args.tensor(at.pred_xstart).is_same(args.tensor(at.sample)),
              op, ": expected sample and pred_xstart to be different tensors");
  at::Tensor sample = output_like(op, args, at.sample, x_t, at.x_t);
  at::Tensor pred_xstart =
      write_pred_xstart ? output_like(op, args, at.pred_xstart, x_t, -1) : at::Tensor();
  return {sample, pred_xstart};
}

namespace {

StepTableArgs table_args(const CallArgs& args, const StepArgs& at) {
  StepTableArgs tables;
  tables.fill({nullptr, nullptr});
  for (size_t i = 0; i < at.kind->table_count(); ++i) tables[i] = args.named_tensor(at.tables[i]);
  return tables;
}

}  // namespace

StepCall read_step_call(const CallArgs& args, const StepArgs& at) {
  StepCall c;
  c.op = error_name(args.op());
  const char* op = c.op.c_str();
  c.noise = at.noise_source == NoiseSource::kTensor ? &args.tensor(at.noise) : nullptr;
  c.modes = read_step_modes(op, args, at);
  c.clip_bound = args.optional_tensor(at.clip_bound);
  c.model_output = &args.tensor(at.model_output);
  c.x_t = &args.tensor(at.x_t);
  c.t = &args.tensor(at.t);
  c.tables = table_args(args, at);
  c.num_timesteps = check_step_layout(op, *c.model_output, *c.x_t, *c.t,
                                      {c.tables.data(), at.kind->table_count()}, c.modes);
  if (c.noise != nullptr) check_like(op, {"noise", c.noise}, {"x_t", c.x_t});
  check_clip_bound(op, c.clip_bound, *c.x_t, c.modes);
  c.history = {nullptr, nullptr};
  const int history = step_history_count(c.modes);
  for (int i = 0; i < history; ++i) {
    const at::Tensor* earlier = args.optional_tensor(at.history[i]);
    const char* name = args.name(at.history[i]);
    TORCH_CHECK(earlier != nullptr, op, ": solver_order=", c.modes.solver_order, " reads ", name,
                " (the pred_xstart of the step ", i + 1, " before this one), got None");
    check_like(op, {name, earlier}, {"x_t", c.x_t});
    c.history[i] = earlier;
  }
  return c;
}

StepBackwardCall read_step_backward_call(const CallArgs& args, const StepArgs& at) {
  StepBackwardCall c;
  c.op = error_name(args.op());
  const char* op = c.op.c_str();
  c.modes = read_step_modes(op, args, at);
  c.clip_bound = args.optional_tensor(at.clip_bound);
  c.grad_sample = args.optional_tensor(at.grad_sample);
  c.grad_pred_xstart = args.optional_tensor(at.grad_pred_xstart);
  c.model_output = &args.tensor(at.model_output);
  c.x_t = &args.tensor(at.x_t);
  c.t = &args.tensor(at.t);
  c.noise = args.optional_tensor(at.noise);
  c.tables = table_args(args, at);
  c.num_timesteps = check_step_layout(op, *c.model_output, *c.x_t, *c.t,
                                      {c.tables.data(), at.kind->table_count()}, c.modes);
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
