// The CUDA kernels of csrc/cuda, run on the CPU through their own launch code
// (cuda_runtime.h: blocks of fibers, real barriers, shared memory) and held
// bit for bit against the CPU kernels of csrc/cpu, for every operator, mode,
// data type and table type, over shapes that exercise what only the CUDA loop
// has: grids much smaller than the work (grid-stride iterations), chunks that
// straddle samples, many samples per chunk, sample
// sizes not a multiple of the vector width, pointers that break 16-byte
// alignment, empty and one-element tensors.
//
// Bit for bit, because both compile the same element math (csrc/ddpm) with the
// same flags (cmake/compile_flags.txt); the host build runs its host branches.
// On a real GPU the device's expf, exp and log may differ from these in the
// last place (docs/gpu.md, "CPU and CUDA results"): that is the GPU test's to bound.
#include <gtest/gtest.h>


#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_runtime.h"
#include "ddpm/kernels.h"

namespace {

using ddpm::BFloat16;
using ddpm::Half;

// ---- data --------------------------------------------------------------------------------
template <typename S>
S from_double(double v) {
  if constexpr (std::is_same_v<S, Half>) {
    return Half{ddpm::float_to_half_bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<S, BFloat16>) {
    return BFloat16{ddpm::float_to_bfloat16_bits(static_cast<float>(v))};
  } else {
    return static_cast<S>(v);
  }
}

// n elements of S after `offset` leading ones (offset 1 breaks the 16-byte
// alignment of every vector load), and a guard after them; all bytes set to
// a pattern, so that an element a kernel should not write is seen if it is.
template <typename S>
struct Buffer {
  std::vector<S> storage;
  int64_t offset;
  Buffer(int64_t n, int64_t offset_elems) : storage(n + offset_elems + 8), offset(offset_elems) {
    std::memset(storage.data(), 0xA5, storage.size() * sizeof(S));
  }
  S* data() { return storage.data() + offset; }
  bool same_bytes(const Buffer& other) const {
    return storage.size() == other.storage.size() &&
           std::memcmp(storage.data(), other.storage.data(), storage.size() * sizeof(S)) == 0;
  }
  // the first element whose bytes differ, or -1
  int64_t first_difference(const Buffer& other) const {
    for (size_t i = 0; i < storage.size(); ++i) {
      if (std::memcmp(&storage[i], &other.storage[i], sizeof(S)) != 0) {
        return static_cast<int64_t>(i) - offset;
      }
    }
    return -1;
  }
};

template <typename S>
Buffer<S> random_buffer(int64_t n, int64_t offset, std::mt19937_64& rng, double lo = -2.5,
                        double hi = 2.5) {
  Buffer<S> b(n, offset);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < n; ++i) b.data()[i] = from_double<S>(dist(rng));
  return b;
}

// ---- schedule tables (improved-diffusion's, cosine, T steps) -----------------------------
struct Schedule {
  int64_t T;
  std::vector<double> betas, abar, abar_prev, sqrt_abar, sqrt_1m_abar, r, rm1, c1, c2, var,
      log_var_clipped;
  explicit Schedule(int64_t steps) : T(steps) {
    auto f = [](double u) {
      const double c = std::cos((u + 0.008) / 1.008 * M_PI / 2);
      return c * c;
    };
    double prod = 1.0;
    for (int64_t i = 0; i < T; ++i) {
      const double b = std::min(1 - f(double(i + 1) / T) / f(double(i) / T), 0.999);
      betas.push_back(b);
      abar_prev.push_back(prod);
      prod *= 1 - b;
      abar.push_back(prod);
    }
    for (int64_t i = 0; i < T; ++i) {
      sqrt_abar.push_back(std::sqrt(abar[i]));
      sqrt_1m_abar.push_back(std::sqrt(1 - abar[i]));
      r.push_back(std::sqrt(1 / abar[i]));
      rm1.push_back(std::sqrt(1 / abar[i] - 1));
      var.push_back(betas[i] * (1 - abar_prev[i]) / (1 - abar[i]));
      c1.push_back(betas[i] * std::sqrt(abar_prev[i]) / (1 - abar[i]));
      c2.push_back((1 - abar_prev[i]) * std::sqrt(1 - betas[i]) / (1 - abar[i]));
    }
    for (int64_t i = 0; i < T; ++i) log_var_clipped.push_back(std::log(i == 0 ? var[1] : var[i]));
  }
};

// The tables in the table type T (float tables are the double ones rounded).
template <typename T>
struct Tables {
  std::vector<T> betas, abar, abar_prev, sqrt_abar, sqrt_1m_abar, r, rm1, c1, c2, var,
      log_var_clipped;
  explicit Tables(const Schedule& s)
      : betas(s.betas.begin(), s.betas.end()), abar(s.abar.begin(), s.abar.end()),
        abar_prev(s.abar_prev.begin(), s.abar_prev.end()),
        sqrt_abar(s.sqrt_abar.begin(), s.sqrt_abar.end()),
        sqrt_1m_abar(s.sqrt_1m_abar.begin(), s.sqrt_1m_abar.end()), r(s.r.begin(), s.r.end()),
        rm1(s.rm1.begin(), s.rm1.end()), c1(s.c1.begin(), s.c1.end()),
        c2(s.c2.begin(), s.c2.end()), var(s.var.begin(), s.var.end()),
        log_var_clipped(s.log_var_clipped.begin(), s.log_var_clipped.end()) {}
};

// ---- the shapes ----------------------------------------------------------------------------
struct Shape {
  int64_t batch, sample_numel;
  int64_t offset;  // elements before every data pointer (1: misaligned)
  int num_sms;     // the emulated GPU's size: the grid is at most 8 blocks per SM
  std::string name() const {
    std::ostringstream o;
    o << batch << "x" << sample_numel << (offset ? " misaligned" : "") << " sms=" << num_sms;
    return o.str();
  }
};

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {4, 37, 0, 1},     // a sample is not a multiple of any vector width
      {3, 5000, 0, 1},   // 15 chunks on 8 blocks: grid-stride iterations; chunks straddle samples
      {100, 3, 0, 2},    // 100 samples in one chunk
      {700, 2, 1, 1},    // tiny samples, every pointer misaligned
      {2, 1000, 1, 4},   // chunks straddle a sample boundary, misaligned
      {5, 1024, 0, 1},   // samples of exactly one float chunk / noise block
      {1, 1, 0, 1},      // one element
      {0, 16, 0, 1},     // empty
      {3, 0, 0, 1},      // samples without elements (per-sample outputs still written)
      {9, 333, 0, 1},    // several samples per chunk, odd sizes
  };
  return all;
}

// Offset noise over a shape: [batch, channels] values, channels the first of
// 5, 4, 3, 2 that divides the sample (channels then straddle vector packs).
template <typename S>
struct Offsets {
  Buffer<S> values;
  ddpm::NoiseOffset<S> view;
  Offsets(const Shape& sh, std::mt19937_64& rng) : values(0, 0) {
    int64_t channels = 1;
    for (int64_t c : {5, 4, 3, 2}) {
      if (sh.sample_numel > 0 && sh.sample_numel % c == 0) {
        channels = c;
        break;
      }
    }
    values = random_buffer<S>(sh.batch * channels, sh.offset, rng, -0.3, 0.3);
    view.offset = values.data();
    view.channels = channels;
    view.channel_numel = sh.sample_numel / channels;
  }
};

std::vector<int64_t> timesteps(int64_t batch, int64_t T, std::mt19937_64& rng) {
  std::vector<int64_t> t(batch);
  std::uniform_int_distribution<int64_t> dist(0, T - 1);
  for (int64_t b = 0; b < batch; ++b) t[b] = b % 4 == 0 ? 0 : (b % 4 == 1 ? T - 1 : dist(rng));
  return t;
}

ddpm::CudaLaunch launch_on(const Shape& s) { return {nullptr, s.num_sms}; }

// ddpm::cuda_kernel with the workspace a caller owes it (cuda_workspace_bytes),
// filled with 0xff bytes (NaN coefficients) so that a kernel reading what no
// prologue wrote shows in the results.
template <typename P>
void run_cuda(const P& p, ddpm::CudaLaunch launch) {
  const size_t bytes = ddpm::cuda_workspace_bytes(p);
  std::vector<double> workspace((bytes + sizeof(double) - 1) / sizeof(double));
  std::memset(workspace.data(), 0xff, workspace.size() * sizeof(double));
  launch.workspace = bytes > 0 ? workspace.data() : nullptr;
  ddpm::cuda_kernel(p, launch);
}

template <typename S>
const char* type_name() {
  if constexpr (std::is_same_v<S, float>) return "float";
  if constexpr (std::is_same_v<S, double>) return "double";
  if constexpr (std::is_same_v<S, Half>) return "half";
  return "bfloat16";
}

// Asserts that two output buffers (CPU's and the emulated GPU's) are equal
// byte for byte, with a message naming what ran.
template <typename S>
void expect_same(const Buffer<S>& cpu, const Buffer<S>& gpu, const std::string& what) {
  EXPECT_TRUE(cpu.same_bytes(gpu)) << what << ": first difference at element "
                                   << cpu.first_difference(gpu);
}

// An output of a kernel: its name, its size, and how to point the
// parameters at a buffer (set it to null where the call does not write it).
template <typename S, typename P>
struct Output {
  const char* name;
  int64_t numel, offset;
  std::function<void(P&, S*)> point;
};

// Runs p on the CPU and on the emulated GPU, each writing its own buffers,
// and expects every output equal byte for byte (untouched alike where not
// written). what: the case, for the message.
template <typename S, typename P>
void expect_cuda_matches_cpu(P p, const Shape& sh, const std::vector<Output<S, P>>& outputs,
                             const std::string& what) {
  std::vector<Buffer<S>> cpu, gpu;
  for (const auto& o : outputs) {
    cpu.emplace_back(o.numel, o.offset);
    gpu.emplace_back(o.numel, o.offset);
  }
  for (size_t i = 0; i < outputs.size(); ++i) outputs[i].point(p, cpu[i].data());
  ASSERT_EQ(ddpm::cpu_kernel(p), -1) << what;
  for (size_t i = 0; i < outputs.size(); ++i) outputs[i].point(p, gpu[i].data());
  run_cuda(p, launch_on(sh));
  for (size_t i = 0; i < outputs.size(); ++i) {
    expect_same(cpu[i], gpu[i], std::string(outputs[i].name) + " " + what);
  }
}

template <typename Pair>
class CudaHost : public ::testing::Test {};

template <typename S_, typename T_>
struct Types {
  using S = S_;
  using T = T_;
};
using AllTypes =
    ::testing::Types<Types<float, float>, Types<float, double>, Types<double, float>,
                     Types<double, double>, Types<Half, float>, Types<Half, double>,
                     Types<BFloat16, float>, Types<BFloat16, double>>;
struct TypeNames {
  template <typename P>
  static std::string GetName(int) {
    return std::string(type_name<typename P::S>()) + "_" +
           (std::is_same_v<typename P::T, float> ? "float" : "double") + "_tables";
  }
};
TYPED_TEST_SUITE(CudaHost, AllTypes, TypeNames);

const Schedule& schedule() {
  static const Schedule s(50);
  return s;
}

// ---- the linear map: q_sample and the posterior ---------------------------------------------
TYPED_TEST(CudaHost, QSample) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  const Tables<T> tab(schedule());
  std::mt19937_64 rng(1);
  for (const Shape& sh : shapes()) {
    const int64_t n = sh.batch * sh.sample_numel;
    auto x0 = random_buffer<S>(n, sh.offset, rng);
    auto noise = random_buffer<S>(n, sh.offset, rng);
    const auto t = timesteps(sh.batch, schedule().T, rng);
    Offsets<S> offsets(sh, rng);
    for (int mode = 0; mode < 3; ++mode) {  // noise tensor, drawn, tensor with an offset
      const bool generate = mode == 1;
      ddpm::LinearParams<S, T> p;
      if (mode == 2) p.noise_offset = offsets.view;
      p.u = x0.data();
      p.v = generate ? nullptr : noise.data();
      p.timesteps = {t.data(), schedule().T};
      p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
      p.batch = sh.batch;
      p.sample_numel = sh.sample_numel;
      p.generate_noise = generate;
      p.noise_key = {0x0123456789ABCDEFull, 8};
      using P = decltype(p);
      expect_cuda_matches_cpu<S, P>(
          p, sh,
          {{"x_t", n, sh.offset, [](P& q, S* b) { q.out = b; }},
           {"noise", n, sh.offset, [&](P& q, S* b) { q.noise_out = generate ? b : nullptr; }}},
          sh.name() + (generate ? " in-kernel noise" : (mode == 2 ? " noise offset" : "")));
    }
  }
}

TYPED_TEST(CudaHost, QSampleBackwardAndScaleByTimestep) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  const Tables<T> tab(schedule());
  std::mt19937_64 rng(2);
  for (const Shape& sh : shapes()) {
    const int64_t n = sh.batch * sh.sample_numel;
    auto grad = random_buffer<S>(n, sh.offset, rng);
    const auto t = timesteps(sh.batch, schedule().T, rng);
    for (bool both : {true, false}) {
      ddpm::LinearBackwardParams<S, T> p;
      p.grad = grad.data();
      p.timesteps = {t.data(), schedule().T};
      p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
      p.batch = sh.batch;
      p.sample_numel = sh.sample_numel;
      using P = decltype(p);
      expect_cuda_matches_cpu<S, P>(
          p, sh,
          {{"grad_x_start", n, sh.offset, [](P& q, S* b) { q.grad_u = b; }},
           {"grad_noise", n, sh.offset, [&](P& q, S* b) { q.grad_v = both ? b : nullptr; }}},
          sh.name() + (both ? "" : " (scale_by_timestep)"));
    }
  }
}

TYPED_TEST(CudaHost, PosteriorAndItsBackward) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  const Tables<T> tab(schedule());
  std::mt19937_64 rng(3);
  for (const Shape& sh : shapes()) {
    const int64_t n = sh.batch * sh.sample_numel;
    auto x0 = random_buffer<S>(n, sh.offset, rng);
    auto xt = random_buffer<S>(n, sh.offset, rng);
    const auto t = timesteps(sh.batch, schedule().T, rng);
    const ddpm::LinearTables<T> coefs{tab.c1.data(), tab.c2.data()};
    ddpm::LinearParams<S, T> p;
    p.u = x0.data();
    p.v = xt.data();
    p.timesteps = {t.data(), schedule().T};
    p.tables = coefs;
    p.batch = sh.batch;
    p.sample_numel = sh.sample_numel;
    p.per_sample_tables[0] = tab.var.data();
    p.per_sample_tables[1] = tab.log_var_clipped.data();
    using P = decltype(p);
    expect_cuda_matches_cpu<S, P>(p, sh,
                                  {{"mean", n, sh.offset, [](P& q, S* b) { q.out = b; }},
                                   {"variance", sh.batch, 0, [](P& q, S* b) { q.per_sample[0] = b; }},
                                   {"log_variance", sh.batch, 0,
                                    [](P& q, S* b) { q.per_sample[1] = b; }}},
                                  sh.name());
    using B = ddpm::LinearBackwardParams<S, T>;
    const B b{x0.data(), nullptr, nullptr, {t.data(), schedule().T}, coefs, sh.batch,
              sh.sample_numel};
    expect_cuda_matches_cpu<S, B>(b, sh,
                                  {{"grad_x_start", n, sh.offset, [](B& q, S* x) { q.grad_u = x; }},
                                   {"grad_x_t", n, sh.offset, [](B& q, S* x) { q.grad_v = x; }}},
                                  sh.name());
  }
}

// ---- the steps -----------------------------------------------------------------------------
struct StepCase {
  ddpm::StepKind kind;
  double eta;
  const char* name;
  bool model_noise;  // DDIM with the model's own noise prediction
  int32_t solver_order = 1;  // DPM-Solver's: orders 2 and 3 read earlier pred_x0
  bool heun = false, sde = false;
};
// Every kind (a new one is emulated without a line here), each with eta 0
// and 0.7 and the model's own noise prediction: what a kind does not read is
// ignored by its coefficients.
std::vector<StepCase> all_step_cases() {
  std::vector<StepCase> cases;
  for (int32_t k = 0; k < static_cast<int32_t>(ddpm::StepKind::kNumStepKinds); ++k) {
    const auto kind = static_cast<ddpm::StepKind>(k);
    cases.push_back({kind, 0.0, "eta=0", false});
    cases.push_back({kind, 0.7, "eta=0.7", false});
    cases.push_back({kind, 0.7, "eta=0.7 model noise", true});
  }
  // a multistep step's orders (reading one and two earlier pred_x0), forms
  // and algorithms
  const auto dpm = ddpm::StepKind::kDpmSolver;
  cases.push_back({dpm, 0.0, "order 2 midpoint", false, 2, false, false});
  cases.push_back({dpm, 0.0, "order 2 heun sde", false, 2, true, true});
  cases.push_back({dpm, 0.0, "order 3", false, 3, false, false});
  cases.push_back({dpm, 0.0, "order 3 sde", false, 3, false, true});
  return cases;
}
const std::vector<StepCase> kStepCases = all_step_cases();
const ddpm::MeanType kMeanTypes[] = {ddpm::MeanType::kEpsilon, ddpm::MeanType::kStartX,
                                     ddpm::MeanType::kPreviousX, ddpm::MeanType::kV};
const ddpm::VarType kVarTypes[] = {ddpm::VarType::kFixedSmall, ddpm::VarType::kFixedLarge,
                                   ddpm::VarType::kLearned, ddpm::VarType::kLearnedRange};

template <typename T>
ddpm::StepTables<T> step_tables(const Tables<T>& tab, ddpm::StepKind kind) {
  if (kind == ddpm::StepKind::kDdim) {
    return {{tab.r.data(), tab.rm1.data(), tab.c1.data(), tab.c2.data(), tab.abar.data(),
             tab.abar_prev.data()}};
  }
  if (kind == ddpm::StepKind::kEuler) {  // sigmas, sigmas_next: sqrt(1/abar - 1) > sqrt(1 - abar)
    return {{tab.rm1.data(), tab.sqrt_1m_abar.data(), nullptr, nullptr, nullptr, nullptr}};
  }
  if (kind == ddpm::StepKind::kDpmSolver) {  // sigmas, sigmas_next, two earlier ones
    return {{tab.rm1.data(), tab.sqrt_1m_abar.data(), tab.r.data(), tab.c1.data(), nullptr,
             nullptr}};
  }  // (another kind's own two tables: any valid values compare the backends)
  return {{tab.r.data(), tab.rm1.data(), tab.c1.data(), tab.c2.data(),
           tab.log_var_clipped.data(), tab.betas.data()}};
}

// How a combination clips pred_xstart: not, to [-1, 1], to a per-sample
// bound, to the bound then divided by it (dynamic thresholding).
enum class Clip { kNone, kUnit, kBound, kRescale };
Clip clip_of(int combination) { return static_cast<Clip>(combination % 4); }

ddpm::StepModes step_modes(const StepCase& kind, ddpm::MeanType mean, ddpm::VarType var,
                           Clip clip) {
  return {kind.kind, mean,           var,        clip != Clip::kNone, kind.eta,
          clip == Clip::kRescale, kind.model_noise, kind.solver_order, kind.heun, kind.sde};
}

// Per-sample bounds, some below and some above the data's magnitudes.
template <typename T>
std::vector<T> clip_bounds(int64_t batch) {
  const double pattern[] = {0.5, 1.5, 3.0, 0.8, 2.0};
  std::vector<T> bounds;
  for (int64_t b = 0; b < batch; ++b) bounds.push_back(static_cast<T>(pattern[b % 5]));
  return bounds;
}
template <typename T>
const T* clip_bound_of(Clip clip, const std::vector<T>& bounds) {
  return clip == Clip::kBound || clip == Clip::kRescale ? bounds.data() : nullptr;
}

std::string mode_name(const ddpm::StepModes& m, const StepCase& k, Clip clip) {
  std::ostringstream o;
  o << "kind=" << int(k.kind) << " " << k.name << " mean=" << int(m.mean_type)
    << " var=" << int(m.var_type)
    << " clip=" << int(clip);
  return o.str();
}

// The step's inputs for one shape: model_output with a variance half for
// learned variances (values a model would give), x_t, noise, t.
template <typename S>
struct StepInputs {
  Buffer<S> model_output, x_t, noise, history_1, history_2;
  std::vector<int64_t> t;
  StepInputs(const Shape& sh, std::mt19937_64& rng)
      : model_output(random_buffer<S>(2 * sh.batch * sh.sample_numel, sh.offset, rng)),
        x_t(random_buffer<S>(sh.batch * sh.sample_numel, sh.offset, rng)),
        noise(random_buffer<S>(sh.batch * sh.sample_numel, sh.offset, rng)),
        history_1(random_buffer<S>(sh.batch * sh.sample_numel, sh.offset, rng)),
        history_2(random_buffer<S>(sh.batch * sh.sample_numel, sh.offset, rng)),
        t(timesteps(sh.batch, schedule().T, rng)) {
    // the variance half of each sample in [-1, 0.5]: a log-variance for
    // `learned`, v for `learned_range`
    std::uniform_real_distribution<double> v(-1.0, 0.5);
    for (int64_t b = 0; b < sh.batch; ++b) {
      for (int64_t i = 0; i < sh.sample_numel; ++i) {
        model_output.data()[(2 * b + 1) * sh.sample_numel + i] = from_double<S>(v(rng));
      }
    }
  }
};

TYPED_TEST(CudaHost, StepsForward) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  const Tables<T> tab(schedule());
  std::mt19937_64 rng(4);
  for (const Shape& sh : shapes()) {
    StepInputs<S> in(sh, rng);
    const int64_t n = sh.batch * sh.sample_numel;
    const std::vector<T> bounds = clip_bounds<T>(sh.batch);
    int combination = 0;
    for (const StepCase& kind : kStepCases) {
      for (ddpm::MeanType mean : kMeanTypes) {
        for (ddpm::VarType var : kVarTypes) {
          for (bool generate : {false, true}) {
            ++combination;
            // the clips and pred_xstart alternate, so that each shape sees all
            const Clip clip = clip_of(combination);
            const ddpm::StepModes modes = step_modes(kind, mean, var, clip);
            const bool write_pred = (combination / 4) % 2 == 0;
            ddpm::StepParams<S, T> p;
            p.model_output = in.model_output.data();
            p.x_t = in.x_t.data();
            p.noise = generate ? nullptr : in.noise.data();
            const int history = ddpm::step_history_count(modes);
            p.history[0] = history >= 1 ? in.history_1.data() : nullptr;
            p.history[1] = history >= 2 ? in.history_2.data() : nullptr;
            p.timesteps = {in.t.data(), schedule().T};
            p.tables = step_tables(tab, kind.kind);
            p.modes = modes;
            p.batch = sh.batch;
            p.sample_numel = sh.sample_numel;
            p.generate_noise = generate;
            p.noise_key = {42, 4 * 1000003ull};
            p.clip_bound = clip_bound_of(clip, bounds);
            using P = decltype(p);
            expect_cuda_matches_cpu<S, P>(
                p, sh,
                {{"sample", n, sh.offset, [](P& q, S* b) { q.sample = b; }},
                 {"pred_xstart", n, sh.offset,
                  [&](P& q, S* b) { q.pred_xstart = write_pred ? b : nullptr; }}},
                sh.name() + " " + mode_name(modes, kind, clip) +
                    (generate ? " in-kernel noise" : "") + (write_pred ? "" : " sample only"));
          }
        }
      }
    }
  }
}

TYPED_TEST(CudaHost, StepsBackward) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  const Tables<T> tab(schedule());
  std::mt19937_64 rng(5);
  for (const Shape& sh : shapes()) {
    StepInputs<S> in(sh, rng);
    const int64_t n = sh.batch * sh.sample_numel;
    auto grad_sample = random_buffer<S>(n, sh.offset, rng);
    auto grad_pred = random_buffer<S>(n, sh.offset, rng);
    const std::vector<T> bounds = clip_bounds<T>(sh.batch);
    int combination = 0;
    for (const StepCase& kind : kStepCases) {
      for (ddpm::MeanType mean : kMeanTypes) {
        for (ddpm::VarType var : kVarTypes) {
          // which gradients are present: both, the sample's, pred_xstart's
          for (int present = 0; present < 3; ++present) {
            ++combination;
            const Clip clip = clip_of(combination);
            const ddpm::StepModes modes = step_modes(kind, mean, var, clip);
            const bool has_gs = present != 2, has_gp = present != 1;
            const bool reads_noise = ddpm::reads_var_channels(modes) && has_gs;
            const int64_t out_n = (ddpm::has_var_channels(modes) ? 2 : 1) * n;
            ddpm::StepBackwardParams<S, T> p;
            p.grad_sample = has_gs ? grad_sample.data() : nullptr;
            p.grad_pred_xstart = has_gp ? grad_pred.data() : nullptr;
            p.model_output = in.model_output.data();
            p.x_t = in.x_t.data();
            p.noise = reads_noise ? in.noise.data() : nullptr;  // never read otherwise
            p.timesteps = {in.t.data(), schedule().T};
            p.tables = step_tables(tab, kind.kind);
            p.modes = modes;
            p.batch = sh.batch;
            p.sample_numel = sh.sample_numel;
            p.clip_bound = clip_bound_of(clip, bounds);
            using P = decltype(p);
            expect_cuda_matches_cpu<S, P>(
                p, sh,
                {{"grad_model_output", out_n, sh.offset,
                  [](P& q, S* b) { q.grad_model_output = b; }},
                 {"grad_x_t", n, sh.offset, [](P& q, S* b) { q.grad_x_t = b; }}},
                sh.name() + " " + mode_name(modes, kind, clip) +
                    (has_gs ? "" : " no grad_sample") + (has_gp ? "" : " no grad_pred_xstart"));
          }
        }
      }
    }
  }
}

// ---- the noise ---------------------------------------------------------------------------
template <typename S>
void check_philox_normal() {
  for (const Shape& sh : shapes()) {
    const int64_t n = sh.batch * sh.sample_numel;
    for (const ddpm::NoiseKey key : {ddpm::NoiseKey{0, 0}, ddpm::NoiseKey{~0ull, 4ull << 40}}) {
      Buffer<S> cpu(n, sh.offset), gpu(n, sh.offset);
      ddpm::cpu_kernel(ddpm::PhiloxNormalParams<S>{cpu.data(), n, key});
      run_cuda(ddpm::PhiloxNormalParams<S>{gpu.data(), n, key}, launch_on(sh));
      expect_same(cpu, gpu, std::string("philox_normal ") + type_name<S>() + " " + sh.name());
    }
  }
}

TEST(CudaHostNoise, PhiloxNormalMatchesTheCpu) {
  check_philox_normal<float>();
  check_philox_normal<double>();
  check_philox_normal<Half>();
  check_philox_normal<BFloat16>();
}

// A key read through device pointers (a CUDA graph's capture of a generator:
// seed = *seed_on_device, offset = *offset_on_device + offset) draws what the
// resolved key draws; the pointers are read when the kernel runs (in
// noise_kernel, which every in-kernel-noise operator launches).
TEST(CudaHostNoise, AKeyOnTheDeviceIsReadWhenTheKernelRuns) {
  const int64_t n = 3 * 1024 + 17;
  int64_t seed_on_device = 99, offset_on_device = 40;
  ddpm::NoiseKey pointers{0, 8};  // the call's place in the graph: 8
  pointers.seed_on_device = &seed_on_device;
  pointers.offset_on_device = &offset_on_device;
  const ddpm::NoiseKey values{99, 48};
  Buffer<float> want(n, 0), got(n, 0);
  run_cuda(ddpm::PhiloxNormalParams<float>{want.data(), n, values}, {nullptr, 4});
  run_cuda(ddpm::PhiloxNormalParams<float>{got.data(), n, pointers}, {nullptr, 4});
  expect_same(want, got, "philox_normal, key on the device");
  // a replay: the graph's memory holds the next offset, the kernel sees it
  offset_on_device = 52;
  const ddpm::NoiseKey next{99, 60};
  run_cuda(ddpm::PhiloxNormalParams<float>{want.data(), n, next}, {nullptr, 4});
  run_cuda(ddpm::PhiloxNormalParams<float>{got.data(), n, pointers}, {nullptr, 4});
  expect_same(want, got, "philox_normal, key on the device, replayed");
  EXPECT_EQ(pointers.resolved().offset, 60u);
}

// PyTorch releases that fix a captured graph's seed at capture (their
// PhiloxCudaState keeps it as an integer) give the seed as a value and only
// the offset through a pointer: the kernel reads the offset, keeps the seed.
TEST(CudaHostNoise, ACapturedKeyWithASeedValueReadsOnlyTheOffset) {
  const int64_t n = 2 * 1024 + 5;
  int64_t offset_on_device = 20;
  ddpm::NoiseKey captured{77, 4};
  captured.offset_on_device = &offset_on_device;
  EXPECT_TRUE(captured.on_device());
  Buffer<float> want(n, 0), got(n, 0);
  run_cuda(ddpm::PhiloxNormalParams<float>{want.data(), n, ddpm::NoiseKey{77, 24}}, {nullptr, 3});
  run_cuda(ddpm::PhiloxNormalParams<float>{got.data(), n, captured}, {nullptr, 3});
  expect_same(want, got, "philox_normal, offset on the device, seed a value");
}

// The noise of element e depends on (seed, offset, e) only: not on the grid.
TEST(CudaHostNoise, NoiseIsTheSameWhateverTheGrid) {
  const int64_t n = 3 * 1024 + 17;
  Buffer<float> one(n, 0), many(n, 0);
  const ddpm::NoiseKey key{7, 12};
  run_cuda(ddpm::PhiloxNormalParams<float>{one.data(), n, key}, {nullptr, 1});
  run_cuda(ddpm::PhiloxNormalParams<float>{many.data(), n, key}, {nullptr, 64});
  expect_same(one, many, "1 SM against 64");
  for (int64_t e : {int64_t{0}, int64_t{255}, int64_t{256}, int64_t{1023}, int64_t{1024}, n - 1}) {
    EXPECT_EQ(one.data()[e], ddpm::normal_for_element(key, e)) << "element " << e;
  }
}

// ---- the training loss: diffusion_mse and its backward -----------------------------------------
// The loss sums in double, in another order on the GPU (a tree per tile)
// than on the CPU (eight running sums per tile): equal to the double
// rounding of either sum, then rounded once to the loss type. The backward
// is element-wise: bit for bit.
template <typename A>
void expect_loss_near(A cpu, A gpu, const std::string& what) {
  const double tol = (std::is_same_v<A, float> ? 0x1p-22 : 0x1p-48) * std::fabs(double(cpu));
  if (std::isnan(double(cpu))) {
    EXPECT_TRUE(std::isnan(double(gpu))) << what;
  } else {
    EXPECT_LE(std::fabs(double(cpu) - double(gpu)), tol) << what << ": " << cpu << " vs " << gpu;
  }
}

TYPED_TEST(CudaHost, DiffusionMseAndItsBackward) {
  using S = typename TypeParam::S;
  using T = typename TypeParam::T;
  using A = ddpm::acc_t<S>;
  const Tables<T> tab(schedule());
  std::vector<T> weight(schedule().T);
  for (int64_t i = 0; i < schedule().T; ++i) weight[i] = T(0.5 + 0.01 * i);
  std::mt19937_64 rng(8);
  // a block per tile: the shapes of many tiny samples are costly to emulate,
  // so fewer of them here (a tile never straddles samples)
  std::vector<Shape> all;
  for (const Shape& sh : shapes()) {
    if (sh.batch <= 100) all.push_back(sh);
  }
  all.push_back({3, 2 * ddpm::kLossTile + 77, 0, 1});  // several tiles per sample
  all.push_back({2, ddpm::kLossTile, 1, 2});           // one whole tile, misaligned
  int combination = 0;
  for (const Shape& sh : all) {
    for (const bool slice : {false, true}) {  // model_output: the mean half of [B, 2, N]
      const int64_t n = sh.batch * sh.sample_numel;
      const int64_t stride = slice ? 2 * sh.sample_numel : sh.sample_numel;
      auto out = random_buffer<S>(sh.batch * stride, sh.offset, rng);
      auto x0 = random_buffer<S>(n, sh.offset, rng);
      auto noise = random_buffer<S>(n, sh.offset, rng);
      const auto t = timesteps(sh.batch, schedule().T, rng);
      Offsets<S> offsets(sh, rng);
      std::vector<A> grad(sh.batch);
      for (auto& g : grad) g = A(std::uniform_real_distribution<double>(-2, 2)(rng));
      for (const auto target :
           {ddpm::LossTarget::kEpsilon, ddpm::LossTarget::kStartX, ddpm::LossTarget::kV}) {
        // weighted or not, in turn over the shapes and targets
        for (const bool weighted : {++combination % 2 == 0}) {
          // an offset noise with every other weighting
          const bool offset = (combination / 2) % 2 == 1;
          const std::string what = sh.name() + (slice ? " slice" : "") + " target " +
                                   std::to_string(int(target)) + (weighted ? " weighted" : "") +
                                   (offset ? " noise offset" : "");
          const int64_t tiles = sh.batch * ddpm::loss_tiles_per_sample(sh.sample_numel);
          std::vector<double> partials(tiles + 1);
          std::vector<A> loss_cpu(sh.batch), loss_gpu(sh.batch);
          ddpm::LossParams<S, T> p;
          p.model_output = out.data();
          p.model_output_batch_stride = stride;
          p.x_start = x0.data();
          p.noise = noise.data();
          p.partials = partials.data();
          p.timesteps = {t.data(), schedule().T};
          p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
          p.weight = weighted ? weight.data() : nullptr;
          p.target = target;
          p.batch = sh.batch;
          p.sample_numel = sh.sample_numel;
          if (offset) p.noise_offset = offsets.view;
          p.loss = loss_cpu.data();
          ASSERT_EQ(ddpm::cpu_kernel(p), -1);
          p.loss = loss_gpu.data();
          std::fill(partials.begin(), partials.end(), std::nan(""));
          run_cuda(p, launch_on(sh));
          for (int64_t b = 0; b < sh.batch; ++b) {
            expect_loss_near(loss_cpu[b], loss_gpu[b], what + " sample " + std::to_string(b));
          }
          ddpm::LossBackwardParams<S, T> q;
          q.grad = grad.data();
          q.model_output = out.data();
          q.model_output_batch_stride = stride;
          q.x_start = x0.data();
          q.noise = noise.data();
          q.timesteps = {t.data(), schedule().T};
          q.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
          q.weight = p.weight;
          q.target = target;
          q.batch = sh.batch;
          q.sample_numel = sh.sample_numel;
          q.noise_offset = p.noise_offset;
          using Q = decltype(q);
          expect_cuda_matches_cpu<S, Q>(
              q, sh, {{"grad_model_output", n, sh.offset, [](Q& r, S* b) { r.grad_model_output = b; }}},
              what);
        }
      }
    }
  }
}

// ---- the launch itself ---------------------------------------------------------------------
// The shapes above do reach what they are meant to: a grid smaller than the
// work. The element loop waits on no barrier.
TEST(CudaHostLaunch, SmallGridsLoopOverTheWork) {
  const Tables<double> tab(schedule());
  const int64_t batch = 3, numel = 5000;
  std::mt19937_64 rng(6);
  auto x0 = random_buffer<float>(batch * numel, 0, rng);
  Buffer<float> out(batch * numel, 0);
  const std::vector<int64_t> t = {0, 10, 49};
  ddpm::LinearParams<float, double> p;
  p.u = x0.data();
  p.v = x0.data();
  p.out = out.data();
  p.timesteps = {t.data(), schedule().T};
  p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
  p.batch = batch;
  p.sample_numel = numel;
  cuda_host::stats() = {};
  run_cuda(p, {nullptr, 1});
  const int64_t chunks = (batch * numel + 1023) / 1024;
  EXPECT_EQ(cuda_host::stats().launches, 1);
  EXPECT_EQ(cuda_host::stats().last_grid, 8u);
  EXPECT_LT(int64_t{cuda_host::stats().last_grid}, chunks);
  EXPECT_EQ(cuda_host::stats().barriers, 0);
}

// A step is two launches: the prologue that forms each sample's
// coefficients, then the element loop that reads them.
TEST(CudaHostLaunch, StepsFormTheirCoefficientsInAPrologue) {
  const Tables<double> tab(schedule());
  const Shape sh{5, 700, 0, 1};
  std::mt19937_64 rng(8);
  StepInputs<float> in(sh, rng);
  Buffer<float> sample(sh.batch * sh.sample_numel, 0);
  ddpm::StepParams<float, double> p;
  p.model_output = in.model_output.data();
  p.x_t = in.x_t.data();
  p.noise = in.noise.data();
  p.sample = sample.data();
  p.pred_xstart = nullptr;
  p.timesteps = {in.t.data(), schedule().T};
  p.tables = step_tables(tab, ddpm::StepKind::kDdpm);
  p.modes = {ddpm::StepKind::kDdpm, ddpm::MeanType::kEpsilon, ddpm::VarType::kFixedSmall,
             true, 0.0, false, false};
  p.batch = sh.batch;
  p.sample_numel = sh.sample_numel;
  EXPECT_EQ(ddpm::cuda_workspace_bytes(p), sh.batch * sizeof(ddpm::StepCoef<float>));
  cuda_host::stats() = {};
  run_cuda(p, {nullptr, 2});
  EXPECT_EQ(cuda_host::stats().launches, 2);
  EXPECT_EQ(cuda_host::stats().barriers, 0);
}

TEST(CudaHostLaunch, EmptyTensorsLaunchNothing) {
  const Tables<float> tab(schedule());
  ddpm::LinearParams<float, float> p;
  p.u = p.v = nullptr;
  p.out = nullptr;
  p.timesteps = {nullptr, schedule().T};
  p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
  p.batch = 0;
  p.sample_numel = 100;
  cuda_host::stats() = {};
  run_cuda(p, {nullptr, 1});
  p.generate_noise = true;
  run_cuda(p, {nullptr, 1});
  EXPECT_EQ(cuda_host::stats().launches, 0);
}

// A timestep outside [0, T) cannot be reported on the GPU without a host
// sync: that sample's outputs are NaN, the others' are exact.
TEST(CudaHostLaunch, BadTimestepsGiveNaNForTheirSampleOnly) {
  const Tables<double> tab(schedule());
  const int64_t batch = 4, numel = 300;
  std::mt19937_64 rng(7);
  StepInputs<float> in(Shape{batch, numel, 0, 1}, rng);
  in.t = {3, -1, 49, 50};
  Buffer<float> sample(batch * numel, 0), pred(batch * numel, 0);
  ddpm::StepParams<float, double> p;
  p.model_output = in.model_output.data();
  p.x_t = in.x_t.data();
  p.noise = in.noise.data();
  p.sample = sample.data();
  p.pred_xstart = pred.data();
  p.timesteps = {in.t.data(), schedule().T};
  p.tables = step_tables(tab, ddpm::StepKind::kDdpm);
  p.modes = {ddpm::StepKind::kDdpm, ddpm::MeanType::kEpsilon, ddpm::VarType::kFixedSmall, true, 0.0,
             false, false};
  p.batch = batch;
  p.sample_numel = numel;
  run_cuda(p, {nullptr, 1});
  Buffer<float> cpu_sample(batch * numel, 0), cpu_pred(batch * numel, 0);
  std::vector<int64_t> good = {3, 0, 49, 0};
  p.timesteps = {good.data(), schedule().T};
  p.sample = cpu_sample.data();
  p.pred_xstart = cpu_pred.data();
  ASSERT_EQ(ddpm::cpu_kernel(p), -1);
  for (int64_t b = 0; b < batch; ++b) {
    const bool bad = b == 1 || b == 3;
    for (int64_t i = 0; i < numel; ++i) {
      const int64_t e = b * numel + i;
      if (bad) {
        ASSERT_TRUE(std::isnan(sample.data()[e]) && std::isnan(pred.data()[e])) << e;
      } else {
        ASSERT_EQ(sample.data()[e], cpu_sample.data()[e]) << e;
        ASSERT_EQ(pred.data()[e], cpu_pred.data()[e]) << e;
      }
    }
  }
}

// The loss of a sample whose timestep is outside [0, T) is NaN; the others'
// are their CPU values.
TEST(CudaHostLaunch, DiffusionMseBadTimestepGivesNaNForItsSampleOnly) {
  const Tables<double> tab(schedule());
  const int64_t batch = 3, numel = 500;
  std::mt19937_64 rng(9);
  auto out = random_buffer<float>(batch * numel, 0, rng);
  auto x0 = random_buffer<float>(batch * numel, 0, rng);
  std::vector<int64_t> t = {3, 50, 49};
  std::vector<double> partials(batch);
  std::vector<float> loss(batch), want(batch);
  ddpm::LossParams<float, double> p;
  p.model_output = out.data();
  p.model_output_batch_stride = numel;
  p.x_start = x0.data();
  p.noise = x0.data();
  p.partials = partials.data();
  p.timesteps = {t.data(), schedule().T};
  p.tables = {tab.sqrt_abar.data(), tab.sqrt_1m_abar.data()};
  p.weight = nullptr;
  p.target = ddpm::LossTarget::kV;
  p.batch = batch;
  p.sample_numel = numel;
  p.loss = loss.data();
  run_cuda(p, {nullptr, 1});
  t[1] = 0;
  p.loss = want.data();
  ASSERT_EQ(ddpm::cpu_kernel(p), -1);
  expect_loss_near(want[0], loss[0], "sample 0");
  EXPECT_TRUE(std::isnan(loss[1]));
  expect_loss_near(want[2], loss[2], "sample 2");
}

}  // namespace
