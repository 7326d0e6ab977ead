// Philox normals on the CPU: the block generator every in-kernel-noise loop
// uses, and the operator that only writes the noise (philox_normal).
//   words: [4, 256] Philox outputs (rows x, y, z, w) of subsequences
//          block*256 + c; buf: [1024] normals, lane l of subsequence c at
//          buf[l*256 + c] (ddpm/philox.h)
//   philox_normal: out[e] = the normal of element e for (seed, offset)
//
// Two stages per block, each in the widest vectors the CPU has, picked once
// at run time: Philox (integers, so any implementation gives the same bits;
// AVX2/AVX-512 intrinsics, since GCC vectorizes the 32x32->64 multiplies with
// a shuffle per use) and Box-Muller (the header's float code, compiled
// per ISA by GCC; the files are built with -ffp-contract=off, so no clone
// fuses what the baseline clone and CUDA round twice).
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
#define DDPM_BOX_MULLER_ROWS_BODY                                       \
  for (int c = 0; c < kRow; ++c) {                                      \
    const NormalPair p01 = box_muller(words[c], words[kRow + c]);       \
    const NormalPair p23 =                                              \
        box_muller(words[2 * kRow + c], words[3 * kRow + c]);           \
    buf[c] = p01.first;                                                 \
    buf[kRow + c] = p01.second;                                         \
    buf[2 * kRow + c] = p23.first;                                      \
    buf[3 * kRow + c] = p23.second;                                     \
  }

DDPM_CPU_CLONES void box_muller_rows(const uint32_t* __restrict words,
                                     float* __restrict buf) {
  DDPM_BOX_MULLER_ROWS_BODY
}

#if defined(DDPM_X86_DISPATCH)

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,prefer-vector-width=512")))
void box_muller_rows_avx512(const uint32_t* __restrict words,
                            float* __restrict buf) {
  DDPM_BOX_MULLER_ROWS_BODY
}

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

__attribute__((target("avx512f"))) inline void mulhilo_avx512(__m512i a,
                                                              __m512i m,
                                                              __m512i& hi,
                                                              __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

__attribute__((target("avx512f"))) void philox_rows_avx512(
    const NoiseKey& key, uint64_t first, uint32_t* __restrict words) {
  const uint64_t block = key.offset >> 2;
  const __m512i mul0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i mul1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                         12, 13, 14, 15);
  for (int c = 0; c < kRow; c += 16) {
    const uint64_t sub = first + static_cast<uint64_t>(c);
    __m512i x = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block)));
    __m512i y = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(block >> 32)));
    __m512i z = _mm512_add_epi32(
        _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(sub))), lane);
    __m512i w = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(sub >> 32)));
    uint32_t k0 = static_cast<uint32_t>(key.seed);
    uint32_t k1 = static_cast<uint32_t>(key.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo_avx512(x, mul0, hi0, lo0);
      mulhilo_avx512(z, mul1, hi1, lo1);
      // 0x96: three-way xor
      x = _mm512_ternarylogic_epi32(hi1, y, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
      y = lo1;
      z = _mm512_ternarylogic_epi32(hi0, w, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
      w = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm512_storeu_si512(words + c, x);
    _mm512_storeu_si512(words + kRow + c, y);
    _mm512_storeu_si512(words + 2 * kRow + c, z);
    _mm512_storeu_si512(words + 3 * kRow + c, w);
  }
}

enum class NoiseIsa { kPortable, kAvx2, kAvx512 };

NoiseIsa detect_noise_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return NoiseIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2")) return NoiseIsa::kAvx2;
  return NoiseIsa::kPortable;
}

#endif  // DDPM_X86_DISPATCH

}  // namespace

void philox_normal_block(const NoiseKey& key, int64_t block, float* buf) {
  alignas(64) uint32_t words[kNoiseBlockSize];
  const uint64_t first = static_cast<uint64_t>(block) * kRow;
#if defined(DDPM_X86_DISPATCH)
  static const NoiseIsa isa = detect_noise_isa();
  switch (isa) {
    case NoiseIsa::kAvx512:
      philox_rows_avx512(key, first, words);
      box_muller_rows_avx512(words, buf);
      return;
    case NoiseIsa::kAvx2:
      philox_rows_avx2(key, first, words);
      box_muller_rows(words, buf);
      return;
    case NoiseIsa::kPortable:
      break;
  }
#endif
  philox_rows_portable(key, first, words);
  box_muller_rows(words, buf);
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
  cpu::for_each_noise_run(1, p.numel, p.key,
                          [&](int64_t, int64_t i0, int64_t i1, const float* z) {
                            store_run(z, p.out + i0, i1 - i0);
                          });
}

template void philox_normal_cpu<float>(const PhiloxNormalParams<float>&);
template void philox_normal_cpu<double>(const PhiloxNormalParams<double>&);
template void philox_normal_cpu<Half>(const PhiloxNormalParams<Half>&);
template void philox_normal_cpu<BFloat16>(const PhiloxNormalParams<BFloat16>&);

}  // namespace ddpm
