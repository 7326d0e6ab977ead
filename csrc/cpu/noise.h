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

// Told when columns [c0, c1) of a block are drawn: buf[l*256 + c] for every
// lane l and c0 <= c < c1.
struct NoiseColumnsReady {
  void (*fn)(void* ctx, int c0, int c1);
  void* ctx;
};

// Columns per call of NoiseColumnsReady: the element loop runs on each
// quarter of the block as soon as it is drawn, so that its loads and stores
// sit in the out-of-order window next to the generator's arithmetic (a whole
// block of generation, then a whole block of memory traffic, do not overlap).
constexpr int kNoiseColumnsPerCall = 64;

// buf[l*256 + c] = lane l of subsequence block*256 + c: the normals of
// elements [block*1024, block*1024 + 1024) in order; fetches `next` meanwhile
// and calls `ready` on every kNoiseColumnsPerCall columns drawn.
void philox_normal_block(const NoiseKey& key, int64_t block, float* buf,
                         const NoisePrefetch& next,
                         const NoiseColumnsReady& ready);

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
        struct Columns {
          const Run* run;
          const float* noise;
          int64_t begin, end, sample_numel;
        } columns{&run, noise, 0, 0, sample_numel};
        // elements begin + l*256 + [c0, c1) of the block, for each lane l
        const NoiseColumnsReady ready{
            [](void* ctx, int c0, int c1) {
              const Columns& k = *static_cast<const Columns*>(ctx);
              for (int lane = 0; lane < kNoiseLanes; ++lane) {
                const int64_t lo = k.begin + lane * kNoiseRowLength + c0;
                const int64_t hi = std::min(k.begin + lane * kNoiseRowLength + c1, k.end);
                if (lo >= hi) continue;
                for_each_run_in(lo, hi, k.sample_numel,
                                [&](int64_t b, int64_t i0, int64_t i1, int64_t flat) {
                                  (*k.run)(b, i0, i1, k.noise + (flat - k.begin));
                                });
              }
            },
            &columns};
        for (int64_t block = block_begin; block < block_end; ++block) {
          const int64_t begin = block * kNoiseBlockSize;
          const int64_t end = std::min(begin + kNoiseBlockSize, total);
          if (block == block_begin) {  // the first block's own data
            NoisePrefetch first;
            touch_block(begin, end, sample_numel, touch, first);
            first.fetch_slice(0, 1);
          }
          NoisePrefetch next;
          if (block + 1 < block_end) {
            touch_block(end, std::min(end + kNoiseBlockSize, total),
                        sample_numel, touch, next);
          }
          columns.begin = begin;
          columns.end = end;
          philox_normal_block(key, block, noise, next, ready);
        }
      });
}

}  // namespace cpu
}  // namespace ddpm
