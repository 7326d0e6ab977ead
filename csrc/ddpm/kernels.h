// Torch-free entry points of the kernels: raw pointers and sizes only.
//
// Every data tensor is contiguous with shape [batch, sample_numel] as seen by
// the kernel (the glue in ops/ makes it so). Model outputs of learned-variance
// modes are [batch, 2, sample_numel]: the mean half then the variance half of
// each sample, which is what a contiguous [B, 2C, ...] tensor is.
//
// CPU entry points return -1, or the index b of the first sample whose
// timestep is outside [0, num_timesteps) (nothing is written then). CUDA entry
// points cannot report that without a host sync: such samples get NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "coefficients.h"
#include "philox.h"

namespace ddpm {

struct Timesteps {
  const int64_t* t;       // [batch]
  int64_t num_timesteps;  // T, the length of every table
};

// Offset noise (lucidrains' and diffusers' noise_offset): the noise of
// element i of sample b is v + offset[b*channels + i/channel_numel], one value
// per (sample, channel), added in the compute type (16-bit noise is not
// rounded after it). A null offset adds nothing.
template <typename scalar_t>
struct NoiseOffset {
  const scalar_t* offset = nullptr;  // [batch, channels]
  int64_t channels = 0, channel_numel = 0;
  DDPM_HD bool present() const { return offset != nullptr; }
  // the offset of element i of sample b (present() only)
  DDPM_HD acc_t<scalar_t> at(int64_t b, int64_t i) const {
    return load(offset + b * channels + i / channel_numel);
  }
};

// out = a[t]*u + b[t]*v per sample (LinearTables): q_sample (u = x_start,
// v = noise) and the posterior mean (u = x_start, v = x_t). out may be u or
// v itself (in place), never overlap them otherwise.
// With generate_noise, v is drawn in the kernel from noise_key (v is then
// unused) and written to noise_out. Where per_sample_tables[i] is set,
// per_sample[i][b] = per_sample_tables[i][t[b]] (the posterior's variance
// and log variance), written even when sample_numel is 0.
template <typename scalar_t, typename table_t>
struct LinearParams {
  const scalar_t* u;
  const scalar_t* v;
  scalar_t* out;
  Timesteps timesteps;
  LinearTables<table_t> tables;
  int64_t batch, sample_numel;
  bool generate_noise = false;
  NoiseKey noise_key = {0, 0};
  scalar_t* noise_out = nullptr;
  const table_t* per_sample_tables[2] = {nullptr, nullptr};
  scalar_t* per_sample[2] = {nullptr, nullptr};  // [batch] each
  NoiseOffset<scalar_t> noise_offset;  // added to v (q_sample with a noise tensor only)
};

// The backward: grad_u = a[t]*grad, grad_v = b[t]*grad; grad_v null:
// grad_u alone (scale_by_timestep).
template <typename scalar_t, typename table_t>
struct LinearBackwardParams {
  const scalar_t* grad;
  scalar_t* grad_u;
  scalar_t* grad_v;
  Timesteps timesteps;
  LinearTables<table_t> tables;
  int64_t batch, sample_numel;
};

// out[e] = the Philox normal of element e (ddpm/philox.h), e in [0, numel).
template <typename scalar_t>
struct PhiloxNormalParams {
  scalar_t* out;
  int64_t numel;
  NoiseKey key;
};

// Every kind of step (modes.kind) shares these parameters and kernels.
// With generate_noise the noise is drawn in the kernel from noise_key and
// noise is unused. A null pred_xstart is not written (sampling loops that
// drop it save a quarter of the step's memory traffic).
template <typename scalar_t, typename table_t>
struct StepParams {
  const scalar_t* model_output;  // [batch, 1 or 2, sample_numel]
  const scalar_t* x_t;
  const scalar_t* noise;
  scalar_t* sample;
  scalar_t* pred_xstart;  // or null: not written
  // the pred_xstart of the steps one and two before, [batch, sample_numel]:
  // the first step_history_count(modes) are read (DPM-Solver++), else null
  const scalar_t* history[2] = {nullptr, nullptr};
  Timesteps timesteps;
  StepTables<table_t> tables;
  StepModes modes;
  int64_t batch, sample_numel;
  bool generate_noise = false;
  NoiseKey noise_key = {0, 0};
  const table_t* clip_bound = nullptr;  // [batch] or null: 1 (see clip_coef)
};

// A null grad_sample or grad_pred_xstart is a zero gradient (autograd's
// undefined gradient of an output the loss does not use), never read. noise
// is read only for a learned variance with a grad_sample, and may be null
// otherwise.
template <typename scalar_t, typename table_t>
struct StepBackwardParams {
  const scalar_t* grad_sample;       // or null
  const scalar_t* grad_pred_xstart;  // or null
  const scalar_t* model_output;
  const scalar_t* x_t;
  const scalar_t* noise;  // or null where not read (see above)
  scalar_t* grad_model_output;  // same layout as model_output
  scalar_t* grad_x_t;
  Timesteps timesteps;
  StepTables<table_t> tables;
  StepModes modes;
  int64_t batch, sample_numel;
  const table_t* clip_bound = nullptr;  // as StepParams'
};

// The coefficients of sample b (timestep t in range) of a step or its
// backward: the tables' at t, the clip bound's at b.
template <typename acc, typename P>
DDPM_HD StepCoef<acc> sample_step_coef(const P& p, int64_t b, int64_t t) {
  const double bound = p.clip_bound != nullptr ? static_cast<double>(p.clip_bound[b]) : 1.0;
  return step_coef<acc>(p.tables, t, p.modes, bound);
}

// diffusion_mse, the training loss of one batch:
//   loss[b] = w[t_b] * mean_i (model_output[b, i] - target[b, i])^2
// with w = weight (a table of length T) or 1, and the target of `target`
// (elementwise.h: loss_diff). Sample b of model_output starts at
// b*model_output_batch_stride (>= sample_numel: the mean half of a learned-
// variance output, a channel slice, is read where it lies); x_start and
// noise are [batch, sample_numel], the noise offset by noise_offset if
// given. The sums are in double, per tile of kLossTile elements of one
// sample into partials[b*tiles + j], then over the tiles in order: the same
// loss for any thread count or grid. An empty sample's loss is NaN (the mean
// of nothing, as torch.mean).
constexpr int64_t kLossTile = 8192;
DDPM_HD int64_t loss_tiles_per_sample(int64_t sample_numel) {
  return (sample_numel + kLossTile - 1) / kLossTile;
}

template <typename scalar_t, typename table_t>
struct LossParams {
  const scalar_t* model_output;
  int64_t model_output_batch_stride;
  const scalar_t* x_start;
  const scalar_t* noise;
  acc_t<scalar_t>* loss;  // [batch]
  double* partials;       // [batch * loss_tiles_per_sample(sample_numel)]
  Timesteps timesteps;
  LinearTables<table_t> tables;  // sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod
  const table_t* weight;         // or null: 1
  LossTarget target;
  int64_t batch, sample_numel;
  NoiseOffset<scalar_t> noise_offset;  // the target's noise is noise + offset
};

// Its backward: grad_model_output[b, i] = 2*grad[b]*w[t_b]/N * (out - target),
// grad_model_output contiguous [batch, sample_numel].
template <typename scalar_t, typename table_t>
struct LossBackwardParams {
  const acc_t<scalar_t>* grad;  // [batch]
  const scalar_t* model_output;
  int64_t model_output_batch_stride;
  const scalar_t* x_start;
  const scalar_t* noise;
  scalar_t* grad_model_output;
  Timesteps timesteps;
  LinearTables<table_t> tables;
  const table_t* weight;
  LossTarget target;
  int64_t batch, sample_numel;
  NoiseOffset<scalar_t> noise_offset;
};

// Calls fn(std::integral_constant<LossTarget, target>{}): the loops are
// compiled once per target, reading only what it needs.
template <typename Fn>
void dispatch_loss_target(LossTarget target, const Fn& fn) {
  switch (target) {
    case LossTarget::kEpsilon:
      fn(std::integral_constant<LossTarget, LossTarget::kEpsilon>{});
      break;
    case LossTarget::kStartX:
      fn(std::integral_constant<LossTarget, LossTarget::kStartX>{});
      break;
    case LossTarget::kV:
      fn(std::integral_constant<LossTarget, LossTarget::kV>{});
      break;
  }
}

// The backward's per-sample coefficients (t in range), in double then acc.
template <typename acc, typename P>
DDPM_HD LossCoef<acc> loss_backward_coef(const P& p, int64_t b, int64_t t) {
  const double w = p.weight != nullptr ? static_cast<double>(p.weight[t]) : 1.0;
  const double scale =
      2.0 * static_cast<double>(p.grad[b]) * w / static_cast<double>(p.sample_numel);
  return loss_coef<acc>(p.tables, t, scale);
}

// The loss of sample b from its tile sums (t in range).
template <typename P>
DDPM_HD double loss_from_partials(const P& p, int64_t b, int64_t t) {
  const int64_t tiles = loss_tiles_per_sample(p.sample_numel);
  double sum = 0.0;
  for (int64_t j = 0; j < tiles; ++j) sum += p.partials[b * tiles + j];
  const double w = p.weight != nullptr ? static_cast<double>(p.weight[t]) : 1.0;
  return w * (sum / static_cast<double>(p.sample_numel));
}

// ---- CPU (csrc/cpu), instantiated for scalar_t in {float, double, Half,
// BFloat16} and table_t in {float, double}.
template <typename S, typename T>
int64_t cpu_kernel(const LinearParams<S, T>& p);
template <typename S, typename T>
int64_t cpu_kernel(const LinearBackwardParams<S, T>& p);
template <typename S, typename T>
int64_t cpu_kernel(const StepParams<S, T>& p);
template <typename S, typename T>
int64_t cpu_kernel(const StepBackwardParams<S, T>& p);
template <typename S>
int64_t cpu_kernel(const PhiloxNormalParams<S>& p);
template <typename S, typename T>
int64_t cpu_kernel(const LossParams<S, T>& p);
template <typename S, typename T>
int64_t cpu_kernel(const LossBackwardParams<S, T>& p);
// The CPU noise generator in use: "avx512", "avx2" or "default" (all give the
// same bits; TORCH_DDPM_CPU_CAPABILITY=avx2|default caps the choice).
const char* cpu_noise_generator();
// The clone of the CPU element loops the loader picked here: "avx512f",
// "arch=x86-64-v3" (AVX2, FMA, F16C) or "default" (SSE2).
const char* cpu_loop_clone();

// ---- CUDA (csrc/cuda): launches on `stream` (a cudaStream_t), grids sized
// from the device's multiprocessor count. The caller checks the launch, and
// provides `workspace`: cuda_workspace_bytes(p) bytes of device memory
// (16-byte aligned) that the call's kernels may use until they finish (null
// where that is 0).
struct CudaLaunch {
  void* stream;
  int num_sms;
  void* workspace = nullptr;
};
// The steps keep the per-sample coefficients their prologue forms there
// (csrc/cuda/elementwise.cuh); every other call needs none.
template <typename P>
size_t cuda_workspace_bytes(const P&) {
  return 0;
}
template <typename S, typename T>
size_t cuda_workspace_bytes(const StepParams<S, T>& p) {
  return static_cast<size_t>(p.batch) * sizeof(StepCoef<acc_t<S>>);
}
template <typename S, typename T>
size_t cuda_workspace_bytes(const StepBackwardParams<S, T>& p) {
  return static_cast<size_t>(p.batch) * sizeof(StepCoef<acc_t<S>>);
}
template <typename S, typename T>
void cuda_kernel(const LinearParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void cuda_kernel(const LinearBackwardParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void cuda_kernel(const StepParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void cuda_kernel(const StepBackwardParams<S, T>& p,
                            CudaLaunch launch);
template <typename S>
void cuda_kernel(const PhiloxNormalParams<S>& p, CudaLaunch launch);
// diffusion_mse: two launches (tile sums, then the per-sample sum); a bad
// timestep gives its sample a NaN loss (and NaN gradients).
template <typename S, typename T>
void cuda_kernel(const LossParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void cuda_kernel(const LossBackwardParams<S, T>& p, CudaLaunch launch);

}  // namespace ddpm

// Explicit instantiation of a CPU or CUDA entry point above (fn, taking its
// Params<S, T>) over every (scalar, table) pair, in the .cpp/.cu file that
// defines it.
#define DDPM_FOR_EVERY_TYPE_PAIR(M, fn, Params) \
  M(float, float, fn, Params)                     \
  M(float, double, fn, Params)                    \
  M(double, float, fn, Params)                    \
  M(double, double, fn, Params)                   \
  M(::ddpm::Half, float, fn, Params)              \
  M(::ddpm::Half, double, fn, Params)             \
  M(::ddpm::BFloat16, float, fn, Params)          \
  M(::ddpm::BFloat16, double, fn, Params)
#define DDPM_CPU_ENTRY(S, T, fn, Params) template int64_t fn<S, T>(const Params<S, T>&);
#define DDPM_CUDA_ENTRY(S, T, fn, Params) \
  template void fn<S, T>(const Params<S, T>&, ::ddpm::CudaLaunch);
#define DDPM_INSTANTIATE_CPU(fn, Params) DDPM_FOR_EVERY_TYPE_PAIR(DDPM_CPU_ENTRY, fn, Params)
#define DDPM_INSTANTIATE_CUDA(fn, Params) DDPM_FOR_EVERY_TYPE_PAIR(DDPM_CUDA_ENTRY, fn, Params)
