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
//   theta = pi (q/2 + f): b's top two bits (after adding 2^29) give the
//           quadrant q, the other 30 the offset f in [-1/4, 1/4)
//   r = sqrt(-2 log u);  first = r cos(theta),  second = r sin(theta)
// log, sin and cos are polynomials below, evaluated with correctly rounded
// +, *, /, sqrt and fused multiply-adds only, each written out (the compiler
// contracts nothing), so every IEEE-conforming backend gets the same bits.
// The largest |value| is sqrt(64 ln 2) = 6.66, as with curand's Box-Muller
// on 32-bit uniforms.
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

// What an operator call needs to generate its noise: (seed, offset), or
// where offset_on_device is set (a CUDA graph's capture of a generator's
// state) the offset read from device memory when the kernel runs, so that
// each replay draws anew: offset = *offset_on_device + offset (the call's
// place within the graph), and seed = *seed_on_device where that is set too
// (PyTorch releases that keep a captured seed in device memory; older ones
// fix it at capture, in seed), as PyTorch's own Philox kernels read theirs.
struct NoiseKey {
  uint64_t seed;
  uint64_t offset;  // a multiple of 4
  const int64_t* seed_on_device = nullptr;
  const int64_t* offset_on_device = nullptr;

  // Read on the device when the kernel runs (a captured generator's key).
  DDPM_HD bool on_device() const { return offset_on_device != nullptr; }
  // The (seed, offset) to draw with; read where the kernel runs.
  DDPM_HD NoiseKey resolved() const {
    if (!on_device()) return *this;
    return {seed_on_device != nullptr ? static_cast<uint64_t>(*seed_on_device) : seed,
            static_cast<uint64_t>(*offset_on_device) + offset};
  }
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

// Correctly rounded float operations. Contraction is never left to the
// compiler (CUDA: the _rn intrinsics, which it never fuses; CPU: built with
// -ffp-contract=off); where a fused multiply-add is wanted it is written as
// ffma_rn, which every backend rounds once (CUDA __fmaf_rn, the CPU's FMA
// instruction, or libm's correctly rounded fmaf where the CPU has none).
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
DDPM_NOISE_HD float ffma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return __builtin_fmaf(a, b, c);
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

// The transform's constants, shared with the CPU's vector code
// (csrc/cpu/normal_cpu.cpp), which must round exactly as the code below.
namespace noise_const {
constexpr uint32_t kSqrt2Mantissa = 0x3504F3u;  // mantissa bits of sqrt(2)
// -2 log m = w + w^3 (P0 + P1 w^2 + P2 w^4), w = 4(1-m)/(1+m)
// (= -4 atanh((m-1)/(m+1)); near-minimax for |w| <= 0.687)
constexpr float kLogP0 = 0x1.55557ap-6f;
constexpr float kLogP1 = 0x1.995ebap-11f;
constexpr float kLogP2 = 0x1.31e2f8p-15f;
constexpr float kMinusTwoLn2Hi = -0x1.62e43p+0f;  // -2 ln 2 = hi + lo
constexpr float kMinusTwoLn2Lo = 0x1.05c61p-28f;
// sin(pi f) = f (S0 + S1 f^2 + S2 f^4 + S3 f^6),
// cos(pi f) = 1 + f^2 (C0 + C1 f^2 + C2 f^4 + C3 f^6), near-minimax on |f| <= 1/4
constexpr float kSin0 = 0x1.921fb6p+1f;
constexpr float kSin1 = -0x1.4abbbap+2f;
constexpr float kSin2 = 0x1.465ec6p+1f;
constexpr float kSin3 = -0x1.2d9bb6p-1f;
constexpr float kCos0 = -0x1.3bd3ccp+2f;
constexpr float kCos1 = 0x1.03c1dep+2f;
constexpr float kCos2 = -0x1.55c664p+0f;
constexpr float kCos3 = 0x1.d9f7b8p-3f;
}  // namespace noise_const

// -2*log(u) for u in [2^-32, 1] (normal floats). u = m*2^e with m in
// [sqrt(1/2), sqrt(2)); 4(1-m) and 1+m are exact, one division, a degree-3
// polynomial in w^2 and e*(-2 ln 2) in two parts. Within 2 float ulps.
DDPM_NOISE_HD float minus_two_log(float u) {
  using namespace noise_const;
  const uint32_t bits = float_to_bits(u);
  const uint32_t mantissa = bits & 0x007FFFFFu;
  const bool above = mantissa > kSqrt2Mantissa;
  const float m = bits_to_float(mantissa | (above ? 0x3F000000u : 0x3F800000u));
  const int32_t e = static_cast<int32_t>(bits >> 23) - 127 + (above ? 1 : 0);
  const float w = fdiv_rn(ffma_rn(m, -4.0f, 4.0f), fadd_rn(m, 1.0f));
  const float w2 = fmul_rn(w, w);
  const float p = ffma_rn(ffma_rn(kLogP2, w2, kLogP1), w2, kLogP0);
  const float log_m = ffma_rn(fmul_rn(w, w2), p, w);
  const float ef = int_to_float_rn(e);
  return ffma_rn(ef, kMinusTwoLn2Hi, ffma_rn(ef, kMinusTwoLn2Lo, log_m));
}

struct SinCos {
  float sin, cos;
};

// cos and sin of the angle pi*(q/2 + f) that a 32-bit integer b encodes:
// with c = b + 2^29, q = c >> 30 is the quadrant and
// f = (c mod 2^30 - 2^29) * 2^-31 in [-1/4, 1/4) (as a float, rounded once).
// The polynomials give sin(pi f), cos(pi f) within 2 ulps; the quadrant is a
// swap and two sign flips (exact).
DDPM_NOISE_HD SinCos sincos_quadrant(uint32_t b) {
  using namespace noise_const;
  const uint32_t c = b + 0x20000000u;
  const int32_t low = static_cast<int32_t>(c & 0x3FFFFFFFu) - 0x20000000;
  const float f = fmul_rn(int_to_float_rn(low), 0x1.0p-31f);
  const float f2 = fmul_rn(f, f);
  const float sin_f = fmul_rn(
      ffma_rn(ffma_rn(ffma_rn(kSin3, f2, kSin2), f2, kSin1), f2, kSin0), f);
  const float cos_f = ffma_rn(
      ffma_rn(ffma_rn(ffma_rn(kCos3, f2, kCos2), f2, kCos1), f2, kCos0), f2,
      1.0f);
  const bool swap = (c & 0x40000000u) != 0;  // odd quadrant
  const float s = swap ? cos_f : sin_f;
  const float co = swap ? sin_f : cos_f;
  const uint32_t sin_sign = c & 0x80000000u;                  // q in {2, 3}
  const uint32_t cos_sign = (c + 0x40000000u) & 0x80000000u;  // q in {1, 2}
  return {bits_to_float(float_to_bits(s) ^ sin_sign),
          bits_to_float(float_to_bits(co) ^ cos_sign)};
}

struct NormalPair {
  float first, second;
};

// The uniform in (0, 1] that Box-Muller takes the log of:
// (a >> 1) * 2^-31 + 2^-32, the product exact, so the sum is rounded once.
DDPM_NOISE_HD float box_muller_uniform(uint32_t a) {
  return ffma_rn(int_to_float_rn(static_cast<int32_t>(a >> 1)), 0x1.0p-31f,
                 0x1.0p-32f);
}

// Box-Muller: two independent N(0, 1) values from two 32-bit integers.
DDPM_NOISE_HD NormalPair box_muller(uint32_t a, uint32_t b) {
  const float r = fsqrt_rn(minus_two_log(box_muller_uniform(a)));
  const SinCos sc = sincos_quadrant(b);
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
