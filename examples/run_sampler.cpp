// Runs a sampler scripted and saved in Python (torch_ddpm.Sampler) from C++:
//
//   ddpm_run_sampler sampler.pt SEED OUT.bin B C H W [philox]
//
// seeds the CPU generator, draws x_T = randn(B, C, H, W), runs the module's
// forward (the full reverse chain on the ddpm operators, which this program
// gets by linking libddpm_ops) and writes x_0 as raw little-endian float32.
// With "philox" the noise is drawn in the kernels instead: x_T =
// ddpm::philox_normal(..., SEED, 0) and forward(x_T, SEED), as in Python.
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "ddpm_ops.h"

int main(int argc, char** argv) {
  const bool philox = argc == 9 && std::string(argv[8]) == "philox";
  if (argc != 8 && !philox) {
    std::cerr << "usage: " << argv[0] << " sampler.pt SEED OUT.bin B C H W [philox]\n";
    return 2;
  }
  try {
    torch::jit::Module sampler = torch::jit::load(argv[1]);
    sampler.eval();
    const int64_t seed = std::strtoll(argv[2], nullptr, 10);
    torch::manual_seed(seed);
    std::vector<int64_t> shape;
    for (int i = 4; i < 8; ++i) shape.push_back(std::strtoll(argv[i], nullptr, 10));
    torch::NoGradGuard no_grad;
    const torch::Tensor x_T =
        philox ? ddpm::philox_normal(torch::empty(shape), seed, 0) : torch::randn(shape);
    std::vector<torch::jit::IValue> inputs{x_T};
    if (philox) inputs.emplace_back(seed);
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor x_0 =
        sampler.forward(inputs).toTensor().to(torch::kFloat).contiguous();
    const double forward_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::ofstream out(argv[3], std::ios::binary);
    out.write(reinterpret_cast<const char*>(x_0.data_ptr<float>()),
              static_cast<std::streamsize>(x_0.numel() * sizeof(float)));
    std::cout << "sampled " << x_0.sizes() << ", mean " << x_0.mean().item<float>()
              << ", std " << x_0.std().item<float>() << "\n"
              << "forward: " << forward_ms << " ms\n";
    return out.good() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "ddpm_run_sampler: " << e.what() << "\n";
    return 1;
  }
}
