// Gaussian noise generated inside the kernels: Philox-4x32-10 and the
// Box-Muller transform, bit for bit the same on the CPU and on CUDA.
//
// Keying (curand's layout, so a (seed, offset) pair means what it means to
// PyTorch's own Philox users):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (offset/4 as 64 bits, subsequence as 64 bits)
// offset counts 32-bit draws per subsequence and is a multiple of 4; one call
// of an operator uses one 128-bit output per subsequence, so a generator's
// offset advances by 4 per call.
//
// Element e of a call's output (its flat index in the [batch, sample_numel]
// data) takes lane e/256 % 4 of the output of subsequence
//   (e / 1024) * 256 + e % 256,
// i.e. a block of 1024 elements is four runs of 256, one per output lane.
// That is what makes the noise of element e depend on (seed, offset, e) only:
// a CUDA block of 256 threads draws one output per thread and writes four
// coalesced rows; a CPU loop draws 256 outputs into four contiguous rows of a
// 1024-float buffer. Neither thread count, grid size nor vector width enters.
//
// The transform: lanes (0, 1) and (2, 3) are pairs (a, b) of 32-bit integers;
//   u = float(a >> 1) * 2^-31 + 2^-32     in [2^-32, 1]
//   v = float(int32(b)) * 2^-31           in [-1, 1)
//   r = sqrt(-2 log u);  first = r cos(pi v),  second = r sin(pi v)
// log and sincospi are polynomials below, evaluated with correctly rounded
// +, -, *, /, sqrt only and no fused multiply-adds (CUDA: the _rn intrinsics,
// which the compiler never contracts; CPU: built with -ffp-contract=off), so
// every IEEE-conforming backend gets the same bits. The largest |value| is
// sqrt(64 ln 2) = 6.66, as with curand's Box-Muller on 32-bit uniforms.
//
// Noise is computed in float32 for every data dtype; float64 data see those
// values exactly, float16/bfloat16 data round them once with the result.
#pragma once

#include <cstdint>

#include "common.h"

// Always inlined on the host: the CPU loops vectorize only if the whole
// transform is inlined into them (GCC otherwise keeps a call in the Haswell clone).
#if defined(__CUDACC__) || !defined(__GNUC__)
#define DDPM_NOISE_HD DDPM_HD
#else
#define DDPM_NOISE_HD inline __attribute__((always_inline))
#endif

namespace ddpm {

// What an operator call needs to generate its noise.
struct NoiseKey {
  uint64_t seed;
  uint64_t offset;  // a multiple of 4
};

constexpr int kNoiseLanes = 4;            // normals per Philox output
constexpr int kNoiseRowLength = 256;      // subsequences per block
constexpr int64_t kNoiseBlockSize = 1024;  // elements per block

struct Philox4 {
  uint32_t x, y, z, w;
};

DDPM_NOISE_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi,
                            uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  lo = static_cast<uint32_t>(product);
  hi = static_cast<uint32_t>(product >> 32);
#endif
}

// Philox-4x32-10 (Salmon et al., SC'11): ten rounds, the key bumped by the
// Weyl constants between rounds.
DDPM_NOISE_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.x, hi0, lo0);
    philox_mulhilo(kMul1, ctr.z, hi1, lo1);
    ctr = {hi1 ^ ctr.y ^ k0, lo1, hi0 ^ ctr.w ^ k1, lo0};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return ctr;
}

// The Philox output of one subsequence of a call.
DDPM_NOISE_HD Philox4 philox_for_subsequence(const NoiseKey& key,
                                       uint64_t subsequence) {
  const uint64_t block = key.offset >> 2;
  const Philox4 ctr{static_cast<uint32_t>(block),
                    static_cast<uint32_t>(block >> 32),
                    static_cast<uint32_t>(subsequence),
                    static_cast<uint32_t>(subsequence >> 32)};
  return philox4x32_10(ctr, static_cast<uint32_t>(key.seed),
                       static_cast<uint32_t>(key.seed >> 32));
}

// Correctly rounded float operations that are never fused with each other.
DDPM_NOISE_HD float fmul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DDPM_NOISE_HD float fadd_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DDPM_NOISE_HD float fsub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
DDPM_NOISE_HD float fdiv_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
DDPM_NOISE_HD float fsqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return __builtin_sqrtf(a);
#endif
}
DDPM_NOISE_HD float int_to_float_rn(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int2float_rn(i);
#else
  return static_cast<float>(i);
#endif
}

// -2*log(u) for u in [2^-32, 1] (normal floats). u = m*2^e with m in
// [sqrt(1/2), sqrt(2)); log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172,
// by its odd series to s^9 (truncation < 2^-27 relative).
DDPM_NOISE_HD float minus_two_log(float u) {
  const uint32_t bits = float_to_bits(u);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  float m = bits_to_float((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool above = m > 0x1.6a09e6p+0f;                          // sqrt(2)
  m = above ? fmul_rn(m, 0.5f) : m;
  e += above ? 1 : 0;
  const float s = fdiv_rn(fsub_rn(m, 1.0f), fadd_rn(m, 1.0f));  // m-1 exact
  const float s2 = fmul_rn(s, s);
  float p = 0x1.c71c72p-3f;                       // 2/9
  p = fadd_rn(fmul_rn(p, s2), 0x1.24924ap-2f);    // 2/7
  p = fadd_rn(fmul_rn(p, s2), 0x1.99999ap-2f);    // 2/5
  p = fadd_rn(fmul_rn(p, s2), 0x1.555556p-1f);    // 2/3
  const float log_m = fadd_rn(fmul_rn(s, 2.0f), fmul_rn(fmul_rn(s, s2), p));
  // e*ln2 in two parts: ln2_hi has 17 significant bits, so e*ln2_hi is exact
  const float ef = int_to_float_rn(e);
  const float log_u = fadd_rn(fmul_rn(ef, 0x1.62e4p-1f),
                              fadd_rn(fmul_rn(ef, 0x1.7f7d1cp-20f), log_m));
  return fmul_rn(log_u, -2.0f);
}

struct SinCos {
  float sin, cos;
};

// sin(pi*v) and cos(pi*v) for v in [-1, 1]. v = n/2 + f with n an integer
// and |f| <= 1/4, both exact; Taylor polynomials of sin(pi f), cos(pi f)
// (truncation < 1e-9), then the quadrant n mod 4 by swaps and signs.
DDPM_NOISE_HD SinCos sincospi(float v) {
  // round(2v) without a library call: adding 1.5*2^23 rounds to an integer
  const float n = fsub_rn(fadd_rn(fmul_rn(v, 2.0f), 12582912.0f), 12582912.0f);
  const float f = fsub_rn(v, fmul_rn(n, 0.5f));
  const float f2 = fmul_rn(f, f);
  float ps = 0x1.507834p-4f;                     //  pi^9/9!
  ps = fadd_rn(fmul_rn(ps, f2), -0x1.32d2ccp-1f);  // -pi^7/7!
  ps = fadd_rn(fmul_rn(ps, f2), 0x1.466bc6p+1f);   //  pi^5/5!
  ps = fadd_rn(fmul_rn(ps, f2), -0x1.4abbcep+2f);  // -pi^3/3!
  ps = fadd_rn(fmul_rn(ps, f2), 0x1.921fb6p+1f);   //  pi
  const float sin_f = fmul_rn(ps, f);
  float pc = -0x1.a6d1f2p-6f;                      // -pi^10/10!
  pc = fadd_rn(fmul_rn(pc, f2), 0x1.e1f506p-3f);   //  pi^8/8!
  pc = fadd_rn(fmul_rn(pc, f2), -0x1.55d3c8p+0f);  // -pi^6/6!
  pc = fadd_rn(fmul_rn(pc, f2), 0x1.03c1f0p+2f);   //  pi^4/4!
  pc = fadd_rn(fmul_rn(pc, f2), -0x1.3bd3ccp+2f);  // -pi^2/2!
  const float cos_f = fadd_rn(fmul_rn(pc, f2), 1.0f);
  const uint32_t quadrant = static_cast<uint32_t>(static_cast<int32_t>(n)) & 3u;
  const bool swap = (quadrant & 1u) != 0;
  const float s = swap ? cos_f : sin_f;
  const float c = swap ? sin_f : cos_f;
  // negation is exact: flip the sign bit
  const uint32_t sin_sign = (quadrant & 2u) << 30;
  const uint32_t cos_sign = ((quadrant + 1u) & 2u) << 30;
  return {bits_to_float(float_to_bits(s) ^ sin_sign),
          bits_to_float(float_to_bits(c) ^ cos_sign)};
}

struct NormalPair {
  float first, second;
};

// Box-Muller: two independent N(0, 1) values from two 32-bit integers.
DDPM_NOISE_HD NormalPair box_muller(uint32_t a, uint32_t b) {
  const float u = fadd_rn(
      fmul_rn(int_to_float_rn(static_cast<int32_t>(a >> 1)), 0x1.0p-31f),
      0x1.0p-32f);
  const float v = fmul_rn(int_to_float_rn(static_cast<int32_t>(b)), 0x1.0p-31f);
  const float r = fsqrt_rn(minus_two_log(u));
  const SinCos sc = sincospi(v);
  return {fmul_rn(r, sc.cos), fmul_rn(r, sc.sin)};
}

// The four normals of one subsequence, lane l going to element
// block*1024 + l*256 + (subsequence % 256).
struct Normal4 {
  float lane[kNoiseLanes];
};

DDPM_NOISE_HD Normal4 normals_for_subsequence(const NoiseKey& key,
                                        uint64_t subsequence) {
  const Philox4 bits = philox_for_subsequence(key, subsequence);
  const NormalPair p01 = box_muller(bits.x, bits.y);
  const NormalPair p23 = box_muller(bits.z, bits.w);
  return {{p01.first, p01.second, p23.first, p23.second}};
}

// The normal of flat element e alone (tests and odd corners; kernels draw
// four at a time).
DDPM_NOISE_HD float normal_for_element(const NoiseKey& key, int64_t e) {
  const int64_t block = e / kNoiseBlockSize;
  const int64_t within = e - block * kNoiseBlockSize;
  const Normal4 n = normals_for_subsequence(
      key, static_cast<uint64_t>(block * kNoiseRowLength +
                                 within % kNoiseRowLength));
  return n.lane[within / kNoiseRowLength];
}

}  // namespace ddpm
