// The reverse steps (every StepKind; explicit or in-kernel noise; functional,
// out= and sample_out) and their backward operators: one boxed kernel each,
// for every backend. It reads the call by the table's positions, checks it,
// makes the outputs, and hands the kernel parameters to the backend.
//
// A Backend (backends/*.cpp) has
//   static constexpr bool kRuns;  // false for Meta: checks and outputs only
//   struct Guard { explicit Guard(const at::Device&); };
//   template <class P> static int64_t run(const P&);  // -1, or a bad t's index
#pragma once

#include <array>
#include <string>
#include <tuple>

#include "call_args.h"
#include "checks.h"
#include "op_table.h"

namespace ddpm {
namespace ops {

// A step's six tables, named as its schema names them.
using StepTableArgs = std::array<NamedTensor, 6>;

// The tables' pointers, in schema order, from contiguous copies.
template <typename Tab>
StepTables<Tab> step_table_pointers(const std::array<at::Tensor, 6>& t) {
  return {t[0].data_ptr<Tab>(), t[1].data_ptr<Tab>(), t[2].data_ptr<Tab>(),
          t[3].data_ptr<Tab>(), {t[4].data_ptr<Tab>(), t[5].data_ptr<Tab>()}};
}

// Checks model_output against x_t, the timesteps and the tables; returns T.
int64_t check_step_layout(const char* op, const at::Tensor& model_output,
                          const at::Tensor& x_t, const at::Tensor& t,
                          const StepTableArgs& tables, const StepModes& modes);

// The modes of a step call, parsed and checked.
StepModes parse_step_modes(const char* op, StepKind kind, const std::string& mean_type,
                           const std::string& var_type, bool clip_denoised, double eta,
                           bool clip_rescale, bool use_clipped_model_output);

// The modes of a step call or of its backward (At: StepArgPositions or
// StepBackwardPositions, which name the same arguments), parsed and checked.
template <typename At>
StepModes read_step_modes(const char* op, const CallArgs& args, const StepKindInfo& info,
                          const At& at) {
  return parse_step_modes(op, info.kind, args.str(at.mean_type), args.str(at.var_type),
                          args.flag(at.clip_denoised),
                          info.takes_eta() ? args.real(at.eta) : 0.0, args.flag(at.clip_rescale),
                          !info.takes_use_clipped_model_output() ||
                              args.flag(at.use_clipped_model_output));
}

// clip_bound: null (None), or [B] floating on x_t's device, given only with
// clip_denoised; clip_rescale only with a clip_bound.
void check_clip_bound(const char* op, const at::Tensor* clip_bound, const at::Tensor& x_t,
                      const StepModes& modes);

// The kernels' clip bounds: the tables' dtype, contiguous (undefined: none).
inline at::Tensor clip_bound_for_kernel(const at::Tensor* clip_bound,
                                        const at::Tensor& table) {
  return clip_bound != nullptr ? clip_bound->to(table.scalar_type()).contiguous()
                               : at::Tensor();
}

// The noise enters the backward pass only through a learned variance's
// gradient, which is grad_sample times noise times d sigma.
inline bool step_backward_reads_noise(const StepModes& modes, const at::Tensor* grad_sample) {
  return reads_var_channels(modes) && grad_sample != nullptr;
}

// The outputs of a forward step: given (out=, sample_out) or allocated; with
// write_pred_xstart false (sample_out) pred_xstart is undefined and not
// written.
struct StepOutputs {
  const at::Tensor* sample = nullptr;
  const at::Tensor* pred_xstart = nullptr;
  bool write_pred_xstart = true;
};

// The outputs, new or given, with the in-place rule: sample may be x_t
// (sampling loops write x_{t-1} over x_t: the kernels allow for it); no other
// overlap of an output with an input or with the other output. noise is null
// when drawn in the kernel.
std::tuple<at::Tensor, at::Tensor> step_outputs(const char* op, const StepOutputs& given,
                                                const at::Tensor& model_output,
                                                const at::Tensor& x_t,
                                                const at::Tensor* noise);

// One forward step call, read from the stack.
struct StepCall {
  std::string op;  // for messages: "ddpm.p_sample"
  const at::Tensor* model_output;
  const at::Tensor* x_t;
  const at::Tensor* t;
  NoiseArg noise;
  StepTableArgs tables;
  StepModes modes;
  const at::Tensor* clip_bound;  // or null
  StepOutputs outputs;
};
StepCall read_step_call(const CallArgs& args, const StepKindInfo& info, NoiseSource noise);

// Which step an operator is, from its name.
struct StepOp {
  const StepKindInfo* info;
  NoiseSource noise;
};
StepOp step_op_of(const c10::OperatorHandle& op);

template <typename Backend>
void step_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                 torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const StepOp which = step_op_of(op);
  const StepCall c = read_step_call(args, *which.info, which.noise);
  const char* name = c.op.c_str();
  const int64_t T = check_step_layout(name, *c.model_output, *c.x_t, *c.t, c.tables, c.modes);
  if (c.noise.tensor != nullptr) check_like(name, {"noise", c.noise.tensor}, {"x_t", c.x_t});
  check_clip_bound(name, c.clip_bound, *c.x_t, c.modes);
  const typename Backend::Guard guard(c.x_t->device());
  at::Tensor sample, pred_xstart;
  std::tie(sample, pred_xstart) =
      step_outputs(name, c.outputs, *c.model_output, *c.x_t, c.noise.tensor);
  // a generator's key: drawn once the call is known good, whatever its size
  const NoiseKey noise_key = c.noise.generator != nullptr && Backend::kRuns
                                 ? draw_noise_key(name, *c.noise.generator, c.x_t->device())
                                 : c.noise.key;
  if (Backend::kRuns && c.x_t->size(0) > 0) {
    const at::Tensor model_output = c.model_output->contiguous();
    const at::Tensor x_t = c.x_t->contiguous();
    const at::Tensor noise = c.noise.tensor != nullptr ? c.noise.tensor->contiguous() : at::Tensor();
    const at::Tensor t = c.t->contiguous();
    std::array<at::Tensor, 6> tables;
    for (size_t i = 0; i < 6; ++i) tables[i] = c.tables[i].second->contiguous();
    const at::Tensor clip_bound = clip_bound_for_kernel(c.clip_bound, tables[0]);
    dispatch_types(x_t.scalar_type(), tables[0].scalar_type(), [&](auto s, auto tb) {
      using S = decltype(s);
      using Tab = decltype(tb);
      StepParams<S, Tab> p;
      p.clip_bound = clip_bound.defined() ? clip_bound.data_ptr<Tab>() : nullptr;
      p.model_output = data_of<S>(model_output);
      p.x_t = data_of<S>(x_t);
      p.noise = noise.defined() ? data_of<S>(noise) : nullptr;
      p.generate_noise = !noise.defined();
      p.noise_key = noise_key;
      p.sample = mutable_data_of<S>(sample);
      p.pred_xstart = pred_xstart.defined() ? mutable_data_of<S>(pred_xstart) : nullptr;
      p.timesteps = {t.data_ptr<int64_t>(), T};
      p.tables = step_table_pointers<Tab>(tables);
      p.modes = c.modes;
      p.batch = x_t.size(0);
      p.sample_numel = sample_numel(x_t);
      const int64_t bad = Backend::run(p);
      if (bad >= 0) fail_bad_timestep(name, t, bad, T);
    });
  }
  if (c.outputs.write_pred_xstart) {
    args.finish({sample, pred_xstart});
  } else {  // sample_out
    args.finish({sample});
  }
}

// One backward step call, read from the stack and checked; absent gradients
// are null (a zero gradient, never read), the noise is null where not read.
struct StepBackwardCall {
  std::string op;
  const at::Tensor* grad_sample;
  const at::Tensor* grad_pred_xstart;
  const at::Tensor* model_output;
  const at::Tensor* x_t;
  const at::Tensor* t;
  const at::Tensor* noise;
  StepTableArgs tables;
  StepModes modes;
  const at::Tensor* clip_bound;  // or null
  int64_t num_timesteps;
};
StepBackwardCall read_step_backward_call(const CallArgs& args);

template <typename Backend>
void step_backward_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet,
                          torch::jit::Stack* stack) {
  CallArgs args(op, stack);
  const StepBackwardCall c = read_step_backward_call(args);
  const char* name = c.op.c_str();
  const typename Backend::Guard guard(c.x_t->device());
  at::Tensor grad_model_output =
      at::empty_like(*c.model_output, at::MemoryFormat::Contiguous);
  at::Tensor grad_x_t = at::empty_like(*c.x_t, at::MemoryFormat::Contiguous);
  if (Backend::kRuns && c.x_t->size(0) > 0) {
    const auto contiguous_or_undefined = [](const at::Tensor* x) {
      return x != nullptr ? x->contiguous() : at::Tensor();
    };
    const at::Tensor grad_sample = contiguous_or_undefined(c.grad_sample);
    const at::Tensor grad_pred_xstart = contiguous_or_undefined(c.grad_pred_xstart);
    const at::Tensor noise = contiguous_or_undefined(
        step_backward_reads_noise(c.modes, c.grad_sample) ? c.noise : nullptr);
    const at::Tensor model_output = c.model_output->contiguous();
    const at::Tensor x_t = c.x_t->contiguous();
    const at::Tensor t = c.t->contiguous();
    std::array<at::Tensor, 6> tables;
    for (size_t i = 0; i < 6; ++i) tables[i] = c.tables[i].second->contiguous();
    const at::Tensor clip_bound = clip_bound_for_kernel(c.clip_bound, tables[0]);
    dispatch_types(x_t.scalar_type(), tables[0].scalar_type(), [&](auto s, auto tb) {
      using S = decltype(s);
      using Tab = decltype(tb);
      const auto data_or_null = [](const at::Tensor& x) -> const S* {
        return x.defined() ? data_of<S>(x) : nullptr;
      };
      StepBackwardParams<S, Tab> p;
      p.grad_sample = data_or_null(grad_sample);
      p.grad_pred_xstart = data_or_null(grad_pred_xstart);
      p.model_output = data_of<S>(model_output);
      p.x_t = data_of<S>(x_t);
      p.noise = data_or_null(noise);
      p.grad_model_output = mutable_data_of<S>(grad_model_output);
      p.grad_x_t = mutable_data_of<S>(grad_x_t);
      p.timesteps = {t.data_ptr<int64_t>(), c.num_timesteps};
      p.tables = step_table_pointers<Tab>(tables);
      p.modes = c.modes;
      p.batch = x_t.size(0);
      p.sample_numel = sample_numel(x_t);
      p.clip_bound = clip_bound.defined() ? clip_bound.data_ptr<Tab>() : nullptr;
      const int64_t bad = Backend::run(p);
      if (bad >= 0) fail_bad_timestep(name, t, bad, c.num_timesteps);
    });
  }
  args.finish({grad_model_output, grad_x_t});
}

}  // namespace ops
}  // namespace ddpm
