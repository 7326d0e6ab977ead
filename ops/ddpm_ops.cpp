// The C++ API (ddpm_ops.h): each function calls its operator through the
// dispatcher (autograd, every backend, TorchScript's view of it), boxed: the
// arguments in schema order (op_args.h), the results as the schema returns
// them.
#include "ddpm_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <vector>

namespace ddpm {
namespace {

using Pair = std::tuple<at::Tensor, at::Tensor>;

c10::OperatorHandle find(const char* name, const char* overload) {
  return c10::Dispatcher::singleton().findSchemaOrThrow((std::string("ddpm::") + name).c_str(),
                                                        overload);
}

std::vector<c10::IValue> call(const c10::OperatorHandle& op, std::vector<c10::IValue> args) {
  op.callBoxed(&args);
  return args;
}

at::Tensor one(const std::vector<c10::IValue>& r) { return r[0].toTensor(); }
Pair two(const std::vector<c10::IValue>& r) { return {r[0].toTensor(), r[1].toTensor()}; }

}  // namespace

// The operator, looked up once per call site.
#define DDPM_CPP_OP(name, overload)                             \
  [] {                                                          \
    static const c10::OperatorHandle op = find(name, overload); \
    return op;                                                  \
  }()

// The argument values of a list, in order: ", a, b" then the first comma
// dropped.
#define DDPM_CPP_VALUE(type, name) , name
#define DDPM_CPP_VALUE3(type, name, value) , name
#define DDPM_CPP_VALUES(LIST) DDPM_CPP_DROP_FIRST(LIST(DDPM_CPP_VALUE))

at::Tensor q_sample(DDPM_CPP_DROP_FIRST(DDPM_Q_SAMPLE_ARGS(DDPM_CPP_PARAM)
                                            DDPM_Q_SAMPLE_OPTIONS(DDPM_CPP_PARAM_NO_DEFAULT))) {
  return one(call(DDPM_CPP_OP("q_sample", ""),
                  {DDPM_CPP_DROP_FIRST(DDPM_Q_SAMPLE_ARGS(DDPM_CPP_VALUE)
                                           DDPM_Q_SAMPLE_OPTIONS(DDPM_CPP_VALUE3))}));
}
Pair q_sample_philox(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_PHILOX_ARGS)) {
  return two(
      call(DDPM_CPP_OP("q_sample_philox", ""), {DDPM_CPP_VALUES(DDPM_Q_SAMPLE_PHILOX_ARGS)}));
}
at::Tensor philox_normal(DDPM_CPP_PARAMS(DDPM_PHILOX_NORMAL_ARGS)) {
  return one(call(DDPM_CPP_OP("philox_normal", ""), {DDPM_CPP_VALUES(DDPM_PHILOX_NORMAL_ARGS)}));
}
Pair q_sample_philox(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_GENERATOR_ARGS)) {
  return two(call(DDPM_CPP_OP("q_sample_philox", "generator"),
                  {DDPM_CPP_VALUES(DDPM_Q_SAMPLE_GENERATOR_ARGS)}));
}
at::Tensor philox_normal(DDPM_CPP_PARAMS(DDPM_PHILOX_NORMAL_GENERATOR_ARGS)) {
  return one(call(DDPM_CPP_OP("philox_normal", "generator"),
                  {DDPM_CPP_VALUES(DDPM_PHILOX_NORMAL_GENERATOR_ARGS)}));
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> posterior_mean_variance(
    DDPM_CPP_PARAMS(DDPM_POSTERIOR_ARGS)) {
  const auto r =
      call(DDPM_CPP_OP("posterior_mean_variance", ""), {DDPM_CPP_VALUES(DDPM_POSTERIOR_ARGS)});
  return {r[0].toTensor(), r[1].toTensor(), r[2].toTensor()};
}
Pair q_sample_backward(DDPM_CPP_PARAMS(DDPM_Q_SAMPLE_BACKWARD_ARGS)) {
  return two(
      call(DDPM_CPP_OP("q_sample_backward", ""), {DDPM_CPP_VALUES(DDPM_Q_SAMPLE_BACKWARD_ARGS)}));
}
Pair posterior_mean_variance_backward(DDPM_CPP_PARAMS(DDPM_POSTERIOR_BACKWARD_ARGS)) {
  return two(call(DDPM_CPP_OP("posterior_mean_variance_backward", ""),
                  {DDPM_CPP_VALUES(DDPM_POSTERIOR_BACKWARD_ARGS)}));
}
at::Tensor scale_by_timestep(DDPM_CPP_PARAMS(DDPM_SCALE_BY_TIMESTEP_ARGS)) {
  return one(
      call(DDPM_CPP_OP("scale_by_timestep", ""), {DDPM_CPP_VALUES(DDPM_SCALE_BY_TIMESTEP_ARGS)}));
}

#define DDPM_CPP_MSE_VALUES(HEAD)                                              \
  DDPM_CPP_DROP_FIRST(HEAD(DDPM_CPP_VALUE) DDPM_DIFFUSION_MSE_INPUTS(DDPM_CPP_VALUE) \
                          DDPM_DIFFUSION_MSE_OPTIONS(DDPM_CPP_VALUE3))
#define DDPM_CPP_NOTHING(X)
at::Tensor diffusion_mse(DDPM_CPP_DROP_FIRST(DDPM_DIFFUSION_MSE_INPUTS(DDPM_CPP_PARAM)
                                                 DDPM_DIFFUSION_MSE_OPTIONS(
                                                     DDPM_CPP_PARAM_NO_DEFAULT))) {
  return one(call(DDPM_CPP_OP("diffusion_mse", ""), {DDPM_CPP_MSE_VALUES(DDPM_CPP_NOTHING)}));
}
at::Tensor diffusion_mse_backward(DDPM_CPP_DROP_FIRST(
    DDPM_DIFFUSION_MSE_BACKWARD_GRAD(DDPM_CPP_PARAM) DDPM_DIFFUSION_MSE_INPUTS(DDPM_CPP_PARAM)
        DDPM_DIFFUSION_MSE_OPTIONS(DDPM_CPP_PARAM_NO_DEFAULT))) {
  return one(call(DDPM_CPP_OP("diffusion_mse_backward", ""),
                  {DDPM_CPP_MSE_VALUES(DDPM_DIFFUSION_MSE_BACKWARD_GRAD)}));
}

// A step kind's functions (parameters as declared, without the defaults).
#define DDPM_CPP_STEP_VALUES(HEAD, TABLES, OWN_ARGS, OWN_OPTIONS)              \
  DDPM_CPP_DROP_FIRST(HEAD(DDPM_CPP_VALUE) TABLES(DDPM_CPP_VALUE)              \
                          OWN_ARGS(DDPM_CPP_VALUE3) DDPM_STEP_MODES(DDPM_CPP_VALUE3) \
                              OWN_OPTIONS(DDPM_CPP_VALUE3))
#define DDPM_CPP_STEP_FUNCTION(Result, function, op, overload, HEAD, TABLES, OWN_ARGS,     \
                               OWN_OPTIONS, SAMPLE_PARAM, SAMPLE_VALUE, RETURN)             \
  Result function(SAMPLE_PARAM DDPM_CPP_STEP_PARAMS(HEAD, TABLES, OWN_ARGS, OWN_OPTIONS,    \
                                                    DDPM_CPP_PARAM_NO_DEFAULT)) {           \
    const auto r =                                                                          \
        call(DDPM_CPP_OP(op, overload),                                                     \
             {DDPM_CPP_STEP_VALUES(HEAD, TABLES, OWN_ARGS, OWN_OPTIONS) SAMPLE_VALUE});     \
    return RETURN;                                                                          \
  }
#define DDPM_CPP_COMMA ,
#define DDPM_CPP_STEP_DEFINITIONS(kind, step, TABLES, OWN_ARGS, OWN_OPTIONS)                \
  DDPM_CPP_STEP_FUNCTION(Pair, step, #step, "", DDPM_STEP_HEAD, TABLES, OWN_ARGS,           \
                         OWN_OPTIONS, , , two(r))                                           \
  DDPM_CPP_STEP_FUNCTION(Pair, step##_philox, #step "_philox", "", DDPM_STEP_PHILOX_HEAD,   \
                         TABLES, OWN_ARGS, OWN_OPTIONS, , , two(r))                         \
  DDPM_CPP_STEP_FUNCTION(at::Tensor&, step##_out, #step, "sample_out", DDPM_STEP_HEAD,      \
                         TABLES, OWN_ARGS, OWN_OPTIONS, at::Tensor& sample DDPM_CPP_COMMA,  \
                         DDPM_CPP_COMMA sample, sample)                                     \
  DDPM_CPP_STEP_FUNCTION(at::Tensor&, step##_philox_out, #step "_philox", "sample_out",     \
                         DDPM_STEP_PHILOX_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS,              \
                         at::Tensor& sample DDPM_CPP_COMMA, DDPM_CPP_COMMA sample, sample)  \
  DDPM_CPP_STEP_FUNCTION(Pair, step##_philox, #step "_philox", "generator",                 \
                         DDPM_STEP_GENERATOR_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, , , two(r)) \
  DDPM_CPP_STEP_FUNCTION(at::Tensor&, step##_philox_out, #step "_philox",                   \
                         "generator_sample_out", DDPM_STEP_GENERATOR_HEAD, TABLES, OWN_ARGS, \
                         OWN_OPTIONS, at::Tensor& sample DDPM_CPP_COMMA,                    \
                         DDPM_CPP_COMMA sample, sample)                                     \
  DDPM_CPP_STEP_FUNCTION(Pair, step##_backward, #step "_backward", "",                      \
                         DDPM_STEP_BACKWARD_HEAD, TABLES, OWN_ARGS, OWN_OPTIONS, , , two(r))
DDPM_STEP_KINDS(DDPM_CPP_STEP_DEFINITIONS)

}  // namespace ddpm
