// Portable scalar plumbing shared by the CPU and CUDA kernels.
//
// Kernels see 16-bit floats only as storage (Half, BFloat16: the same bits as
// at::Half / at::BFloat16 / __half / __nv_bfloat16). They load every element
// into a wider compute type (acc_t), do all arithmetic there, and round once on
// store. Nothing here includes a PyTorch header, so nvcc can compile the
// kernels on a machine without a CUDA build of torch.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__CUDACC__)
#define DDPM_HD __host__ __device__ __forceinline__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#elif defined(__GNUC__)
// Forced on the host as on the device: the CPU loops vectorize only with the
// per-element math inlined, and GCC's size heuristics stop inlining once a
// loop is compiled in several versions (the backward's absent-gradient ones).
#define DDPM_HD inline __attribute__((always_inline))
#else
#define DDPM_HD inline
#endif

namespace ddpm {

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

DDPM_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}

DDPM_HD float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

// IEEE binary16 -> binary32, exact for every input (normals, subnormals,
// infinities, NaN). Branch-free so the CPU loops still vectorize: subnormals
// are rebuilt with a magic-number subtraction, normals by rebiasing the
// exponent and rescaling.
DDPM_HD float half_bits_to_float(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;  // drops the sign
  const float normalized =
      bits_to_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized =
      bits_to_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t magnitude = two_w < (1u << 27) ? float_to_bits(denormalized)
                                                : float_to_bits(normalized);
  return bits_to_float(sign | magnitude);
}

// binary32 -> binary16, round to nearest even, overflow to infinity, NaN kept
// as a quiet NaN. The rounding is done by the FPU: adding a power of two whose
// exponent aligns the kept mantissa bits with the float's last place.
DDPM_HD uint16_t float_to_half_bits(float f) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  const float abs_f = bits_to_float(float_to_bits(f) & 0x7FFFFFFFu);
  float base = (abs_f * scale_to_inf) * scale_to_zero;
  const uint32_t w = float_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = bits_to_float((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = float_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) |
                               (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

DDPM_HD float bfloat16_bits_to_float(uint16_t b) {
  return bits_to_float(static_cast<uint32_t>(b) << 16);
}

// Round to nearest even, as c10::BFloat16 does; NaN becomes the quiet NaN 0x7FC0.
DDPM_HD uint16_t float_to_bfloat16_bits(float f) {
  const uint32_t u = float_to_bits(f);
  const uint32_t rounding_bias = ((u >> 16) & 1u) + 0x7FFFu;
  const uint16_t rounded = static_cast<uint16_t>((u + rounding_bias) >> 16);
  return f != f ? static_cast<uint16_t>(0x7FC0u) : rounded;
}

// Compute type: float for float and the 16-bit types, double for double.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};
template <typename scalar_t>
using acc_t = typename AccType<scalar_t>::type;

DDPM_HD float load(const float* p) { return *p; }
DDPM_HD double load(const double* p) { return *p; }
DDPM_HD float load(const Half* p) {
#if defined(__CUDA_ARCH__)
  return __half2float(*reinterpret_cast<const __half*>(p));
#else
  return half_bits_to_float(p->bits);
#endif
}
DDPM_HD float load(const BFloat16* p) {
#if defined(__CUDA_ARCH__)
  return __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(p));
#else
  return bfloat16_bits_to_float(p->bits);
#endif
}

DDPM_HD void store(float* p, float v) { *p = v; }
DDPM_HD void store(double* p, double v) { *p = v; }
DDPM_HD void store(Half* p, float v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<__half*>(p) = __float2half_rn(v);
#else
  p->bits = float_to_half_bits(v);
#endif
}
DDPM_HD void store(BFloat16* p, float v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
#else
  p->bits = float_to_bfloat16_bits(v);
#endif
}

// NaN-propagating clamp, matching torch.clamp: a NaN input stays NaN.
template <typename T>
DDPM_HD T clamp_propagate_nan(T v, T lo, T hi) {
  v = v < lo ? lo : v;
  return hi < v ? hi : v;
}

}  // namespace ddpm
