// In-kernel noise (csrc/ddpm/philox.h): Random123's known answers, the
// transform's accuracy against libm, and the operator (whichever ISA path
// the CPU dispatches to: AVX-512, AVX2 or baseline) against the header's
// scalar code compiled here for baseline x86-64, where its fused
// multiply-adds are libm's fmaf: the same bits, which is what CUDA's _rn
// arithmetic also gives.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "ddpm/philox.h"
#include "ddpm_ops.h"

namespace {

TEST(Philox, Random123KnownAnswers) {
  struct Case {
    ddpm::Philox4 ctr;
    uint32_t k0, k1;
    ddpm::Philox4 want;
  };
  const Case cases[] = {
      {{0, 0, 0, 0}, 0, 0, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
      {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu,
       {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
      {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u,
       {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
  };
  for (const Case& c : cases) {
    const ddpm::Philox4 got = ddpm::philox4x32_10(c.ctr, c.k0, c.k1);
    EXPECT_EQ(got.x, c.want.x);
    EXPECT_EQ(got.y, c.want.y);
    EXPECT_EQ(got.z, c.want.z);
    EXPECT_EQ(got.w, c.want.w);
  }
}

TEST(Philox, TransformAccuracy) {
  // the angle's cos and sin and -2 log u within a few float ulps of libm in
  // double; the angle pi*(q/2 + f) recomputed here from the integer
  for (uint64_t i = 0; i < (1ull << 32); i += 21473ull) {
    const uint32_t b = static_cast<uint32_t>(i);
    const uint32_t c = b + 0x20000000u;
    const double f = static_cast<double>(static_cast<float>(
                         static_cast<int32_t>(c & 0x3FFFFFFFu) - 0x20000000)) *
                     std::ldexp(1.0, -31);
    const double theta = M_PI * (static_cast<double>(c >> 30) / 2.0 + f);
    const ddpm::SinCos sc = ddpm::sincos_quadrant(b);
    EXPECT_NEAR(sc.sin, std::sin(theta), 2.5e-7) << b;
    EXPECT_NEAR(sc.cos, std::cos(theta), 2.5e-7) << b;
  }
  for (int e = -32; e <= 0; ++e) {
    for (int j = 0; j < 1000; ++j) {
      const float u = std::ldexp(1.0f + j / 1000.0f, e - 1);
      if (u > 1.0f) continue;
      const double want = -2.0 * std::log(static_cast<double>(u));
      EXPECT_NEAR(ddpm::minus_two_log(u), want, 4e-7 * want + 1e-12) << u;
    }
  }
  const ddpm::NormalPair extreme = ddpm::box_muller(0u, 0u);  // u = 2^-32, angle 0
  EXPECT_NEAR(extreme.first, std::sqrt(64.0 * std::log(2.0)), 1e-5);
  EXPECT_EQ(extreme.second, 0.0f);
}

TEST(Philox, OperatorMatchesHeaderBitForBit) {
  const ddpm::NoiseKey keys[] = {{0, 0}, {123456789, 40}, {~0ull, 1ull << 36}};
  for (const ddpm::NoiseKey& key : keys) {
    const torch::Tensor z = ddpm::philox_normal(torch::empty({3, 5001}),
                                                static_cast<int64_t>(key.seed),
                                                static_cast<int64_t>(key.offset));
    const float* data = z.data_ptr<float>();
    for (int64_t e = 0; e < z.numel(); ++e) {
      const float want = ddpm::normal_for_element(key, e);
      ASSERT_EQ(ddpm::float_to_bits(data[e]), ddpm::float_to_bits(want))
          << "element " << e << ": " << data[e] << " vs " << want;
    }
  }
}

TEST(Philox, StepsDrawThatNoise) {
  const int64_t T = 10;
  const auto betas = torch::linspace(1e-4, 0.2, T, torch::kFloat64);
  const auto abar = torch::cumprod(1 - betas, 0);
  const auto abar_prev = torch::cat({torch::ones({1}, torch::kFloat64), abar.slice(0, 0, T - 1)});
  const auto c1 = betas * abar_prev.sqrt() / (1 - abar);
  const auto c2 = (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar);
  const auto logvar = (betas * (1 - abar_prev) / (1 - abar)).clamp_min(1e-20).log();
  const auto x = torch::randn({4, 3, 7, 9});
  const auto eps = torch::randn({4, 3, 7, 9});
  const auto t = torch::tensor({0, 3, 5, 9}, torch::kLong);
  auto got = ddpm::p_sample_philox(eps, x, t, 7, 12, (1 / abar).sqrt(), (1 / abar - 1).sqrt(),
                                   c1, c2, logvar, betas);
  auto want = ddpm::p_sample(eps, x, t, ddpm::philox_normal(x, 7, 12), (1 / abar).sqrt(),
                             (1 / abar - 1).sqrt(), c1, c2, logvar, betas);
  EXPECT_TRUE(torch::equal(std::get<0>(got), std::get<0>(want)));
  EXPECT_TRUE(torch::equal(std::get<1>(got), std::get<1>(want)));
  EXPECT_THROW(ddpm::philox_normal(x, 0, 6), c10::Error);

  // the sample-only overloads: the same sample, written in place
  auto x_inout = x.clone();
  ddpm::p_sample_philox_out(x_inout, eps, x_inout, t, 7, 12, (1 / abar).sqrt(),
                            (1 / abar - 1).sqrt(), c1, c2, logvar, betas);
  EXPECT_TRUE(torch::equal(x_inout, std::get<0>(got)));
  const auto ddim_got = ddpm::ddim_sample_philox(
      eps, x, t, 7, 12, (1 / abar).sqrt(), (1 / abar - 1).sqrt(), c1, c2, abar,
      abar_prev, 1.0);
  auto sample = torch::empty_like(x);
  ddpm::ddim_sample_philox_out(sample, eps, x, t, 7, 12, (1 / abar).sqrt(),
                               (1 / abar - 1).sqrt(), c1, c2, abar, abar_prev,
                               1.0);
  EXPECT_TRUE(torch::equal(sample, std::get<0>(ddim_got)));
}

}  // namespace
