// What the autograd Functions of the fused steps share (p_sample_autograd.cpp
// and philox_autograd.cpp): saving the step's tensors and modes, passing
// absent output gradients on as None, and the gradient list, which is
// non-empty for model_output and x_t only.
#pragma once

#include <torch/autograd.h>

#include <string>
#include <tuple>

#include "../p_sample.h"
#include "constant_args.h"

namespace ddpm {
namespace ops {

// A step has gradients for model_output and x_t; its tables may not require
// grad. (Its noise is a documented constant too, a sample of N(0, I) that a
// caller may well have made from tensors that require grad: accepted.)
inline void refuse_grad_of_step_tables(const char* op, const StepTableArgs& tables) {
  for (const NamedTensor& table : tables.tables) {
    refuse_grad_of_constants(op, "model_output and x_t", {table});
  }
}

// Saves the step's tensors in schema order and its modes, and turns off
// autograd's zero filling of an output's gradient when the loss does not use
// that output: the backward operators take an absent gradient (see
// grad_or_none) and never read it, where a materialized one would be a
// full-size zero tensor written and then read.
inline void save_step(torch::autograd::AutogradContext* ctx,
                      const torch::autograd::variable_list& tensors,
                      const std::string& mean_type, const std::string& var_type,
                      bool clip_denoised) {
  ctx->save_for_backward(tensors);
  ctx->saved_data["mean_type"] = mean_type;
  ctx->saved_data["var_type"] = var_type;
  ctx->saved_data["clip_denoised"] = clip_denoised;
  ctx->set_materialize_grads(false);
}

// An output's gradient for a backward operator's Tensor? argument: None when
// autograd left it undefined.
inline c10::optional<at::Tensor> grad_or_none(const at::Tensor& grad) {
  return grad.defined() ? c10::optional<at::Tensor>(grad) : c10::nullopt;
}

// Gradients for the num_inputs inputs: model_output and x_t, nothing else.
inline torch::autograd::variable_list step_grads(
    std::tuple<at::Tensor, at::Tensor> g, size_t num_inputs) {
  torch::autograd::variable_list result(num_inputs);
  result[0] = std::get<0>(g);
  result[1] = std::get<1>(g);
  return result;
}

}  // namespace ops
}  // namespace ddpm
