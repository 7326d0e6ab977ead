// The ddpm operators: their schemas, written out in operators.cpp (the one
// place that says what each operator takes), and the reverse-step kinds.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "ddpm/kernels.h"

namespace ddpm {
namespace ops {

// What autograd does with an operator (autograd/).
enum class Role {
  kDifferentiable,  // a functional operator with a derivative
  kOut,             // an out= or sample= overload: not differentiable, refuses inputs with grad
  kBackward,        // a backward operator (no double backward)
};

// A kind of reverse step (ddpm/coefficients.h has its math). Its operators:
// <name> (noise given as a tensor), <name>_philox (noise drawn in the kernel
// from (seed, offset), or from a generator: the .generator overloads), each
// functional, .out and .sample_out; and <name>_backward.
struct StepKindInfo {
  StepKind kind;
  const char* name;
  // The forward operators' arguments; "{noise}" stands for the noise source
  // ("Tensor noise", "int seed, int offset" or "Generator? generator").
  const char* arguments;
  const char* backward_arguments;
  // Its schedule tables, as named in those arguments, in the order of
  // StepTables (ddpm/coefficients.h): up to six, the rest null.
  std::array<const char*, 6> tables;
  size_t table_count() const {
    size_t n = 0;
    while (n < tables.size() && tables[n] != nullptr) ++n;
    return n;
  }
};
const std::vector<StepKindInfo>& step_kinds();

struct OperatorDef {
  std::string schema;  // "ddpm::"-less, as TORCH_LIBRARY(ddpm) defines it
  Role role;
  const StepKindInfo* step_kind = nullptr;  // a step's operator: its kind
  // "name.overload" ("p_sample.sample_out"), or "name" for the default one
  std::string name() const { return schema.substr(0, schema.find('(')); }
};

// Every operator and overload, in definition order.
const std::vector<OperatorDef>& operator_defs();

}  // namespace ops
}  // namespace ddpm
