// The reverse steps (every StepKind; noise as a tensor, from (seed, offset)
// or from a generator; functional, out= and sample_out) and their backward
// operators: one boxed kernel each, for every backend (kernels.h). It reads
// the call where StepArgs says its arguments are, checks it, makes the
// outputs, and hands the kernel parameters to the backend.
#pragma once

#include <array>
#include <string>
#include <tuple>

#include "call_args.h"
#include "checks.h"
#include "operators.h"

namespace ddpm {
namespace ops {

// Where the noise of a step comes from.
enum class NoiseSource { kTensor, kPhilox, kGenerator, kKey };

// Where a step operator's arguments are, a forward step's or a backward's,
// found by name in its schema (-1 where it has none): a kind's own argument
// (DDIM's eta and use_clipped_model_output) is -1 in the other kinds'.
struct StepArgs {
  const StepKindInfo* kind;
  NoiseSource noise_source;  // (the backward's: kTensor, its noise a Tensor?)
  int model_output, x_t, t;
  int noise;         // a tensor's (a Tensor? in the backward)
  NoiseKeyArgs key;  // drawn in the kernel: seed and offset, or a generator
  std::array<int, 6> tables;  // the kind's tables, in its order (-1 past its count)
  int eta, model_mean_type, model_var_type, clip_denoised, clip_bound, clip_rescale,
      use_clipped_model_output;
  // DPM-Solver++'s: the earlier steps' pred_xstart, this step's order, its
  // second-order form and algorithm
  std::array<int, 2> history;
  int solver_order, solver_type, algorithm_type;
  int sample, pred_xstart;            // a forward's outputs: out= both, sample_out sample
  int grad_sample, grad_pred_xstart;  // a backward's output gradients
  StepArgs(const c10::FunctionSchema& schema, const StepKindInfo* kind);
};

// A step's tables, named as its schema names them; {null, null} past the
// kind's count.
using StepTableArgs = std::array<NamedTensor, 6>;

// The tables' pointers, in schema order, from contiguous copies (null past
// the kind's count).
template <typename Tab>
StepTables<Tab> step_table_pointers(const std::array<at::Tensor, 6>& t) {
  StepTables<Tab> tables;
  for (size_t i = 0; i < 6; ++i) tables.table[i] = t[i].defined() ? t[i].data_ptr<Tab>() : nullptr;
  return tables;
}

// What a step's kernels read, as they read it: contiguous (copies where not
// already), the clip bound in the tables' dtype (undefined: none).
struct StepOperands {
  at::Tensor model_output, x_t, t, clip_bound;
  std::array<at::Tensor, 6> tables;
  std::array<at::Tensor, 2> history;  // (undefined where not read)
  StepOperands(const at::Tensor& model_output_, const at::Tensor& x_t_, const at::Tensor& t_,
               const StepTableArgs& tables_, const at::Tensor* clip_bound_,
               std::array<const at::Tensor*, 2> history_ = {nullptr, nullptr})
      : model_output(model_output_.contiguous()), x_t(x_t_.contiguous()), t(t_.contiguous()) {
    for (size_t i = 0; i < 2; ++i) {
      if (history_[i] != nullptr) history[i] = history_[i]->contiguous();
    }
    for (size_t i = 0; i < 6; ++i) {
      if (tables_[i].second != nullptr) tables[i] = tables_[i].second->contiguous();
    }
    if (clip_bound_ != nullptr) {
      clip_bound = clip_bound_->to(tables[0].scalar_type()).contiguous();
    }
  }
};

// The fields a step's kernel parameters share (P: StepParams or
// StepBackwardParams), from its operands.
template <typename S, typename Tab, typename P>
void fill_step_params(P& p, const StepOperands& o, const StepModes& modes,
                      int64_t num_timesteps) {
  p.model_output = data_of<S>(o.model_output);
  p.x_t = data_of<S>(o.x_t);
  p.timesteps = {o.t.data_ptr<int64_t>(), num_timesteps};
  p.tables = step_table_pointers<Tab>(o.tables);
  p.clip_bound = o.clip_bound.defined() ? o.clip_bound.data_ptr<Tab>() : nullptr;
  p.modes = modes;
  p.batch = o.x_t.size(0);
  p.sample_numel = sample_numel(o.x_t);
}

// Checks model_output against x_t, the timesteps and the tables; returns T.
int64_t check_step_layout(const char* op, const at::Tensor& model_output,
                          const at::Tensor& x_t, const at::Tensor& t,
                          c10::ArrayRef<NamedTensor> tables, const StepModes& modes);

// The modes of a step call or of its backward, read and checked.
StepModes read_step_modes(const char* op, const CallArgs& args, const StepArgs& at);

// clip_bound: null (None), or [B] floating on x_t's device, given only with
// clip_denoised; clip_rescale only with a clip_bound.
void check_clip_bound(const char* op, const at::Tensor* clip_bound, const at::Tensor& x_t,
                      const StepModes& modes);

// The noise enters the backward pass only through a learned variance's
// gradient, which is grad_sample times noise times d sigma.
inline bool step_backward_reads_noise(const StepModes& modes, const at::Tensor* grad_sample) {
  return reads_var_channels(modes) && grad_sample != nullptr;
}

// One forward step call, read from the stack and checked.
struct StepCall {
  std::string op;  // for messages: "ddpm.p_sample"
  const at::Tensor* model_output;
  const at::Tensor* x_t;
  const at::Tensor* t;
  const at::Tensor* noise;  // null: drawn in the kernel
  StepTableArgs tables;
  StepModes modes;
  const at::Tensor* clip_bound;  // or null
  // the earlier pred_xstart the step reads (step_history_count), else null
  std::array<const at::Tensor*, 2> history;
  int64_t num_timesteps;
};
StepCall read_step_call(const CallArgs& args, const StepArgs& at);

// The outputs of a forward step, new or given, with the in-place rule:
// sample may be x_t (sampling loops write x_{t-1} over x_t: the kernels allow
// for it); no other overlap of an output with any argument or with the other
// output. pred_xstart is undefined (not written) for sample_out.
std::tuple<at::Tensor, at::Tensor> step_outputs(const char* op, const CallArgs& args,
                                                const StepArgs& at, const at::Tensor& x_t);

// The forward steps.
struct Step {
  using Context = const StepKindInfo*;
  using Args = StepArgs;

  template <typename Backend>
  static void run(CallArgs& args, const StepArgs& at) {
    const StepCall c = read_step_call(args, at);
    const char* name = c.op.c_str();
    const typename Backend::Guard guard(c.x_t->device());
    at::Tensor sample, pred_xstart;
    std::tie(sample, pred_xstart) = step_outputs(name, args, at, *c.x_t);
    const NoiseKey noise_key =
        c.noise != nullptr ? NoiseKey{0, 0}
                           : call_noise_key<Backend>(name, args, at.key, *c.x_t, c.t,
                                                     c.num_timesteps);
    if (Backend::kRuns && c.x_t->size(0) > 0) {
      const StepOperands o(*c.model_output, *c.x_t, *c.t, c.tables, c.clip_bound, c.history);
      const at::Tensor noise = c.noise != nullptr ? c.noise->contiguous() : at::Tensor();
      dispatch_types(o.x_t.scalar_type(), o.tables[0].scalar_type(), [&](auto s, auto tb) {
        using S = decltype(s);
        StepParams<S, decltype(tb)> p;
        fill_step_params<S, decltype(tb)>(p, o, c.modes, c.num_timesteps);
        p.noise = noise.defined() ? data_of<S>(noise) : nullptr;
        p.generate_noise = !noise.defined();
        p.noise_key = noise_key;
        p.sample = mutable_data_of<S>(sample);
        p.pred_xstart = pred_xstart.defined() ? mutable_data_of<S>(pred_xstart) : nullptr;
        for (size_t i = 0; i < 2; ++i) {
          p.history[i] = o.history[i].defined() ? data_of<S>(o.history[i]) : nullptr;
        }
        const int64_t bad = Backend::run(p);
        if (bad >= 0) fail_bad_timestep(name, o.t, bad, c.num_timesteps);
      });
    }
    if (pred_xstart.defined()) {
      args.finish({sample, pred_xstart});
    } else {  // sample_out
      args.finish({sample});
    }
  }
};

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
StepBackwardCall read_step_backward_call(const CallArgs& args, const StepArgs& at);

// The steps' backward operators: (grad_model_output, grad_x_t).
struct StepBackward {
  using Context = const StepKindInfo*;
  using Args = StepArgs;

  template <typename Backend>
  static void run(CallArgs& args, const StepArgs& at) {
    const StepBackwardCall c = read_step_backward_call(args, at);
    const char* name = c.op.c_str();
    const typename Backend::Guard guard(c.x_t->device());
    at::Tensor grad_model_output =
        at::empty_like(*c.model_output, at::MemoryFormat::Contiguous);
    at::Tensor grad_x_t = at::empty_like(*c.x_t, at::MemoryFormat::Contiguous);
    if (Backend::kRuns && c.x_t->size(0) > 0) {
      const StepOperands o(*c.model_output, *c.x_t, *c.t, c.tables, c.clip_bound);
      const auto contiguous_or_undefined = [](const at::Tensor* x) {
        return x != nullptr ? x->contiguous() : at::Tensor();
      };
      const at::Tensor grad_sample = contiguous_or_undefined(c.grad_sample);
      const at::Tensor grad_pred_xstart = contiguous_or_undefined(c.grad_pred_xstart);
      const at::Tensor noise = contiguous_or_undefined(
          step_backward_reads_noise(c.modes, c.grad_sample) ? c.noise : nullptr);
      dispatch_types(o.x_t.scalar_type(), o.tables[0].scalar_type(), [&](auto s, auto tb) {
        using S = decltype(s);
        const auto data_or_null = [](const at::Tensor& x) -> const S* {
          return x.defined() ? data_of<S>(x) : nullptr;
        };
        StepBackwardParams<S, decltype(tb)> p;
        fill_step_params<S, decltype(tb)>(p, o, c.modes, c.num_timesteps);
        p.grad_sample = data_or_null(grad_sample);
        p.grad_pred_xstart = data_or_null(grad_pred_xstart);
        p.noise = data_or_null(noise);
        p.grad_model_output = mutable_data_of<S>(grad_model_output);
        p.grad_x_t = mutable_data_of<S>(grad_x_t);
        const int64_t bad = Backend::run(p);
        if (bad >= 0) fail_bad_timestep(name, o.t, bad, c.num_timesteps);
      });
    }
    args.finish({grad_model_output, grad_x_t});
  }
};

}  // namespace ops
}  // namespace ddpm
