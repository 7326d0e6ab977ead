// In-kernel noise on the CPU (see ddpm/philox.h for the keying): a parallel
// pass over 1024-element noise blocks, each drawn once into an L1-resident
// buffer and consumed by the operator's element loop in the same pass, split
// into runs that stay inside one sample.
//
// The pass is compiled once per instruction set (AVX-512, AVX2, baseline) and
// picked at run time; the operator's loop is inlined into it, so it is
// vectorized for that set. On AVX-512 the loop is also inlined into the
// generator itself and runs on each quarter of a block as soon as it is drawn.
#pragma once


#include <algorithm>

#include "ddpm/philox.h"
#include "loops.h"
#include "philox_avx512.h"

namespace ddpm {
namespace cpu {

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
  DDPM_ALWAYS_INLINE void fetch_slice(int k, int slices) const {
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

// The AVX2 or portable generator, a whole block at a time:
// buf[l*256 + c] = lane l of subsequence block*256 + c, i.e. the normals of
// elements [block*1024, block*1024 + 1024) in order.
void philox_normal_block(const NoiseKey& key, int64_t block, float* buf);

enum class NoiseIsa { kPortable, kAvx2, kAvx512 };
// The widest generator this CPU runs, detected once.
NoiseIsa noise_isa();

// Columns per step call on AVX-512: the element loop runs on each quarter of
// the block as soon as it is drawn, so that its loads and stores sit in the
// out-of-order window next to the generator's arithmetic (a whole block of
// generation, then a whole block of memory traffic, do not overlap).
constexpr int kNoiseColumnsPerStep = 64;

struct Avx512Generator {
  template <typename Ready>
  DDPM_ALWAYS_INLINE static void block(const NoiseKey& key, int64_t block,
                                       float* buf, const NoisePrefetch& next,
                                       const Ready& ready) {
#if defined(DDPM_X86_DISPATCH)
    philox_normal_rows_avx512<kNoiseColumnsPerStep>(
        key, static_cast<uint64_t>(block) * kNoiseRowLength, buf, next, ready);
#else
    (void)key, (void)block, (void)buf, (void)next, (void)ready;
#endif
  }
};

struct WholeBlockGenerator {
  template <typename Ready>
  DDPM_ALWAYS_INLINE static void block(const NoiseKey& key, int64_t block,
                                       float* buf, const NoisePrefetch& next,
                                       const Ready& ready) {
    next.fetch_slice(0, 1);
    philox_normal_block(key, block, buf);
    ready(0, kNoiseRowLength);
  }
};

// Blocks [block_begin, block_end) of one parallel task.
template <typename Generator, typename Run, typename Touch>
DDPM_ALWAYS_INLINE inline void noise_blocks(int64_t block_begin, int64_t block_end,
                                            int64_t total, int64_t sample_numel,
                                            const NoiseKey& key, const Run& run,
                                            const Touch& touch) {
  alignas(64) float noise[kNoiseBlockSize];
  const auto touch_range = [&](int64_t begin, int64_t end, NoisePrefetch& fetch) {
    for_each_run_in(begin, end, sample_numel,
                    [&](int64_t b, int64_t i0, int64_t i1, int64_t) {
                      touch(b, i0, i1, fetch);
                    });
  };
  for (int64_t block = block_begin; block < block_end; ++block) {
    const int64_t begin = block * kNoiseBlockSize;
    const int64_t end = std::min(begin + kNoiseBlockSize, total);
    if (block == block_begin) {  // the first block's own data
      NoisePrefetch first;
      touch_range(begin, end, first);
      first.fetch_slice(0, 1);
    }
    NoisePrefetch next;
    if (block + 1 < block_end) {
      touch_range(end, std::min(end + kNoiseBlockSize, total), next);
    }
    const int64_t block_sample = begin / sample_numel;
    const int64_t block_index = begin - block_sample * sample_numel;
    // elements begin + l*256 + [c0, c1) of the block, for each lane l
    Generator::block(key, block, noise, next,
                     [&](int c0, int c1) DDPM_ALWAYS_INLINE {
                       for (int lane = 0; lane < kNoiseLanes; ++lane) {
                         const int64_t lo = lane * kNoiseRowLength + c0;
                         const int64_t hi = std::min<int64_t>(
                             lane * kNoiseRowLength + c1, end - begin);
                         if (lo >= hi) continue;
                         for_each_run_from(
                             block_sample, block_index + lo, hi - lo,
                             sample_numel,
                             [&](int64_t b, int64_t i0, int64_t i1,
                                 int64_t done) DDPM_ALWAYS_INLINE {
                               run(b, i0, i1, noise + lo + done);
                             });
                       }
                     });
  }
}

#if defined(DDPM_X86_DISPATCH)
template <typename Run, typename Touch>
DDPM_AVX512 void noise_blocks_avx512(int64_t block_begin, int64_t block_end,
                                     int64_t total, int64_t sample_numel,
                                     const NoiseKey& key, const Run& run,
                                     const Touch& touch) {
  noise_blocks<Avx512Generator>(block_begin, block_end, total, sample_numel,
                                key, run, touch);
}

template <typename Run, typename Touch>
__attribute__((target("avx2,fma,f16c"))) void noise_blocks_avx2(
    int64_t block_begin, int64_t block_end, int64_t total,
    int64_t sample_numel, const NoiseKey& key, const Run& run,
    const Touch& touch) {
  noise_blocks<WholeBlockGenerator>(block_begin, block_end, total,
                                    sample_numel, key, run, touch);
}
#endif

// Calls run(b, begin, end, noise) over [0, batch*sample_numel) in parallel,
// each call covering elements [begin, end) of sample b, with noise[j] the
// normal of element (b, begin + j). touch(b, begin, end, prefetch) adds the
// memory such a call will read or write to `prefetch`. Both are inlined into
// the pass (declare them DDPM_ALWAYS_INLINE, and only call inline functions
// from them, or the loop is compiled for the baseline instruction set).
template <typename Run, typename Touch>
void for_each_noise_run(int64_t batch, int64_t sample_numel,
                        const NoiseKey& key, const Run& run,
                        const Touch& touch) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  const int64_t num_blocks = (total + kNoiseBlockSize - 1) / kNoiseBlockSize;
  const NoiseIsa isa = noise_isa();
  parallel_for(
      0, num_blocks, std::max<int64_t>(1, kGrainSize / kNoiseBlockSize),
      [&](int64_t block_begin, int64_t block_end) {
        switch (isa) {
#if defined(DDPM_X86_DISPATCH)
          case NoiseIsa::kAvx512:
            noise_blocks_avx512(block_begin, block_end, total, sample_numel,
                                key, run, touch);
            return;
          case NoiseIsa::kAvx2:
            noise_blocks_avx2(block_begin, block_end, total, sample_numel,
                              key, run, touch);
            return;
#endif
          default:
            noise_blocks<WholeBlockGenerator>(block_begin, block_end, total,
                                              sample_numel, key, run, touch);
        }
      });
}

}  // namespace cpu
}  // namespace ddpm
