// Philox normals on the CPU: the whole-block generators of CPUs without
// AVX-512 (that one is in philox_avx512.h), the choice among them, and the
// operator that only writes the noise (philox_normal).
//   buf: [1024] normals, lane l of subsequence block*256 + c at
//        buf[l*256 + c] (ddpm/philox.h); words: [4, 256] Philox outputs,
//        rows x, y, z, w
//   philox_normal: out[e] = the normal of element e for (seed, offset)
//
// AVX2: Philox intrinsics, the header's Box-Muller compiled for Haswell;
// otherwise the header as written. All files are built with
// -ffp-contract=off and the header writes every fused multiply-add out, so
// every path (and CUDA) rounds alike.
#include <cstdlib>
#include <cstring>

#include "ddpm/kernels.h"
#include "noise.h"

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

NoiseIsa detect_noise_isa() {
  __builtin_cpu_init();
  NoiseIsa isa = NoiseIsa::kPortable;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    isa = NoiseIsa::kAvx512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c")) {
    isa = NoiseIsa::kAvx2;
  }
  // TORCH_DDPM_CPU_CAPABILITY=avx2|default caps the choice, as ATen's
  // ATEN_CPU_CAPABILITY does for its kernels: the tests use it to run every
  // path on one machine (they must give the same bits).
  const char* cap = std::getenv("TORCH_DDPM_CPU_CAPABILITY");
  if (cap != nullptr && std::strcmp(cap, "avx2") == 0 && isa == NoiseIsa::kAvx512) {
    isa = NoiseIsa::kAvx2;
  } else if (cap != nullptr && std::strcmp(cap, "default") == 0) {
    isa = NoiseIsa::kPortable;
  }
  return isa;
}

#endif  // DDPM_X86_DISPATCH

}  // namespace

NoiseIsa noise_isa() {
#if defined(DDPM_X86_DISPATCH)
  static const NoiseIsa isa = detect_noise_isa();
  return isa;
#else
  return NoiseIsa::kPortable;
#endif
}

void philox_normal_block(const NoiseKey& key, int64_t block, float* buf) {
  alignas(64) uint32_t words[kNoiseBlockSize];
  const uint64_t first = static_cast<uint64_t>(block) * kRow;
#if defined(DDPM_X86_DISPATCH)
  if (noise_isa() != NoiseIsa::kPortable) {
    philox_rows_avx2(key, first, words);
    box_muller_rows(words, buf);
    return;
  }
#endif
  philox_rows_portable(key, first, words);
  box_muller_rows(words, buf);
}

}  // namespace cpu

const char* cpu_noise_generator() {
  switch (cpu::noise_isa()) {
    case cpu::NoiseIsa::kAvx512:
      return "avx512";
    case cpu::NoiseIsa::kAvx2:
      return "avx2";
    default:
      return "default";
  }
}

namespace cpu {
// Versions of one function with the targets of DDPM_CPU_CLONES: the same
// dispatcher and the same rule pick one (called in this file, where every
// version is visible).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target(DDPM_CLONE_AVX512))) const char* loop_clone_version() {
  return DDPM_CLONE_AVX512;
}
__attribute__((target(DDPM_CLONE_AVX2))) const char* loop_clone_version() {
  return DDPM_CLONE_AVX2;
}
__attribute__((target("default"))) const char* loop_clone_version() {
  return "default";
}
#else
const char* loop_clone_version() { return "default"; }
#endif
}  // namespace cpu

const char* cpu_loop_clone() { return cpu::loop_clone_version(); }

template <typename S>
int64_t cpu_kernel(const PhiloxNormalParams<S>& p) {
  cpu::for_each_noise_run(
      1, p.numel, p.key.resolved(),
      [&](int64_t, int64_t i0, int64_t i1, const float* z) DDPM_ALWAYS_INLINE {
        S* __restrict out = p.out + i0;
        for (int64_t i = 0; i < i1 - i0; ++i) {
          store(out + i, static_cast<acc_t<S>>(z[i]));
        }
      },
      [&](int64_t, int64_t i0, int64_t i1, cpu::NoisePrefetch& next) {
        next.add(p.out + i0, i1 - i0, true);
      });
  return -1;
}

template int64_t cpu_kernel<float>(const PhiloxNormalParams<float>&);
template int64_t cpu_kernel<double>(const PhiloxNormalParams<double>&);
template int64_t cpu_kernel<Half>(const PhiloxNormalParams<Half>&);
template int64_t cpu_kernel<BFloat16>(const PhiloxNormalParams<BFloat16>&);

}  // namespace ddpm
