// In-kernel noise on the CPU (see ddpm/philox.h for the keying): a parallel
// pass over 1024-element noise blocks, each drawn once into an L1-resident
// buffer and consumed by the operator's element loop in the same pass, split
// into runs that stay inside one sample.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>

#include "ddpm/philox.h"
#include "loops.h"

namespace ddpm {
namespace cpu {

// buf[l*256 + c] = lane l of subsequence block*256 + c: the normals of
// elements [block*1024, block*1024 + 1024) in order.
void philox_normal_block(const NoiseKey& key, int64_t block, float* buf);

// Calls run(b, begin, end, noise) over [0, batch*sample_numel) in parallel,
// each call covering elements [begin, end) of sample b, with noise[j] the
// normal of element (b, begin + j).
template <typename Run>
void for_each_noise_run(int64_t batch, int64_t sample_numel,
                        const NoiseKey& key, const Run& run) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  const int64_t num_blocks = (total + kNoiseBlockSize - 1) / kNoiseBlockSize;
  at::parallel_for(
      0, num_blocks, std::max<int64_t>(1, kGrainSize / kNoiseBlockSize),
      [&](int64_t block_begin, int64_t block_end) {
        alignas(64) float noise[kNoiseBlockSize];
        for (int64_t block = block_begin; block < block_end; ++block) {
          philox_normal_block(key, block, noise);
          const int64_t begin = block * kNoiseBlockSize;
          const int64_t end = std::min(begin + kNoiseBlockSize, total);
          for_each_run_in(begin, end, sample_numel,
                          [&](int64_t b, int64_t i0, int64_t i1, int64_t flat) {
                            run(b, i0, i1, noise + (flat - begin));
                          });
        }
      });
}

}  // namespace cpu
}  // namespace ddpm
