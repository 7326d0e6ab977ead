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

// The Guard of a backend without devices to switch between.
struct NoDeviceGuard {
  explicit NoDeviceGuard(const at::Device&) {}
};

template <typename Backend>
void register_kernels(torch::Library& m) {
  for (const char* name :
       {"q_sample", "q_sample.out", "q_sample_philox", "q_sample_philox.generator",
        "q_sample_philox.key"}) {
    m.impl(name, family_kernel<QSample, Backend>());
  }
  for (const char* name : {"philox_normal", "philox_normal.generator", "philox_normal.key"}) {
    m.impl(name, family_kernel<PhiloxNormal, Backend>());
  }
  for (const char* name : {"posterior_mean_variance", "posterior_mean_variance.out"}) {
    m.impl(name, family_kernel<Posterior, Backend>());
  }
  for (const char* name :
       {"q_sample_backward", "posterior_mean_variance_backward", "scale_by_timestep"}) {
    m.impl(name, family_kernel<LinearBackward, Backend>());
  }
  for (const char* name : {"diffusion_mse", "diffusion_mse_backward"}) {
    m.impl(name, family_kernel<DiffusionMse, Backend>());
  }
  for (const OperatorDef& def : operator_defs()) {
    if (def.step_kind == nullptr) continue;
    m.impl(def.name().c_str(), def.role == Role::kBackward
                                   ? family_kernel<StepBackward, Backend>(def.step_kind)
                                   : family_kernel<Step, Backend>(def.step_kind));
  }
}

}  // namespace ops
}  // namespace ddpm
