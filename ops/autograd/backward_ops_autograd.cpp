// The backward operators are not differentiable themselves (no double
// backward), and neither are the out= and sample_out variants (as PyTorch's
// own out= ops). Registering PyTorch's not-implemented kernel at Autograd makes
// that an error ("derivative for ... is not implemented") instead of a
// silently detached result, and lets them run on meta tensors under torch
// 1.13, whose AutogradMeta key has no fallthrough.
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/library.h>

TORCH_LIBRARY_IMPL(ddpm, Autograd, m) {
  m.impl("q_sample_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("scale_by_timestep", torch::autograd::autogradNotImplementedFallback());
  m.impl("posterior_mean_variance_backward",
         torch::autograd::autogradNotImplementedFallback());
  m.impl("p_sample_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("ddim_sample_backward",
         torch::autograd::autogradNotImplementedFallback());
  m.impl("q_sample.out", torch::autograd::autogradNotImplementedFallback());
  m.impl("p_sample.out", torch::autograd::autogradNotImplementedFallback());
  m.impl("posterior_mean_variance.out",
         torch::autograd::autogradNotImplementedFallback());
  m.impl("ddim_sample.out", torch::autograd::autogradNotImplementedFallback());
  m.impl("p_sample_philox.out",
         torch::autograd::autogradNotImplementedFallback());
  m.impl("ddim_sample_philox.out",
         torch::autograd::autogradNotImplementedFallback());
  for (const char* op : {"p_sample.sample_out", "ddim_sample.sample_out",
                         "p_sample_philox.sample_out",
                         "ddim_sample_philox.sample_out"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
}
