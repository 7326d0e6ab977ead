// The torch-free 16-bit conversions of csrc/ddpm/common.h against c10's,
// bit for bit over every 16-bit pattern and a sweep of float inputs.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "ddpm/common.h"
#include "ddpm/elementwise.h"

namespace {

bool same_float(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || ddpm::float_to_bits(a) == ddpm::float_to_bits(b);
}

TEST(HalfConversions, EveryHalfToFloat) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float ours = ddpm::half_bits_to_float(static_cast<uint16_t>(bits));
    const float theirs = static_cast<float>(c10::Half(static_cast<uint16_t>(bits), c10::Half::from_bits()));
    ASSERT_TRUE(same_float(ours, theirs)) << "half bits " << bits;
    const float ours_bf = ddpm::bfloat16_bits_to_float(static_cast<uint16_t>(bits));
    const float theirs_bf = static_cast<float>(c10::BFloat16(static_cast<uint16_t>(bits), c10::BFloat16::from_bits()));
    ASSERT_TRUE(same_float(ours_bf, theirs_bf)) << "bfloat16 bits " << bits;
  }
}

TEST(HalfConversions, FloatToHalfRoundsLikeC10) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<uint32_t> any_bits;
  for (int i = 0; i < 2000000; ++i) {
    // random bit patterns cover NaN, inf, subnormals, ties and overflow
    const float f = ddpm::bits_to_float(any_bits(rng));
    const uint16_t ours = ddpm::float_to_half_bits(f);
    const c10::Half theirs(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(ddpm::half_bits_to_float(ours)));
    } else {
      ASSERT_EQ(ours, theirs.x) << "float " << f;
    }
    const uint16_t ours_bf = ddpm::float_to_bfloat16_bits(f);
    const c10::BFloat16 theirs_bf(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(ddpm::bfloat16_bits_to_float(ours_bf)));
    } else {
      ASSERT_EQ(ours_bf, theirs_bf.x) << "float " << f;
    }
  }
}

}  // namespace

namespace {

// The vectorizable expf of the learned-variance path against libm.
TEST(ExpVectorizable, WithinTwoUlpOfLibm) {
  for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
    const float ours = ddpm::exp_vectorizable(x);
    const float theirs = std::exp(x);
    const float ulp = std::nextafter(theirs, INFINITY) - theirs;
    ASSERT_LE(std::fabs(ours - theirs), 2 * ulp) << "x = " << x;
  }
  EXPECT_EQ(ddpm::exp_vectorizable(-100.0f), 0.0f);
  EXPECT_TRUE(std::isinf(ddpm::exp_vectorizable(100.0f)));
}

}  // namespace
