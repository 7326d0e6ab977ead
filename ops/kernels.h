// Every operator's kernel for one backend, registered from the operator
// table: TORCH_LIBRARY_IMPL(ddpm, <key>, m) { register_kernels<Backend>(m); }
// (backends/). Each family's boxed kernel serves all its operators and
// overloads; Meta runs the same kernels without the launch.
#pragma once

#include <torch/library.h>

#include "op_table.h"
#include "linear.h"
#include "loss.h"
#include "step.h"

namespace ddpm {
namespace ops {

template <typename Backend>
void register_kernels(torch::Library& m) {
  using F = torch::CppFunction;
  const auto impl = [&](const std::string& name, F&& kernel) {
    m.impl(name.c_str(), std::move(kernel));
  };
  for (const char* name : {"q_sample", "q_sample.out"}) {
    impl(name, F::makeFromBoxedFunction<&q_sample_kernel<Backend>>());
  }
  for (const char* name : {"q_sample_philox", "q_sample_philox.generator"}) {
    impl(name, F::makeFromBoxedFunction<&q_sample_philox_kernel<Backend>>());
  }
  for (const char* name : {"philox_normal", "philox_normal.generator"}) {
    impl(name, F::makeFromBoxedFunction<&philox_normal_kernel<Backend>>());
  }
  for (const char* name : {"posterior_mean_variance", "posterior_mean_variance.out"}) {
    impl(name, F::makeFromBoxedFunction<&posterior_kernel<Backend>>());
  }
  for (const char* name :
       {"q_sample_backward", "posterior_mean_variance_backward", "scale_by_timestep"}) {
    impl(name, F::makeFromBoxedFunction<&linear_backward_kernel<Backend>>());
  }
  impl("diffusion_mse", F::makeFromBoxedFunction<&diffusion_mse_kernel<Backend>>());
  impl("diffusion_mse_backward",
       F::makeFromBoxedFunction<&diffusion_mse_backward_kernel<Backend>>());
  for (const StepKindInfo& info : step_kinds()) {
    for (NoiseSource noise : kNoiseSources) {
      const std::string name = step_op_name(info, noise);
      for (const std::string& overload : step_overloads(noise)) {
        impl(qualified_op_name(name, overload), F::makeFromBoxedFunction<&step_kernel<Backend>>());
      }
    }
    impl(std::string(info.name) + "_backward",
         F::makeFromBoxedFunction<&step_backward_kernel<Backend>>());
  }
}

}  // namespace ops
}  // namespace ddpm
