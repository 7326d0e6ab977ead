// The ddpm operators from C++ through the dispatcher, against an ATen float64
// reference; autograd from C++; TorchScript visibility; bad inputs.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <limits>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/torch.h>

#include <string>

#include "ddpm_ops.h"

namespace {

struct Tables {
  at::Tensor betas, alphas_cumprod, sqrt_alphas_cumprod,
      sqrt_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
      sqrt_recipm1_alphas_cumprod, posterior_variance,
      posterior_log_variance_clipped, posterior_mean_coef1,
      posterior_mean_coef2;
};

// The linear schedule and its tables in float64 (as torch_ddpm.schedules).
Tables make_tables(int64_t T) {
  const double scale = 1000.0 / static_cast<double>(T);
  Tables tb;
  tb.betas = at::linspace(scale * 1e-4, scale * 0.02, T, at::kDouble);
  const auto alphas = 1.0 - tb.betas;
  tb.alphas_cumprod = at::cumprod(alphas, 0);
  const auto prev = at::cat({at::ones({1}, at::kDouble),
                             tb.alphas_cumprod.slice(0, 0, T - 1)});
  tb.sqrt_alphas_cumprod = tb.alphas_cumprod.sqrt();
  tb.sqrt_one_minus_alphas_cumprod = (1.0 - tb.alphas_cumprod).sqrt();
  tb.sqrt_recip_alphas_cumprod = (1.0 / tb.alphas_cumprod).sqrt();
  tb.sqrt_recipm1_alphas_cumprod = (1.0 / tb.alphas_cumprod - 1.0).sqrt();
  tb.posterior_variance = tb.betas * (1.0 - prev) / (1.0 - tb.alphas_cumprod);
  tb.posterior_log_variance_clipped =
      at::cat({tb.posterior_variance.slice(0, 1, 2),
               tb.posterior_variance.slice(0, 1, T)})
          .log();
  tb.posterior_mean_coef1 =
      tb.betas * prev.sqrt() / (1.0 - tb.alphas_cumprod);
  tb.posterior_mean_coef2 =
      (1.0 - prev) * alphas.sqrt() / (1.0 - tb.alphas_cumprod);
  return tb;
}

// table[t] as [B, 1, ..., 1] float64
at::Tensor per_sample(const at::Tensor& table, const at::Tensor& t,
                      int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[0] = t.size(0);
  return table.index_select(0, t).view(shape);
}

std::tuple<at::Tensor, at::Tensor> p_sample_op(const Tables& tb,
                                               const at::Tensor& out,
                                               const at::Tensor& x,
                                               const at::Tensor& t,
                                               const at::Tensor& noise,
                                               const std::string& mean,
                                               const std::string& var,
                                               bool clip) {
  return ddpm::p_sample(out, x, t, noise, tb.sqrt_recip_alphas_cumprod,
                        tb.sqrt_recipm1_alphas_cumprod,
                        tb.posterior_mean_coef1, tb.posterior_mean_coef2,
                        tb.posterior_log_variance_clipped, tb.betas, mean, var,
                        clip);
}

void expect_close(const at::Tensor& got, const at::Tensor& expected,
                  double tol) {
  ASSERT_EQ(got.sizes(), expected.sizes());
  const double err = (got.to(at::kDouble) - expected).abs().max().item<double>();
  const double scale = 1.0 + expected.abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << "max abs error " << err;
}

double tolerance(at::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return 1e-12;
    case at::kFloat: return 1e-5;
    case at::kHalf: return 2e-3;
    default: return 1e-2;
  }
}

const int64_t kT = 1000;
const at::Tensor kTimesteps = at::tensor({0, 1, 500, 999, 37}, at::kLong);

class OpsByDtype : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(OpsByDtype, QSampleMatchesReference) {
  const auto dtype = GetParam();
  const Tables tb = make_tables(kT);
  const auto x0 = at::randn({5, 3, 4, 4}).to(dtype);
  const auto noise = at::randn({5, 3, 4, 4}).to(dtype);
  const auto out = ddpm::q_sample(x0, kTimesteps, noise, tb.sqrt_alphas_cumprod,
                                  tb.sqrt_one_minus_alphas_cumprod);
  EXPECT_EQ(out.scalar_type(), dtype);
  const auto expected =
      per_sample(tb.sqrt_alphas_cumprod, kTimesteps, 4) * x0.to(at::kDouble) +
      per_sample(tb.sqrt_one_minus_alphas_cumprod, kTimesteps, 4) *
          noise.to(at::kDouble);
  expect_close(out, expected, tolerance(dtype));
}

TEST_P(OpsByDtype, PosteriorMatchesReference) {
  const auto dtype = GetParam();
  const Tables tb = make_tables(kT);
  const auto x0 = at::randn({5, 6}).to(dtype);
  const auto xt = at::randn({5, 6}).to(dtype);
  const auto res = ddpm::posterior_mean_variance(
      x0, xt, kTimesteps, tb.posterior_mean_coef1, tb.posterior_mean_coef2,
      tb.posterior_variance, tb.posterior_log_variance_clipped);
  const auto expected =
      per_sample(tb.posterior_mean_coef1, kTimesteps, 2) * x0.to(at::kDouble) +
      per_sample(tb.posterior_mean_coef2, kTimesteps, 2) * xt.to(at::kDouble);
  expect_close(std::get<0>(res), expected, tolerance(dtype));
  expect_close(std::get<1>(res),
               per_sample(tb.posterior_variance, kTimesteps, 2).expand({5, 6}),
               tolerance(dtype));
}

TEST_P(OpsByDtype, PSampleEpsilonFixedSmallMatchesReference) {
  const auto dtype = GetParam();
  const Tables tb = make_tables(kT);
  const auto x = at::randn({5, 2, 3}).to(dtype);
  const auto eps = at::randn({5, 2, 3}).to(dtype);
  const auto noise = at::randn({5, 2, 3}).to(dtype);
  const auto res =
      p_sample_op(tb, eps, x, kTimesteps, noise, "epsilon", "fixed_small", true);
  const auto xd = x.to(at::kDouble);
  const auto pred =
      (per_sample(tb.sqrt_recip_alphas_cumprod, kTimesteps, 3) * xd -
       per_sample(tb.sqrt_recipm1_alphas_cumprod, kTimesteps, 3) *
           eps.to(at::kDouble))
          .clamp(-1, 1);
  const auto mean = per_sample(tb.posterior_mean_coef1, kTimesteps, 3) * pred +
                    per_sample(tb.posterior_mean_coef2, kTimesteps, 3) * xd;
  const auto nonzero = (kTimesteps != 0).to(at::kDouble).view({5, 1, 1});
  const auto sample =
      mean + nonzero *
                 (0.5 * per_sample(tb.posterior_log_variance_clipped,
                                   kTimesteps, 3))
                     .exp() *
                 noise.to(at::kDouble);
  expect_close(std::get<1>(res), pred, tolerance(dtype));
  expect_close(std::get<0>(res), sample, tolerance(dtype));
}

TEST_P(OpsByDtype, PSampleVLearnedRangeMatchesReference) {
  const auto dtype = GetParam();
  const Tables tb = make_tables(kT);
  const auto x = at::randn({5, 2, 3}).to(dtype);
  const auto v = at::randn({5, 2, 3});
  const auto frac_raw = at::rand({5, 2, 3}) * 2 - 1;
  const auto out = at::cat({v, frac_raw}, 1).to(dtype);
  const auto noise = at::randn({5, 2, 3}).to(dtype);
  const auto res =
      p_sample_op(tb, out, x, kTimesteps, noise, "v", "learned_range", false);
  const auto xd = x.to(at::kDouble);
  const auto abar = per_sample(tb.alphas_cumprod, kTimesteps, 3);
  const auto vd = out.slice(1, 0, 2).to(at::kDouble);
  const auto pred = abar.sqrt() * xd - (1 - abar).sqrt() * vd;
  const auto mean = per_sample(tb.posterior_mean_coef1, kTimesteps, 3) * pred +
                    per_sample(tb.posterior_mean_coef2, kTimesteps, 3) * xd;
  const auto frac = (out.slice(1, 2, 4).to(at::kDouble) + 1) / 2;
  const auto log_var =
      frac * per_sample(tb.betas, kTimesteps, 3).log() +
      (1 - frac) * per_sample(tb.posterior_log_variance_clipped, kTimesteps, 3);
  const auto nonzero = (kTimesteps != 0).to(at::kDouble).view({5, 1, 1});
  const auto sample =
      mean + nonzero * (0.5 * log_var).exp() * noise.to(at::kDouble);
  expect_close(std::get<1>(res), pred, tolerance(dtype));
  expect_close(std::get<0>(res), sample, tolerance(dtype));
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, OpsByDtype,
                         ::testing::Values(at::kFloat, at::kDouble, at::kHalf,
                                           at::kBFloat16));

TEST(Autograd, QSampleGradientsFromCpp) {
  const Tables tb = make_tables(kT);
  auto x0 = torch::randn({5, 3}, torch::kDouble).requires_grad_(true);
  auto noise = torch::randn({5, 3}, torch::kDouble).requires_grad_(true);
  auto out = ddpm::q_sample(x0, kTimesteps, noise, tb.sqrt_alphas_cumprod,
                            tb.sqrt_one_minus_alphas_cumprod);
  out.sum().backward();
  expect_close(x0.grad(),
               per_sample(tb.sqrt_alphas_cumprod, kTimesteps, 2).expand({5, 3}),
               1e-12);
  expect_close(noise.grad(),
               per_sample(tb.sqrt_one_minus_alphas_cumprod, kTimesteps, 2)
                   .expand({5, 3}),
               1e-12);
}

TEST(Autograd, PSampleGradientMatchesFiniteDifference) {
  const Tables tb = make_tables(kT);
  auto x = torch::randn({5, 2, 3}, torch::kDouble).requires_grad_(true);
  auto out = torch::randn({5, 4, 3}, torch::kDouble);
  out.slice(1, 2, 4).uniform_(-1, 1);
  out.requires_grad_(true);
  const auto noise = torch::randn({5, 2, 3}, torch::kDouble);
  auto loss = [&](const at::Tensor& o, const at::Tensor& xt) {
    auto r = p_sample_op(tb, o, xt, kTimesteps, noise, "epsilon",
                         "learned_range", false);
    return (std::get<0>(r) * 1.3 + std::get<1>(r) * 0.7).sum();
  };
  loss(out, x).backward();
  const double h = 1e-6;
  torch::NoGradGuard no_grad;
  for (int64_t i : {0, 7, 13, 29}) {
    auto plus = out.detach().clone();
    auto minus = out.detach().clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    const double fd =
        (loss(plus, x.detach()) - loss(minus, x.detach())).item<double>() /
        (2 * h);
    EXPECT_NEAR(out.grad().view(-1)[i].item<double>(), fd, 1e-5 * (1 + std::abs(fd)));
  }
}

TEST(SampleOut, WritesTheFunctionalSampleInPlace) {
  // The sample-only overloads from C++: bit for bit the functional step's
  // sample, written into the given tensor (x_t itself here) and returned.
  const Tables tb = make_tables(kT);
  const auto out = at::randn({5, 6, 4});  // learned_range: 2C channels
  const auto x = at::randn({5, 3, 4});
  const auto noise = at::randn({5, 3, 4});
  const auto want = std::get<0>(
      p_sample_op(tb, out, x, kTimesteps, noise, "v", "learned_range", true));
  at::Tensor x_inout = x.clone();
  at::Tensor& got = ddpm::p_sample_out(
      x_inout, out, x_inout, kTimesteps, noise, tb.sqrt_recip_alphas_cumprod,
      tb.sqrt_recipm1_alphas_cumprod, tb.posterior_mean_coef1,
      tb.posterior_mean_coef2, tb.posterior_log_variance_clipped, tb.betas,
      "v", "learned_range", true);
  EXPECT_EQ(&got, &x_inout);
  EXPECT_TRUE(at::equal(x_inout, want));

  const auto eps = at::randn({5, 3, 4});
  const auto prev = at::cat({at::ones({1}, at::kDouble),
                             tb.alphas_cumprod.slice(0, 0, kT - 1)});
  const auto ddim_want = std::get<0>(ddpm::ddim_sample(
      eps, x, kTimesteps, noise, tb.sqrt_recip_alphas_cumprod,
      tb.sqrt_recipm1_alphas_cumprod, tb.posterior_mean_coef1,
      tb.posterior_mean_coef2, tb.alphas_cumprod, prev, 0.5));
  at::Tensor sample = at::empty_like(x);
  ddpm::ddim_sample_out(sample, eps, x, kTimesteps, noise,
                        tb.sqrt_recip_alphas_cumprod,
                        tb.sqrt_recipm1_alphas_cumprod,
                        tb.posterior_mean_coef1, tb.posterior_mean_coef2,
                        tb.alphas_cumprod, prev, 0.5);
  EXPECT_TRUE(at::equal(sample, ddim_want));

  // a wrong output is refused by name
  at::Tensor wrong = at::empty({5, 3}, at::kFloat);
  EXPECT_THROW(
      ddpm::p_sample_out(wrong, eps, x, kTimesteps, noise,
                         tb.sqrt_recip_alphas_cumprod,
                         tb.sqrt_recipm1_alphas_cumprod,
                         tb.posterior_mean_coef1, tb.posterior_mean_coef2,
                         tb.posterior_log_variance_clipped, tb.betas),
      c10::Error);
}

TEST(CppApi, EveryFunctionReachesItsOperator) {
  // The C++ API spells each operator's arguments again (ops/ddpm_ops.cpp): each
  // function against what it must equal, so that a list out of order (or a
  // function calling the wrong operator) shows.
  const Tables tb = make_tables(kT);
  const auto prev = at::cat({at::ones({1}, at::kDouble), tb.alphas_cumprod.slice(0, 0, kT - 1)});
  const auto x = at::randn({5, 3, 4});
  const auto eps = at::randn({5, 3, 4});
  const auto g = at::randn({5, 3, 4});
  const int64_t seed = 1234, offset = 8;
  const auto drawn = ddpm::philox_normal(x, seed, offset);
  const auto sa = per_sample(tb.sqrt_alphas_cumprod, kTimesteps, 3).to(at::kFloat);
  const auto s1ma = per_sample(tb.sqrt_one_minus_alphas_cumprod, kTimesteps, 3).to(at::kFloat);

  // q_sample_philox = q_sample with the drawn noise, which it returns too
  const auto qp = ddpm::q_sample_philox(x, kTimesteps, seed, offset, tb.sqrt_alphas_cumprod,
                                        tb.sqrt_one_minus_alphas_cumprod);
  EXPECT_TRUE(at::equal(std::get<1>(qp), drawn));
  EXPECT_TRUE(at::equal(std::get<0>(qp),
                        ddpm::q_sample(x, kTimesteps, drawn, tb.sqrt_alphas_cumprod,
                                       tb.sqrt_one_minus_alphas_cumprod)));
  // offset noise: the noise plus one value per (sample, channel)
  const auto noise_offset = at::randn({5, 3});
  EXPECT_TRUE(at::equal(ddpm::q_sample(x, kTimesteps, drawn, tb.sqrt_alphas_cumprod,
                                       tb.sqrt_one_minus_alphas_cumprod, noise_offset),
                        ddpm::q_sample(x, kTimesteps, drawn + noise_offset.unsqueeze(2),
                                       tb.sqrt_alphas_cumprod,
                                       tb.sqrt_one_minus_alphas_cumprod)));
  // the backward operators: (a[t]*g, b[t]*g), and the first alone
  const auto qb = ddpm::q_sample_backward(g, kTimesteps, tb.sqrt_alphas_cumprod,
                                          tb.sqrt_one_minus_alphas_cumprod);
  EXPECT_TRUE(at::equal(std::get<0>(qb), sa * g));
  EXPECT_TRUE(at::equal(std::get<1>(qb), s1ma * g));
  EXPECT_TRUE(at::equal(ddpm::scale_by_timestep(g, kTimesteps, tb.sqrt_one_minus_alphas_cumprod),
                        s1ma * g));
  const auto pb = ddpm::posterior_mean_variance_backward(g, kTimesteps, tb.posterior_mean_coef1,
                                                         tb.posterior_mean_coef2);
  EXPECT_TRUE(at::equal(std::get<0>(pb),
                        per_sample(tb.posterior_mean_coef1, kTimesteps, 3).to(at::kFloat) * g));
  EXPECT_TRUE(at::equal(std::get<1>(pb),
                        per_sample(tb.posterior_mean_coef2, kTimesteps, 3).to(at::kFloat) * g));

  // each step kind: <step>_philox = <step> with the drawn noise; the _out
  // forms write that sample; <step>_backward = autograd's gradients
  const auto p_tables = std::make_tuple(tb.sqrt_recip_alphas_cumprod, tb.sqrt_recipm1_alphas_cumprod,
                                        tb.posterior_mean_coef1, tb.posterior_mean_coef2,
                                        tb.posterior_log_variance_clipped, tb.betas);
  const auto& [r, rm1, c1, c2, lv, betas] = p_tables;
  const auto ps = ddpm::p_sample(eps, x, kTimesteps, drawn, r, rm1, c1, c2, lv, betas, "epsilon",
                                 "fixed_large", false);
  const auto pp = ddpm::p_sample_philox(eps, x, kTimesteps, seed, offset, r, rm1, c1, c2, lv, betas,
                                        "epsilon", "fixed_large", false);
  EXPECT_TRUE(at::equal(std::get<0>(pp), std::get<0>(ps)));
  EXPECT_TRUE(at::equal(std::get<1>(pp), std::get<1>(ps)));
  at::Tensor out = at::empty_like(x);
  ddpm::p_sample_philox_out(out, eps, x, kTimesteps, seed, offset, r, rm1, c1, c2, lv, betas,
                            "epsilon", "fixed_large", false);
  EXPECT_TRUE(at::equal(out, std::get<0>(ps)));

  const auto ds = ddpm::ddim_sample(eps, x, kTimesteps, drawn, r, rm1, c1, c2, tb.alphas_cumprod,
                                    prev, 0.6, "epsilon", "fixed_small", false);
  const auto dp = ddpm::ddim_sample_philox(eps, x, kTimesteps, seed, offset, r, rm1, c1, c2,
                                           tb.alphas_cumprod, prev, 0.6, "epsilon",
                                           "fixed_small", false);
  EXPECT_TRUE(at::equal(std::get<0>(dp), std::get<0>(ds)));
  out.zero_();
  ddpm::ddim_sample_philox_out(out, eps, x, kTimesteps, seed, offset, r, rm1, c1, c2,
                               tb.alphas_cumprod, prev, 0.6, "epsilon", "fixed_small", false);
  EXPECT_TRUE(at::equal(out, std::get<0>(ds)));

  // the .generator overloads: the key of a CPU generator is one int64 draw
  // (torch.randint's) and offset 0; each function against the seeded one
  const auto generator_and_seed = [](uint64_t s) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(s);
    at::Generator twin = at::make_generator<at::CPUGeneratorImpl>(s);
    const int64_t key = at::randint(std::numeric_limits<int64_t>::min(),
                                    std::numeric_limits<int64_t>::max(), {}, twin,
                                    at::TensorOptions().dtype(at::kLong))
                            .item<int64_t>();
    return std::make_pair(gen, key);
  };
  auto [gen, key] = generator_and_seed(5);
  EXPECT_TRUE(at::equal(ddpm::philox_normal(x, gen), ddpm::philox_normal(x, key, 0)));
  // the .key overload: (seed, offset) as an int64 tensor
  EXPECT_TRUE(at::equal(ddpm::philox_normal(x, at::tensor({key, int64_t{8}}, at::kLong)),
                        ddpm::philox_normal(x, key, 8)));
  std::tie(gen, key) = generator_and_seed(6);
  EXPECT_TRUE(at::equal(std::get<1>(ddpm::q_sample_philox(x, kTimesteps, gen,
                                                          tb.sqrt_alphas_cumprod,
                                                          tb.sqrt_one_minus_alphas_cumprod)),
                        ddpm::philox_normal(x, key, 0)));
  std::tie(gen, key) = generator_and_seed(7);
  EXPECT_TRUE(at::equal(
      std::get<0>(ddpm::p_sample_philox(eps, x, kTimesteps, gen, r, rm1, c1, c2, lv, betas)),
      std::get<0>(ddpm::p_sample_philox(eps, x, kTimesteps, key, 0, r, rm1, c1, c2, lv, betas))));
  EXPECT_TRUE(at::equal(
      std::get<0>(ddpm::p_sample_philox(eps, x, kTimesteps, at::tensor({key, int64_t{4}}, at::kLong),
                                        r, rm1, c1, c2, lv, betas)),
      std::get<0>(ddpm::p_sample_philox(eps, x, kTimesteps, key, 4, r, rm1, c1, c2, lv, betas))));
  std::tie(gen, key) = generator_and_seed(8);
  ddpm::ddim_sample_philox_out(out, eps, x, kTimesteps, gen, r, rm1, c1, c2, tb.alphas_cumprod,
                               prev, 0.6);
  EXPECT_TRUE(at::equal(out, std::get<0>(ddpm::ddim_sample_philox(
                                 eps, x, kTimesteps, key, 0, r, rm1, c1, c2, tb.alphas_cumprod,
                                 prev, 0.6))));

  const auto e64 = eps.to(at::kDouble).requires_grad_(true);
  const auto x64 = x.to(at::kDouble).requires_grad_(true);
  const auto n64 = drawn.to(at::kDouble);
  const auto g_sample = at::randn({5, 3, 4}, at::kDouble);
  const auto g_pred = at::randn({5, 3, 4}, at::kDouble);
  for (const bool ddim : {false, true}) {
    const auto fwd = ddim ? ddpm::ddim_sample(e64, x64, kTimesteps, n64, r, rm1, c1, c2,
                                              tb.alphas_cumprod, prev, 0.6)
                          : ddpm::p_sample(e64, x64, kTimesteps, n64, r, rm1, c1, c2, lv, betas);
    const auto grads = torch::autograd::grad({std::get<0>(fwd), std::get<1>(fwd)}, {e64, x64},
                                             {g_sample, g_pred});
    const auto bwd =
        ddim ? ddpm::ddim_sample_backward(g_sample, g_pred, e64.detach(), x64.detach(),
                                          kTimesteps, n64, r, rm1, c1, c2, tb.alphas_cumprod,
                                          prev, 0.6, "epsilon", "fixed_small", true)
             : ddpm::p_sample_backward(g_sample, g_pred, e64.detach(), x64.detach(), kTimesteps,
                                       n64, r, rm1, c1, c2, lv, betas, "epsilon", "fixed_small",
                                       true);
    EXPECT_TRUE(at::equal(std::get<0>(bwd), grads[0])) << (ddim ? "ddim" : "p_sample");
    EXPECT_TRUE(at::equal(std::get<1>(bwd), grads[1])) << (ddim ? "ddim" : "p_sample");
  }

  // diffusion_mse: weight[t] * mean((out - v)^2), v = sqrt(abar)*noise -
  // sqrt(1-abar)*x_0; its backward = autograd's gradient of model_output
  const auto weight = at::rand({kT}, at::kDouble);
  const auto v = (per_sample(tb.sqrt_alphas_cumprod, kTimesteps, 3) * n64 -
                  per_sample(tb.sqrt_one_minus_alphas_cumprod, kTimesteps, 3) * x64.detach());
  const auto loss = ddpm::diffusion_mse(e64, x64.detach(), n64, kTimesteps,
                                        tb.sqrt_alphas_cumprod, tb.sqrt_one_minus_alphas_cumprod,
                                        weight, "v");
  EXPECT_TRUE(at::allclose(loss, weight.index_select(0, kTimesteps) *
                                     (e64.detach() - v).pow(2).mean({1, 2}),
                           1e-12, 0));
  EXPECT_TRUE(at::allclose(ddpm::diffusion_mse(e64.detach(), x64.detach(), n64, kTimesteps,
                                               tb.sqrt_alphas_cumprod,
                                               tb.sqrt_one_minus_alphas_cumprod),
                           (e64.detach() - n64).pow(2).mean({1, 2}), 1e-12, 0));
  const auto g_loss = at::randn({5}, at::kDouble);
  const auto loss_grad = torch::autograd::grad({loss}, {e64}, {g_loss});
  const auto loss_bwd = ddpm::diffusion_mse_backward(
      g_loss, e64.detach(), x64.detach(), n64, kTimesteps, tb.sqrt_alphas_cumprod,
      tb.sqrt_one_minus_alphas_cumprod, weight, "v");
  EXPECT_TRUE(at::equal(loss_bwd, loss_grad[0]));
  const auto offset64 = at::randn({5, 3}, at::kDouble);
  EXPECT_TRUE(at::allclose(
      ddpm::diffusion_mse(e64.detach(), x64.detach(), n64, kTimesteps, tb.sqrt_alphas_cumprod,
                          tb.sqrt_one_minus_alphas_cumprod, weight, "v", offset64),
      ddpm::diffusion_mse(e64.detach(), x64.detach(), n64 + offset64.unsqueeze(2), kTimesteps,
                          tb.sqrt_alphas_cumprod, tb.sqrt_one_minus_alphas_cumprod, weight, "v"),
      1e-12, 0));
}

TEST(SigmaSteps, EulerAndDpmSolverAgainstTheirClosedForms) {
  // a chain of three sigmas down to 0, one sample at each step
  const auto sigmas = at::tensor({2.0, 1.0, 0.5}, at::kDouble);
  const auto sigmas_next = at::tensor({1.0, 0.5, 0.0}, at::kDouble);
  const auto t = at::tensor({0, 1, 2}, at::kLong);
  const auto x = at::randn({3, 2, 5}, at::kDouble);
  const auto eps = at::randn({3, 2, 5}, at::kDouble);
  const auto s = sigmas.index_select(0, t).view({3, 1, 1});
  const auto sn = sigmas_next.index_select(0, t).view({3, 1, 1});
  // Euler, epsilon, eta 0: x + (x - (x - s*eps))/s*(sn - s) = x + eps*(sn - s)
  const auto euler = ddpm::euler_sample(eps, x, t, x, sigmas, sigmas_next);
  EXPECT_TRUE(at::allclose(std::get<0>(euler), x + eps * (sn - s), 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(std::get<1>(euler), x - s * eps, 1e-12, 1e-12));
  // DPM-Solver++ order 1: pred_x0 = sqrt(s^2 + 1)*x - s*eps, then
  // (sigma_vp_next/sigma_vp)*x + alpha_next*(1 - sn/s)*pred_x0
  const auto nan = at::full({3}, std::numeric_limits<double>::quiet_NaN(), at::kDouble);
  const auto dpm = ddpm::dpm_solver_sample(eps, x, t, x, sigmas, sigmas_next, nan, nan);
  const auto alpha = 1.0 / (s * s + 1.0).sqrt();
  const auto alpha_next = 1.0 / (sn * sn + 1.0).sqrt();
  const auto x0 = x / alpha - s * eps;
  const auto want = (sn * alpha_next) / (s * alpha) * x + alpha_next * (1.0 - sn / s) * x0;
  EXPECT_TRUE(at::allclose(std::get<1>(dpm), x0, 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(std::get<0>(dpm), want, 1e-12, 1e-12));
  // order 2 reads the earlier pred_xstart: it changes the sample
  const auto earlier = at::randn({3, 2, 5}, at::kDouble);
  const auto sigmas_1 = at::tensor({4.0, 2.0, 1.0}, at::kDouble);
  const auto t01 = at::tensor({0, 1, 1}, at::kLong);
  const auto second = ddpm::dpm_solver_sample(eps, x, t01, x, sigmas, sigmas_next, sigmas_1,
                                              nan, earlier, c10::nullopt, 2);
  const auto first = ddpm::dpm_solver_sample(eps, x, t01, x, sigmas, sigmas_next, sigmas_1, nan);
  EXPECT_FALSE(at::allclose(std::get<0>(second), std::get<0>(first)));
  EXPECT_TRUE(at::equal(std::get<1>(second), std::get<1>(first)));
}

TEST(TorchScript, OperatorsVisibleAndRunnable) {
  // Every operator is in the JIT registry (what scripted code resolves
  // torch.ops.ddpm.* against), and runs from there on an IValue stack.
  for (const char* name :
       {"ddpm::q_sample", "ddpm::q_sample_backward",
        "ddpm::posterior_mean_variance",
        "ddpm::posterior_mean_variance_backward", "ddpm::p_sample",
        "ddpm::p_sample_backward", "ddpm::ddim_sample",
        "ddpm::ddim_sample_backward"}) {
    EXPECT_FALSE(
        torch::jit::getAllOperatorsFor(c10::Symbol::fromQualString(name))
            .empty())
        << name;
  }
  // the functional overload (q_sample.out is the other one)
  std::shared_ptr<torch::jit::Operator> q_sample_op;
  for (const auto& op : torch::jit::getAllOperatorsFor(
           c10::Symbol::fromQualString("ddpm::q_sample"))) {
    if (op->schema().overload_name().empty()) q_sample_op = op;
  }
  ASSERT_TRUE(q_sample_op != nullptr);
  const Tables tb = make_tables(kT);
  const auto x0 = at::randn({5, 3});
  const auto noise = at::randn({5, 3});
  torch::jit::Stack stack{x0, kTimesteps, noise, tb.sqrt_alphas_cumprod,
                          tb.sqrt_one_minus_alphas_cumprod};
  // the arguments left out get their schema defaults, as TorchScript fills them
  const auto& arguments = q_sample_op->schema().arguments();
  for (size_t i = stack.size(); i < arguments.size(); ++i) {
    ASSERT_TRUE(arguments[i].default_value().has_value()) << arguments[i].name();
    stack.push_back(*arguments[i].default_value());
  }
  q_sample_op->getOperation()(stack);
  ASSERT_EQ(stack.size(), 1u);
  EXPECT_TRUE(at::equal(stack[0].toTensor(),
                        ddpm::q_sample(x0, kTimesteps, noise,
                                       tb.sqrt_alphas_cumprod,
                                       tb.sqrt_one_minus_alphas_cumprod)));
}

// Runs fn and expects a c10::Error whose message contains every fragment.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<const char*> fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error raised";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    for (const char* f : fragments) {
      EXPECT_NE(msg.find(f), std::string::npos)
          << "message lacks '" << f << "': " << msg.substr(0, 300);
    }
  }
}

TEST(BadInput, ClearErrors) {
  const Tables tb = make_tables(kT);
  const auto x = at::randn({5, 3});
  auto q = [&](const at::Tensor& xs, const at::Tensor& t, const at::Tensor& n,
               const at::Tensor& sa) {
    return ddpm::q_sample(xs, t, n, sa, tb.sqrt_one_minus_alphas_cumprod);
  };
  expect_error([&] { q(x, at::tensor({0, 1, 2, 3, 1000}, at::kLong), x, tb.sqrt_alphas_cumprod); },
               {"ddpm.q_sample", "every t in [0, 1000)", "t[4] = 1000"});
  expect_error([&] { q(x, kTimesteps.to(at::kInt), x, tb.sqrt_alphas_cumprod); },
               {"t to be an int64 tensor"});
  expect_error([&] { q(x, kTimesteps.slice(0, 0, 4), x, tb.sqrt_alphas_cumprod); },
               {"t to have shape [5]"});
  expect_error([&] { q(x, kTimesteps, at::randn({5, 4}), tb.sqrt_alphas_cumprod); },
               {"noise to have shape [5, 3] like x_start"});
  expect_error([&] { q(x, kTimesteps, x, tb.sqrt_alphas_cumprod.slice(0, 0, 10)); },
               {"sqrt_one_minus_alphas_cumprod to have length 10"});
  expect_error([&] { q(x.to(at::kInt), kTimesteps, x.to(at::kInt), tb.sqrt_alphas_cumprod); },
               {"x_start to have dtype float32, float64, float16 or bfloat16"});
  expect_error([&] { p_sample_op(tb, x, x, kTimesteps, x, "eps", "fixed_small", true); },
               {"ddpm.p_sample", "model_mean_type", "'eps'"});
  expect_error([&] { p_sample_op(tb, x, x, kTimesteps, x, "epsilon", "learned", true); },
               {"model_output to have shape [5, 6]"});
}

TEST(EmptyBatch, ReturnsEmpty) {
  const Tables tb = make_tables(kT);
  const auto x = at::empty({0, 3});
  const auto t = at::empty({0}, at::kLong);
  EXPECT_EQ(ddpm::q_sample(x, t, x, tb.sqrt_alphas_cumprod,
                           tb.sqrt_one_minus_alphas_cumprod)
                .sizes(),
            x.sizes());
}

}  // namespace
