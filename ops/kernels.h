// Every operator's kernel for one backend:
//   TORCH_LIBRARY_IMPL(ddpm, <key>, m) { register_kernels<Backend>(m); }
// (cpu/, cuda/, meta.cpp). Each family's kernel (linear.h, loss.h, step.h)
// serves all its operators and overloads; Meta runs the same kernels without
// the launch. A Backend has
//   static constexpr bool kRuns;  // false for Meta: checks and outputs only
//   struct Guard { explicit Guard(const at::Device&); };
//   template <class P> static int64_t run(const P&);  // -1, or a bad t's index
#pragma once

#include <torch/library.h>

#include "linear.h"
#include "loss.h"
#include "operators.h"
#include "step.h"

namespace ddpm {
namespace ops {

template <typename Backend>
void register_kernels(torch::Library& m) {
  m.impl("q_sample", family_kernel<QSample, Backend>());
  m.impl("q_sample.out", family_kernel<QSample, Backend>());
  m.impl("q_sample_philox", family_kernel<QSamplePhilox, Backend>());
  m.impl("q_sample_philox.generator", family_kernel<QSamplePhilox, Backend>());
  m.impl("philox_normal", family_kernel<PhiloxNormal, Backend>());
  m.impl("philox_normal.generator", family_kernel<PhiloxNormal, Backend>());
  m.impl("posterior_mean_variance", family_kernel<Posterior, Backend>());
  m.impl("posterior_mean_variance.out", family_kernel<Posterior, Backend>());
  m.impl("q_sample_backward", family_kernel<LinearBackward, Backend>());
  m.impl("posterior_mean_variance_backward", family_kernel<LinearBackward, Backend>());
  m.impl("scale_by_timestep", family_kernel<LinearBackward, Backend>());
  m.impl("diffusion_mse", family_kernel<DiffusionMse, Backend>());
  m.impl("diffusion_mse_backward", family_kernel<DiffusionMseBackward, Backend>());
  for (const OperatorDef& def : operator_defs()) {
    if (def.step_kind == nullptr) continue;
    m.impl(def.name().c_str(), def.role == Role::kBackward
                                   ? family_kernel<StepBackward, Backend>(def.step_kind)
                                   : family_kernel<Step, Backend>(def.step_kind));
  }
}

}  // namespace ops
}  // namespace ddpm
