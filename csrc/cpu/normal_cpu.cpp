// Philox normals on the CPU: the block generator every in-kernel-noise loop
// uses, and the operator that only writes the noise (philox_normal).
//   buf: [1024] normals, lane l of subsequence block*256 + c at
//        buf[l*256 + c] (ddpm/philox.h); words (AVX2 and portable paths):
//        [4, 256] Philox outputs, rows x, y, z, w
//   philox_normal: out[e] = the normal of element e for (seed, offset)
//
// Philox, then Box-Muller, in the widest vectors the CPU has, picked once at
// run time. AVX-512: both in registers, hand-written (GCC vectorizes the
// 32x32->64 multiplies with a shuffle per use) and following the header's
// float code operation by operation; AVX2: Philox intrinsics, the header's
// Box-Muller compiled for Haswell. All files are built with -ffp-contract=off
// and the header writes every fused multiply-add out, so every path (and
// CUDA) rounds alike.
#include "ddpm/kernels.h"
#include "noise.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DDPM_X86_DISPATCH 1
// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined
// placeholders when inlined here (a known false positive).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace ddpm {
namespace cpu {
namespace {

constexpr int kRow = kNoiseRowLength;
static_assert(kRow % kNoiseColumnsPerCall == 0 && kNoiseColumnsPerCall % 16 == 0,
              "the AVX-512 loop draws 16 columns per iteration");

void philox_rows_portable(const NoiseKey& key, uint64_t first,
                          uint32_t* __restrict words) {
  for (int c = 0; c < kRow; ++c) {
    const Philox4 w = philox_for_subsequence(key, first + c);
    words[c] = w.x;
    words[kRow + c] = w.y;
    words[2 * kRow + c] = w.z;
    words[3 * kRow + c] = w.w;
  }
}

// Box-Muller of the pairs (x, y) -> lanes 0, 1 and (z, w) -> lanes 2, 3.
DDPM_CPU_CLONES void box_muller_rows(const uint32_t* __restrict words,
                                     float* __restrict buf) {
  for (int c = 0; c < kRow; ++c) {
    const NormalPair p01 = box_muller(words[c], words[kRow + c]);
    const NormalPair p23 = box_muller(words[2 * kRow + c], words[3 * kRow + c]);
    buf[c] = p01.first;
    buf[kRow + c] = p01.second;
    buf[2 * kRow + c] = p23.first;
    buf[3 * kRow + c] = p23.second;
  }
}

#if defined(DDPM_X86_DISPATCH)

// hi and lo halves of a*m for each 32-bit lane: vpmuludq multiplies the even
// lanes, so the odd ones are shifted down, multiplied and blended back.
__attribute__((target("avx2"))) inline void mulhilo_avx2(__m256i a, __m256i m,
                                                          __m256i& hi,
                                                          __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

__attribute__((target("avx2"))) void philox_rows_avx2(
    const NoiseKey& key, uint64_t first, uint32_t* __restrict words) {
  const uint64_t block = key.offset >> 2;
  const __m256i mul0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i mul1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int c = 0; c < kRow; c += 8) {
    // first is a multiple of 256, so first + c never carries into the high word
    const uint64_t sub = first + static_cast<uint64_t>(c);
    __m256i x = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block)));
    __m256i y = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
    __m256i z = _mm256_add_epi32(
        _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(sub))), lane);
    __m256i w = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(sub >> 32)));
    uint32_t k0 = static_cast<uint32_t>(key.seed);
    uint32_t k1 = static_cast<uint32_t>(key.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo_avx2(x, mul0, hi0, lo0);
      mulhilo_avx2(z, mul1, hi1, lo1);
      x = _mm256_xor_si256(_mm256_xor_si256(hi1, y),
                           _mm256_set1_epi32(static_cast<int>(k0)));
      y = lo1;
      z = _mm256_xor_si256(_mm256_xor_si256(hi0, w),
                           _mm256_set1_epi32(static_cast<int>(k1)));
      w = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + c), x);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + kRow + c), y);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 2 * kRow + c), z);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 3 * kRow + c), w);
  }
}

#define DDPM_AVX512 \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,prfchw")))

// Philox-4x32-10 for 8 subsequences per vector, each 32-bit word in the low
// half of a 64-bit lane (vpmuludq reads only that half, so the high halves
// may hold anything): one multiply gives both halves of a product, and no
// shuffles are needed to split even and odd lanes. G groups run interleaved.
template <int G>
DDPM_AVX512 inline void philox_rounds_avx512(__m512i* x, __m512i* y,
                                             __m512i* z, __m512i* w,
                                             uint32_t k0, uint32_t k1) {
  const __m512i mul0 = _mm512_set1_epi64(0xD2511F53u);
  const __m512i mul1 = _mm512_set1_epi64(0xCD9E8D57u);
  for (int round = 0; round < 10; ++round) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < G; ++g) {
      const __m512i p0 = _mm512_mul_epu32(x[g], mul0);
      const __m512i p1 = _mm512_mul_epu32(z[g], mul1);
      // 0x96: three-way xor; the high halves are moved down by a shuffle
      // (port 5) rather than a shift (port 0, where the multiplies go)
      x[g] = _mm512_ternarylogic_epi32(
          _mm512_shuffle_epi32(p1, _MM_PERM_DDBB), y[g], key0, 0x96);
      y[g] = p1;
      z[g] = _mm512_ternarylogic_epi32(
          _mm512_shuffle_epi32(p0, _MM_PERM_DDBB), w[g], key1, 0x96);
      w[g] = p0;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
}

// box_muller (ddpm/philox.h) for 16 pairs, operation for operation: the same
// roundings in the same order, so the bits are the header's.
struct NormalPair16 {
  __m512 first, second;
};

DDPM_AVX512 inline NormalPair16 box_muller_avx512(__m512i a, __m512i b) {
  using namespace noise_const;
  const __m512 u = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(a, 1)),
                                   _mm512_set1_ps(0x1.0p-31f),
                                   _mm512_set1_ps(0x1.0p-32f));
  // minus_two_log
  const __m512i bits = _mm512_castps_si512(u);
  const __m512i mantissa = _mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF));
  const __mmask16 above = _mm512_cmpgt_epu32_mask(
      mantissa, _mm512_set1_epi32(static_cast<int>(kSqrt2Mantissa)));
  const __m512 m = _mm512_castsi512_ps(_mm512_or_si512(
      mantissa, _mm512_mask_mov_epi32(_mm512_set1_epi32(0x3F800000), above,
                                      _mm512_set1_epi32(0x3F000000))));
  const __m512i e_unbiased =
      _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127));
  // + 1 where the mantissa was halved
  const __m512i e = _mm512_mask_sub_epi32(e_unbiased, above, e_unbiased,
                                          _mm512_set1_epi32(-1));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 w = _mm512_div_ps(
      _mm512_fmadd_ps(m, _mm512_set1_ps(-4.0f), _mm512_set1_ps(4.0f)),
      _mm512_add_ps(m, one));
  const __m512 w2 = _mm512_mul_ps(w, w);
  const __m512 p = _mm512_fmadd_ps(
      _mm512_fmadd_ps(_mm512_set1_ps(kLogP2), w2, _mm512_set1_ps(kLogP1)), w2,
      _mm512_set1_ps(kLogP0));
  const __m512 log_m = _mm512_fmadd_ps(_mm512_mul_ps(w, w2), p, w);
  const __m512 ef = _mm512_cvtepi32_ps(e);
  const __m512 x = _mm512_fmadd_ps(
      ef, _mm512_set1_ps(kMinusTwoLn2Hi),
      _mm512_fmadd_ps(ef, _mm512_set1_ps(kMinusTwoLn2Lo), log_m));
  const __m512 r = _mm512_sqrt_ps(x);
  // sincos_quadrant
  const __m512i c = _mm512_add_epi32(b, _mm512_set1_epi32(0x20000000));
  const __m512i low = _mm512_sub_epi32(
      _mm512_and_si512(c, _mm512_set1_epi32(0x3FFFFFFF)),
      _mm512_set1_epi32(0x20000000));
  const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(low), _mm512_set1_ps(0x1.0p-31f));
  const __m512 f2 = _mm512_mul_ps(f, f);
  __m512 ps = _mm512_fmadd_ps(_mm512_set1_ps(kSin3), f2, _mm512_set1_ps(kSin2));
  ps = _mm512_fmadd_ps(ps, f2, _mm512_set1_ps(kSin1));
  ps = _mm512_fmadd_ps(ps, f2, _mm512_set1_ps(kSin0));
  const __m512 sin_f = _mm512_mul_ps(ps, f);
  __m512 pc = _mm512_fmadd_ps(_mm512_set1_ps(kCos3), f2, _mm512_set1_ps(kCos2));
  pc = _mm512_fmadd_ps(pc, f2, _mm512_set1_ps(kCos1));
  pc = _mm512_fmadd_ps(pc, f2, _mm512_set1_ps(kCos0));
  const __m512 cos_f = _mm512_fmadd_ps(pc, f2, one);
  const __mmask16 swap = _mm512_test_epi32_mask(c, _mm512_set1_epi32(0x40000000));
  const __m512 s = _mm512_mask_mov_ps(sin_f, swap, cos_f);
  const __m512 co = _mm512_mask_mov_ps(cos_f, swap, sin_f);
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  // 0x6A: (A & B) ^ C, the sign bit of c (or of c + 2^30) flipped into C
  const __m512 sin_v = _mm512_castsi512_ps(
      _mm512_ternarylogic_epi32(c, sign, _mm512_castps_si512(s), 0x6A));
  const __m512 cos_v = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
      _mm512_add_epi32(c, _mm512_set1_epi32(0x40000000)), sign,
      _mm512_castps_si512(co), 0x6A));
  return {_mm512_mul_ps(r, cos_v), _mm512_mul_ps(r, sin_v)};
}

// Counters of the 8*G subsequences first + c + [0, 8*G), one per 64-bit lane.
template <int G>
DDPM_AVX512 inline void philox_counters_avx512(uint64_t block, uint64_t first,
                                               int c, __m512i* x, __m512i* y,
                                               __m512i* z, __m512i* w) {
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  for (int g = 0; g < G; ++g) {
    // first is a multiple of 256, so first + c never carries into the high word
    const uint64_t sub = first + static_cast<uint64_t>(c + 8 * g);
    x[g] = _mm512_set1_epi64(static_cast<uint32_t>(block));
    y[g] = _mm512_set1_epi64(static_cast<uint32_t>(block >> 32));
    z[g] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<uint32_t>(sub)), lane);
    w[g] = _mm512_set1_epi64(static_cast<uint32_t>(sub >> 32));
  }
}

// Philox and Box-Muller in registers, 16 subsequences at a time, software
// pipelined: the Philox rounds of the next 16 columns come before the
// Box-Muller of the current ones in program order, so the out-of-order core
// overlaps two long dependency chains (the rounds' multiplies, the divider's
// division and square root) instead of waiting on each in turn (measured:
// 1.48 -> 1.24 ns/element on one core).
DDPM_AVX512 void philox_normal_rows_avx512(const NoiseKey& key, uint64_t first,
                                           float* __restrict buf,
                                           const NoisePrefetch& next,
                                           const NoiseColumnsReady& ready) {
  constexpr int G = 2;
  constexpr int kColumnsPerStep = 8 * G;
  const uint64_t block = key.offset >> 2;
  // the low halves of two 64-bit-lane vectors as 16 dwords
  const __m512i pack = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                         22, 24, 26, 28, 30);
  const uint32_t k0 = static_cast<uint32_t>(key.seed);
  const uint32_t k1 = static_cast<uint32_t>(key.seed >> 32);
  __m512i x[G], y[G], z[G], w[G];
  philox_counters_avx512<G>(block, first, 0, x, y, z, w);
  philox_rounds_avx512<G>(x, y, z, w, k0, k1);
  for (int c = 0; c < kRow; c += kColumnsPerStep) {
    const __m512i x16 = _mm512_permutex2var_epi32(x[0], pack, x[1]);
    const __m512i y16 = _mm512_permutex2var_epi32(y[0], pack, y[1]);
    const __m512i z16 = _mm512_permutex2var_epi32(z[0], pack, z[1]);
    const __m512i w16 = _mm512_permutex2var_epi32(w[0], pack, w[1]);
    next.fetch_slice(c / kColumnsPerStep, kRow / kColumnsPerStep);
    if (c + kColumnsPerStep < kRow) {
      philox_counters_avx512<G>(block, first, c + kColumnsPerStep, x, y, z, w);
      philox_rounds_avx512<G>(x, y, z, w, k0, k1);
    }
    const NormalPair16 p01 = box_muller_avx512(x16, y16);
    const NormalPair16 p23 = box_muller_avx512(z16, w16);
    _mm512_storeu_ps(buf + c, p01.first);
    _mm512_storeu_ps(buf + kRow + c, p01.second);
    _mm512_storeu_ps(buf + 2 * kRow + c, p23.first);
    _mm512_storeu_ps(buf + 3 * kRow + c, p23.second);
    const int drawn = c + kColumnsPerStep;
    if (drawn % kNoiseColumnsPerCall == 0) {
      ready.fn(ready.ctx, drawn - kNoiseColumnsPerCall, drawn);
    }
  }
}

enum class NoiseIsa { kPortable, kAvx2, kAvx512 };

NoiseIsa detect_noise_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    return NoiseIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2")) return NoiseIsa::kAvx2;
  return NoiseIsa::kPortable;
}

#endif  // DDPM_X86_DISPATCH

}  // namespace

void philox_normal_block(const NoiseKey& key, int64_t block, float* buf,
                         const NoisePrefetch& next,
                         const NoiseColumnsReady& ready) {
  alignas(64) uint32_t words[kNoiseBlockSize];
  const uint64_t first = static_cast<uint64_t>(block) * kRow;
#if defined(DDPM_X86_DISPATCH)
  static const NoiseIsa isa = detect_noise_isa();
  switch (isa) {
    case NoiseIsa::kAvx512:
      philox_normal_rows_avx512(key, first, buf, next, ready);
      return;
    case NoiseIsa::kAvx2:
      next.fetch_slice(0, 1);
      philox_rows_avx2(key, first, words);
      box_muller_rows(words, buf);
      ready.fn(ready.ctx, 0, kRow);
      return;
    case NoiseIsa::kPortable:
      break;
  }
#endif
  next.fetch_slice(0, 1);
  philox_rows_portable(key, first, words);
  box_muller_rows(words, buf);
  ready.fn(ready.ctx, 0, kRow);
}

}  // namespace cpu

namespace {

template <typename S>
DDPM_CPU_CLONES void store_run(const float* __restrict noise, S* __restrict out,
                               int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(out + i, static_cast<acc_t<S>>(noise[i]));
}

}  // namespace

template <typename S>
void philox_normal_cpu(const PhiloxNormalParams<S>& p) {
  cpu::for_each_noise_run(
      1, p.numel, p.key,
      [&](int64_t, int64_t i0, int64_t i1, const float* z) {
        store_run(z, p.out + i0, i1 - i0);
      },
      [&](int64_t, int64_t i0, int64_t i1, cpu::NoisePrefetch& next) {
        next.add(p.out + i0, i1 - i0, true);
      });
}

template void philox_normal_cpu<float>(const PhiloxNormalParams<float>&);
template void philox_normal_cpu<double>(const PhiloxNormalParams<double>&);
template void philox_normal_cpu<Half>(const PhiloxNormalParams<Half>&);
template void philox_normal_cpu<BFloat16>(const PhiloxNormalParams<BFloat16>&);

}  // namespace ddpm
