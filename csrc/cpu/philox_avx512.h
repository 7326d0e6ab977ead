// The AVX-512 noise generator (see ddpm/philox.h for the keying): Philox in
// 64-bit lanes and Box-Muller written in intrinsics, operation for operation
// the header's float code, so the bits are the header's (and CUDA's). A
// header because it is a template over the step that consumes the noise:
// for_each_noise_run (noise.h) inlines each operator's element loop into the
// generator, so the loop is compiled for 512-bit vectors next to it and the
// generator's registers are not spilled around a call every 64 columns.
//   buf: [1024] normals, lane l of subsequence first + c at buf[l*256 + c]
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DDPM_X86_DISPATCH 1
// GCC 12's avx512fintrin.h trips -Wuninitialized on its own _mm512_undefined
// placeholders when inlined (a known false positive); the warnings fire where
// the intrinsics are inlined, so they are silenced for the including file.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "ddpm/philox.h"
#include "loops.h"

namespace ddpm {
namespace cpu {

#define DDPM_AVX512 \
  __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,prfchw")))

// One Philox-4x32 round for 8 subsequences per vector, each 32-bit word in
// the low half of a 64-bit lane (vpmuludq reads only that half, so the high
// halves may hold anything): one multiply gives both halves of a product, and
// no shuffles are needed to split even and odd lanes. G groups interleaved.
template <int G>
DDPM_AVX512 inline void philox_round_avx512(__m512i* x, __m512i* y, __m512i* z,
                                            __m512i* w, uint32_t k0,
                                            uint32_t k1) {
  const __m512i mul0 = _mm512_set1_epi64(0xD2511F53u);
  const __m512i mul1 = _mm512_set1_epi64(0xCD9E8D57u);
  const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
  const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
  for (int g = 0; g < G; ++g) {
    const __m512i p0 = _mm512_mul_epu32(x[g], mul0);
    const __m512i p1 = _mm512_mul_epu32(z[g], mul1);
    // 0x96: three-way xor; the high halves are moved down by a shuffle
    // (port 5) rather than a shift (port 0, where the multiplies go)
    x[g] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p1, _MM_PERM_DDBB),
                                     y[g], key0, 0x96);
    y[g] = p1;
    z[g] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p0, _MM_PERM_DDBB),
                                     w[g], key1, 0x96);
    w[g] = p0;
  }
}

// box_muller (ddpm/philox.h) for 16 pairs (a, b), operation for operation:
// the same roundings in the same order, so the bits are the header's. In
// stages, so that the generator can place them between Philox rounds.
struct BoxMuller16 {
  __m512i a, b;
  __m512 m, w, f, f2, r, sin_f, cos_f;
  __m512i e, c;

  // u in (0, 1), split as 2^e * m with m in [sqrt(1/2), sqrt(2))
  DDPM_AVX512 void split_u() {
    using namespace noise_const;
    const __m512 u = _mm512_fmadd_ps(
        _mm512_cvtepi32_ps(_mm512_srli_epi32(a, 1)),
        _mm512_set1_ps(0x1.0p-31f), _mm512_set1_ps(0x1.0p-32f));
    const __m512i bits = _mm512_castps_si512(u);
    const __m512i mantissa =
        _mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF));
    const __mmask16 above = _mm512_cmpgt_epu32_mask(
        mantissa, _mm512_set1_epi32(static_cast<int>(kSqrt2Mantissa)));
    m = _mm512_castsi512_ps(_mm512_or_si512(
        mantissa, _mm512_mask_mov_epi32(_mm512_set1_epi32(0x3F800000), above,
                                        _mm512_set1_epi32(0x3F000000))));
    const __m512i e_unbiased =
        _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127));
    // + 1 where the mantissa was halved
    e = _mm512_mask_sub_epi32(e_unbiased, above, e_unbiased,
                              _mm512_set1_epi32(-1));
  }
  // the division of minus_two_log; the angle's quadrant and fraction
  DDPM_AVX512 void divide_and_angle() {
    w = _mm512_div_ps(
        _mm512_fmadd_ps(m, _mm512_set1_ps(-4.0f), _mm512_set1_ps(4.0f)),
        _mm512_add_ps(m, _mm512_set1_ps(1.0f)));
    c = _mm512_add_epi32(b, _mm512_set1_epi32(0x20000000));
    const __m512i low =
        _mm512_sub_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x3FFFFFFF)),
                         _mm512_set1_epi32(0x20000000));
    f = _mm512_mul_ps(_mm512_cvtepi32_ps(low), _mm512_set1_ps(0x1.0p-31f));
    f2 = _mm512_mul_ps(f, f);
  }
  // sin and cos of pi*f, |f| <= 1/4
  DDPM_AVX512 void sin_cos() {
    using namespace noise_const;
    __m512 ps = _mm512_fmadd_ps(_mm512_set1_ps(kSin3), f2, _mm512_set1_ps(kSin2));
    ps = _mm512_fmadd_ps(ps, f2, _mm512_set1_ps(kSin1));
    ps = _mm512_fmadd_ps(ps, f2, _mm512_set1_ps(kSin0));
    sin_f = _mm512_mul_ps(ps, f);
    __m512 pc = _mm512_fmadd_ps(_mm512_set1_ps(kCos3), f2, _mm512_set1_ps(kCos2));
    pc = _mm512_fmadd_ps(pc, f2, _mm512_set1_ps(kCos1));
    pc = _mm512_fmadd_ps(pc, f2, _mm512_set1_ps(kCos0));
    cos_f = _mm512_fmadd_ps(pc, f2, _mm512_set1_ps(1.0f));
  }
  // r = sqrt(-2 log u)
  DDPM_AVX512 void radius() {
    using namespace noise_const;
    const __m512 w2 = _mm512_mul_ps(w, w);
    const __m512 p = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_set1_ps(kLogP2), w2, _mm512_set1_ps(kLogP1)),
        w2, _mm512_set1_ps(kLogP0));
    const __m512 log_m = _mm512_fmadd_ps(_mm512_mul_ps(w, w2), p, w);
    const __m512 ef = _mm512_cvtepi32_ps(e);
    const __m512 x = _mm512_fmadd_ps(
        ef, _mm512_set1_ps(kMinusTwoLn2Hi),
        _mm512_fmadd_ps(ef, _mm512_set1_ps(kMinusTwoLn2Lo), log_m));
    r = _mm512_sqrt_ps(x);
  }
  // the quadrant's swap and signs; the two normals r*cos, r*sin
  DDPM_AVX512 void finish(__m512& first, __m512& second) const {
    const __mmask16 swap =
        _mm512_test_epi32_mask(c, _mm512_set1_epi32(0x40000000));
    const __m512 s = _mm512_mask_mov_ps(sin_f, swap, cos_f);
    const __m512 co = _mm512_mask_mov_ps(cos_f, swap, sin_f);
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    // 0x6A: (A & B) ^ C, the sign bit of c (or of c + 2^30) flipped into C
    const __m512 sin_v = _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(c, sign, _mm512_castps_si512(s), 0x6A));
    const __m512 cos_v = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(
        _mm512_add_epi32(c, _mm512_set1_epi32(0x40000000)), sign,
        _mm512_castps_si512(co), 0x6A));
    first = _mm512_mul_ps(r, cos_v);
    second = _mm512_mul_ps(r, sin_v);
  }
};

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
// pipelined: the ten Philox rounds of the next 16 columns are interleaved in
// program order with the Box-Muller stages of the current ones. Both are
// long dependency chains (the rounds' multiplies; the divider's division and
// square root); issued one after the other, the rounds fill the scheduler
// while they wait on each other and the Box-Muller work queues behind them.
// Measured on one core: 1.48 ns/element one after the other, 1.24 with the
// whole next Philox first, 1.08-1.15 interleaved. ready(c0, c1) (inlined) is
// told every kColumnsPerReady columns that buf[l*256 + c], c0 <= c < c1, is
// drawn; next.fetch_slice spreads the next block's prefetches over the
// iterations.
template <int kColumnsPerReady, typename Prefetch, typename Ready>
DDPM_AVX512 inline void philox_normal_rows_avx512(const NoiseKey& key,
                                                  uint64_t first,
                                                  float* __restrict buf,
                                                  const Prefetch& next,
                                                  const Ready& ready) {
  constexpr int kRow = kNoiseRowLength;
  constexpr int G = 2;
  constexpr int kColumnsPerStep = 8 * G;
  static_assert(kRow % kColumnsPerReady == 0 &&
                    kColumnsPerReady % kColumnsPerStep == 0,
                "ready is called on whole iterations");
  const uint64_t block = key.offset >> 2;
  // the low halves of two 64-bit-lane vectors as 16 dwords
  const __m512i pack = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                         22, 24, 26, 28, 30);
  uint32_t key0[10], key1[10];  // the key schedule
  key0[0] = static_cast<uint32_t>(key.seed);
  key1[0] = static_cast<uint32_t>(key.seed >> 32);
  for (int round = 1; round < 10; ++round) {
    key0[round] = key0[round - 1] + 0x9E3779B9u;
    key1[round] = key1[round - 1] + 0xBB67AE85u;
  }
  __m512i x[G], y[G], z[G], w[G];
  philox_counters_avx512<G>(block, first, 0, x, y, z, w);
  for (int round = 0; round < 10; ++round) {
    philox_round_avx512<G>(x, y, z, w, key0[round], key1[round]);
  }
  for (int c = 0; c < kRow; c += kColumnsPerStep) {
    BoxMuller16 xy, zw;  // lanes 0 and 1, lanes 2 and 3
    xy.a = _mm512_permutex2var_epi32(x[0], pack, x[1]);
    xy.b = _mm512_permutex2var_epi32(y[0], pack, y[1]);
    zw.a = _mm512_permutex2var_epi32(z[0], pack, z[1]);
    zw.b = _mm512_permutex2var_epi32(w[0], pack, w[1]);
    next.fetch_slice(c / kColumnsPerStep, kRow / kColumnsPerStep);
    const bool more = c + kColumnsPerStep < kRow;
    if (more) philox_counters_avx512<G>(block, first, c + kColumnsPerStep, x, y, z, w);
    const auto round = [&](int r) DDPM_ALWAYS_INLINE {
      if (more) philox_round_avx512<G>(x, y, z, w, key0[r], key1[r]);
    };
    // the order was tuned by measurement; any order gives the same bits
    round(0);
    xy.split_u();
    zw.split_u();
    round(1);
    round(2);
    xy.divide_and_angle();
    zw.divide_and_angle();
    round(3);
    round(4);
    xy.sin_cos();
    round(5);
    zw.sin_cos();
    round(6);
    xy.radius();
    zw.radius();
    round(7);
    round(8);
    __m512 n0, n1, n2, n3;
    xy.finish(n0, n1);
    zw.finish(n2, n3);
    round(9);
    _mm512_storeu_ps(buf + c, n0);
    _mm512_storeu_ps(buf + kRow + c, n1);
    _mm512_storeu_ps(buf + 2 * kRow + c, n2);
    _mm512_storeu_ps(buf + 3 * kRow + c, n3);
    const int drawn = c + kColumnsPerStep;
    if (drawn % kColumnsPerReady == 0) ready(drawn - kColumnsPerReady, drawn);
  }
}

}  // namespace cpu
}  // namespace ddpm

#endif  // x86-64 GCC
