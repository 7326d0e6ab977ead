// The CPU loop shared by every operator: per-sample coefficients gathered
// once (and the timesteps validated) before a parallel pass over the
// [batch, sample_numel] elements, split into runs that stay inside one
// sample so the inner loop has constant coefficients and vectorizes.
#pragma once

#include <vector>

#include "ddpm/kernels.h"
#include "parallel.h"

// The inner loops are compiled three times, for x86-64's baseline (SSE2),
// AVX2-class CPUs (x86-64-v3: AVX2, FMA, F16C, BMI2) and AVX-512 CPUs (512-bit
// vectors), and the loader picks one per CPU (GCC function multiversioning).
// The widest vectors matter even for loops that look memory-bound: on the Xeon
// this was measured on, a cache-resident p_sample loop ran at 0.6 ns/element
// in 256-bit vectors and 0.3 in 512-bit ones (fewer load/store instructions);
// the 16-bit types need the width to keep up with memory. Every clone rounds
// alike: the files are built with -ffp-contract=off.
// Why "arch=x86-64-v3" and not "arch=haswell": GCC picks an "arch=<cpu>" clone
// by CPU *model* (__builtin_cpu_is), so a Haswell clone runs on Haswell only;
// Broadwell, Skylake client and AMD Zen 1-3 got the SSE2 loops. An ISA level
// (GCC 12+, PR target/101696) is picked by features. cpu_loop_clone() reports
// the pick; tests/python/test_isa.py checks it on CPUs emulated by qemu-user.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DDPM_CLONE_AVX512 "avx512f"
#if __GNUC__ >= 12
#define DDPM_CLONE_AVX2 "arch=x86-64-v3"
#else
#define DDPM_CLONE_AVX2 "arch=haswell"  // GCC 11 dispatches no ISA levels
#endif
#define DDPM_CPU_CLONES \
  __attribute__((target_clones(DDPM_CLONE_AVX512, DDPM_CLONE_AVX2, "default")))
#else
#define DDPM_CPU_CLONES
#endif

// For loops that must be compiled inside their caller, for the caller's
// instruction set (target-specific passes such as noise.h's); a lambda takes
// it after its parameter list.
#if defined(__GNUC__)
#define DDPM_ALWAYS_INLINE __attribute__((always_inline))
#else
#define DDPM_ALWAYS_INLINE
#endif

namespace ddpm {
namespace cpu {

// coefs[b] = make_coef(b, t[b]) for every sample; returns -1, or the first b
// whose timestep is outside [0, T).
template <typename Coef, typename MakeCoef>
int64_t gather_coefficients(const Timesteps& ts, int64_t batch,
                            std::vector<Coef>& coefs, MakeCoef make_coef) {
  coefs.resize(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = ts.t[b];
    if (t < 0 || t >= ts.num_timesteps) return b;
    coefs[static_cast<size_t>(b)] = make_coef(b, t);
  }
  return -1;
}

// Elements per parallel task: large enough that thread start-up is amortized
// (ATen's own element-wise loops use the same figure).
constexpr int64_t kGrainSize = 32768;

// Splits the len flat elements starting at element i of sample b (i may lie
// past that sample's end) into runs inside one sample: calls
// run(b', i0, i1, done) for elements [i0, i1) of sample b', done being the
// number of elements before that run. No division, for the noise pass's
// inner loop.
template <typename Run>
DDPM_ALWAYS_INLINE inline void for_each_run_from(int64_t b, int64_t i,
                                                 int64_t len,
                                                 int64_t sample_numel,
                                                 const Run& run) {
  while (i >= sample_numel) {  // a sample boundary before the first element
    i -= sample_numel;
    ++b;
  }
  for (int64_t done = 0; done < len; ++b, i = 0) {
    const int64_t take = std::min(sample_numel - i, len - done);
    run(b, i, i + take, done);
    done += take;
  }
}

// Splits flat elements [begin, end) into runs inside one sample: calls
// run(b, i0, i1, flat0) for elements [i0, i1) of sample b, flat0 being the
// flat index of (b, i0).
template <typename Run>
void for_each_run_in(int64_t begin, int64_t end, int64_t sample_numel,
                     const Run& run) {
  const int64_t b = begin / sample_numel;
  for_each_run_from(b, begin - b * sample_numel, end - begin, sample_numel,
                    [&](int64_t sample, int64_t i0, int64_t i1, int64_t done) {
                      run(sample, i0, i1, begin + done);
                    });
}

// Calls run(b, begin, end) over [0, batch*sample_numel) in parallel, each
// call covering elements [begin, end) of sample b.
template <typename Run>
void for_each_sample_run(int64_t batch, int64_t sample_numel, const Run& run) {
  const int64_t total = batch * sample_numel;
  if (total == 0) return;
  parallel_for(0, total, kGrainSize, [&](int64_t begin, int64_t end) {
    for_each_run_in(begin, end, sample_numel,
                    [&](int64_t b, int64_t i0, int64_t i1, int64_t) {
                      run(b, i0, i1);
                    });
  });
}

// Calls fn(off, s0, s1) for the runs of elements [i0, i1) of sample b that
// share one noise offset (NoiseOffset): one run with off = 0 where there is
// none, else one per channel the elements touch.
template <typename S, typename Fn>
DDPM_ALWAYS_INLINE inline void for_each_offset_run(const NoiseOffset<S>& offset, int64_t b,
                                                   int64_t i0, int64_t i1, const Fn& fn) {
  if (!offset.present()) {
    fn(acc_t<S>(0), i0, i1);
    return;
  }
  for (int64_t i = i0; i < i1;) {
    const int64_t end = std::min(i1, (i / offset.channel_numel + 1) * offset.channel_numel);
    fn(offset.at(b, i), i, end);
    i = end;
  }
}

}  // namespace cpu
}  // namespace ddpm
