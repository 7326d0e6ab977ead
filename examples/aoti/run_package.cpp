// Runs a sampling step exported and compiled in Python (torch_ddpm.export:
// SamplingStep -> export_step -> compile_package) as a whole sampling loop,
// without Python:
//
//   ddpm_run_package STEP.pt2 SEED NUM_TIMESTEPS OUT.bin B C H W [key]
//
// x_T = ddpm::philox_normal(x, SEED, 0); at step k = 1..NUM_TIMESTEPS,
// t = NUM_TIMESTEPS - k for every sample and the noise is
// ddpm::philox_normal(x_t, SEED, 4*k), the noise the in-kernel operators draw
// for that key; x_{t-1} = the package's step(x_t, t, noise). Writes x_0 as raw
// little-endian float32: the samples torch_ddpm.export.sample() gives in
// Python for the same package and seed. With "key" (a step exported with
// noise_from_key=True) the step is given the key, int64 {SEED, 4*k}, and
// draws that noise itself.
//
// The package calls the ddpm operators: this program links torch_ddpm::ddpm_ops
// (CMakeLists.txt), which registers them when it loads.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <torch_ddpm/ddpm_ops.h>

int main(int argc, char** argv) {
  const bool noise_from_key = argc == 10 && std::string(argv[9]) == "key";
  if (argc != 9 && !noise_from_key) {
    std::cerr << "usage: " << argv[0] << " STEP.pt2 SEED NUM_TIMESTEPS OUT.bin B C H W [key]\n";
    return 2;
  }
  try {
    torch::inductor::AOTIModelPackageLoader step(argv[1]);
    const int64_t seed = std::strtoll(argv[2], nullptr, 10);
    const int64_t num_timesteps = std::strtoll(argv[3], nullptr, 10);
    std::vector<int64_t> shape;
    for (int i = 5; i < 9; ++i) shape.push_back(std::strtoll(argv[i], nullptr, 10));
    torch::NoGradGuard no_grad;
    torch::Tensor x = ddpm::philox_normal(torch::empty(shape), seed, 0);
    const auto start = std::chrono::steady_clock::now();
    auto after_first = start;
    for (int64_t k = 1; k <= num_timesteps; ++k) {
      if (k == 2) after_first = std::chrono::steady_clock::now();
      const torch::Tensor t = torch::full({shape[0]}, num_timesteps - k, torch::kLong);
      const torch::Tensor noise =
          noise_from_key ? torch::tensor({seed, 4 * k}, torch::kLong)
                         : ddpm::philox_normal(x, seed, 4 * k);
      x = step.run({x, t, noise})[0];
    }
    const auto end = std::chrono::steady_clock::now();
    const double loop_ms = std::chrono::duration<double, std::milli>(end - start).count();
    const double warm_ms = std::chrono::duration<double, std::milli>(end - after_first).count();
    x = x.to(torch::kFloat).contiguous();
    std::ofstream out(argv[4], std::ios::binary);
    out.write(reinterpret_cast<const char*>(x.data_ptr<float>()),
              static_cast<std::streamsize>(x.numel() * sizeof(float)));
    std::cout << "sampled " << x.sizes() << " in " << num_timesteps << " steps, mean "
              << x.mean().item<float>() << ", std " << x.std().item<float>() << "\n"
              << "loop: " << loop_ms / static_cast<double>(num_timesteps) << " ms per step";
    if (num_timesteps > 1) {
      std::cout << "; after the first step: "
                << warm_ms / static_cast<double>(num_timesteps - 1) << " ms per step";
    }
    std::cout << "\n";
    return out.good() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "ddpm_run_package: " << e.what() << "\n";
    return 1;
  }
}
