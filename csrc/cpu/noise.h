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

template <typename Touch, typename Prefetch>
void touch_block(int64_t begin, int64_t end, int64_t sample_numel,
                 const Touch& touch, Prefetch& prefetch) {
  for_each_run_in(begin, end, sample_numel,
                  [&](int64_t b, int64_t i0, int64_t i1, int64_t) {
                    touch(b, i0, i1, prefetch);
                  });
}

// Memory that the loop over the next block will touch. The generator is
// compute-bound and the loop memory-bound; left alone they take turns (the
// loop stalls on misses while the generator waits behind it). So the
// generator fetches the next block's lines while it computes, spread over
// its iterations, and the loop then finds them in L1.
struct NoisePrefetch {
  static constexpr int kMaxRanges = 8;
  const char* begin[kMaxRanges];
  int64_t bytes[kMaxRanges];
  bool write[kMaxRanges];
  int count = 0;

  template <typename T>
  void add(const T* p, int64_t n, bool for_write) {
    if (count == kMaxRanges || p == nullptr || n <= 0) return;
    begin[count] = reinterpret_cast<const char*>(p);
    bytes[count] = n * static_cast<int64_t>(sizeof(T));
    write[count] = for_write;
    ++count;
  }
  // Slice k of `slices` equal parts of every range.
  inline void fetch_slice(int k, int slices) const {
    for (int r = 0; r < count; ++r) {
      const int64_t lo = bytes[r] * k / slices, hi = bytes[r] * (k + 1) / slices;
      for (int64_t o = lo & ~int64_t{63}; o < hi; o += 64) {
        if (write[r]) {
          __builtin_prefetch(begin[r] + o, 1, 3);
        } else {
          __builtin_prefetch(begin[r] + o, 0, 3);
        }
      }
    }
  }
};

// buf[l*256 + c] = lane l of subsequence block*256 + c: the normals of
// elements [block*1024, block*1024 + 1024) in order; fetches `next` meanwhile.
void philox_normal_block(const NoiseKey& key, int64_t block, float* buf,
                         const NoisePrefetch& next);

// Calls run(b, begin, end, noise) over [0, batch*sample_numel) in parallel,
// each call covering elements [begin, end) of sample b, with noise[j] the
// normal of element (b, begin + j). touch(b, begin, end, prefetch) adds the
// memory such a call will read or write to `prefetch`.
template <typename Run, typename Touch>
void for_each_noise_run(int64_t batch, int64_t sample_numel,
                        const NoiseKey& key, const Run& run,
                        const Touch& touch) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  const int64_t num_blocks = (total + kNoiseBlockSize - 1) / kNoiseBlockSize;
  at::parallel_for(
      0, num_blocks, std::max<int64_t>(1, kGrainSize / kNoiseBlockSize),
      [&](int64_t block_begin, int64_t block_end) {
        alignas(64) float noise[kNoiseBlockSize];
        for (int64_t block = block_begin; block < block_end; ++block) {
          const int64_t begin = block * kNoiseBlockSize;
          const int64_t end = std::min(begin + kNoiseBlockSize, total);
          NoisePrefetch next;
          if (block == block_begin) {
            touch_block(begin, end, sample_numel, touch, next);
            next.fetch_slice(0, 1);  // the first block's own data
            next.count = 0;
          }
          if (block + 1 < block_end) {
            touch_block(end, std::min(end + kNoiseBlockSize, total),
                        sample_numel, touch, next);
          }
          philox_normal_block(key, block, noise, next);
          for_each_run_in(begin, end, sample_numel,
                          [&](int64_t b, int64_t i0, int64_t i1, int64_t flat) {
                            run(b, i0, i1, noise + (flat - begin));
                          });
        }
      });
}

}  // namespace cpu
}  // namespace ddpm
