// Finds the operators by name only (no symbol of libddpm_ops is referenced),
// which is what --as-needed would break, then calls one through the C++ API.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch_ddpm/ddpm_ops.h>

#include <iostream>

int main() {
  if (!c10::Dispatcher::singleton().findSchema({"ddpm::p_sample", ""})) {
    std::cerr << "ddpm::p_sample is not registered: libddpm_ops was not loaded\n";
    return 1;
  }
  const auto tables = at::linspace(0.5, 0.9, 10, at::kDouble);
  const auto x = at::ones({2, 3});
  const auto out = ddpm::q_sample(x, at::tensor({0, 9}, at::kLong), x, tables, tables);
  std::cout << "consumer: ddpm::q_sample -> " << out.sum().item<double>() << "\n";
  return out.sum().item<double>() > 0 ? 0 : 1;
}
