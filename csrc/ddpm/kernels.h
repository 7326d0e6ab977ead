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

#include <cstdint>

#include "coefficients.h"
#include "philox.h"

namespace ddpm {

struct Timesteps {
  const int64_t* t;       // [batch]
  int64_t num_timesteps;  // T, the length of every table
};

// With generate_noise the noise is drawn in the kernel from noise_key (noise
// is then unused) and written to noise_out; otherwise it is read from noise.
template <typename scalar_t, typename table_t>
struct QSampleParams {
  const scalar_t* x_start;
  const scalar_t* noise;
  scalar_t* out;
  Timesteps timesteps;
  QSampleTables<table_t> tables;
  int64_t batch, sample_numel;
  bool generate_noise = false;
  NoiseKey noise_key = {0, 0};
  scalar_t* noise_out = nullptr;
};

// grad_x_start = sqrt(abar_t)*grad, grad_noise = sqrt(1-abar_t)*grad;
// grad_noise == nullptr: grad_x_start only (scale_by_timestep)
template <typename scalar_t, typename table_t>
struct QSampleBackwardParams {
  const scalar_t* grad;
  scalar_t* grad_x_start;
  scalar_t* grad_noise;
  Timesteps timesteps;
  QSampleTables<table_t> tables;
  int64_t batch, sample_numel;
};

// mean (elementwise) plus variance and log_variance, one value per sample.
template <typename scalar_t, typename table_t>
struct PosteriorParams {
  const scalar_t* x_start;
  const scalar_t* x_t;
  scalar_t* mean;
  scalar_t* variance;      // [batch]
  scalar_t* log_variance;  // [batch]
  Timesteps timesteps;
  PosteriorTables<table_t> tables;
  int64_t batch, sample_numel;
};

template <typename scalar_t, typename table_t>
struct PosteriorBackwardParams {
  const scalar_t* grad_mean;
  scalar_t* grad_x_start;
  scalar_t* grad_x_t;
  Timesteps timesteps;
  PosteriorTables<table_t> tables;
  int64_t batch, sample_numel;
};

using PSampleModes = StepModes;

// out[e] = the Philox normal of element e (ddpm/philox.h), e in [0, numel).
template <typename scalar_t>
struct PhiloxNormalParams {
  scalar_t* out;
  int64_t numel;
  NoiseKey key;
};

// Compile-time shape of a step's inner loop, from its runtime modes.
DDPM_HD bool step_mean_is_output(const StepModes& m) {
  return m.mean_type == MeanType::kPreviousX && !m.ddim;
}

// p_sample and the DDIM step (modes.ddim) share these parameters and kernels.
// With generate_noise the noise is drawn in the kernel from noise_key and
// noise is unused. A null pred_xstart is not written (sampling loops that
// drop it save a quarter of the step's memory traffic).
template <typename scalar_t, typename table_t>
struct PSampleParams {
  const scalar_t* model_output;  // [batch, 1 or 2, sample_numel]
  const scalar_t* x_t;
  const scalar_t* noise;
  scalar_t* sample;
  scalar_t* pred_xstart;  // or null: not written
  Timesteps timesteps;
  PSampleTables<table_t> tables;
  PSampleModes modes;
  int64_t batch, sample_numel;
  bool generate_noise = false;
  NoiseKey noise_key = {0, 0};
};

// A null grad_sample or grad_pred_xstart is a zero gradient (autograd's
// undefined gradient of an output the loss does not use), never read. noise
// is read only for a learned variance with a grad_sample, and may be null
// otherwise.
template <typename scalar_t, typename table_t>
struct PSampleBackwardParams {
  const scalar_t* grad_sample;       // or null
  const scalar_t* grad_pred_xstart;  // or null
  const scalar_t* model_output;
  const scalar_t* x_t;
  const scalar_t* noise;  // or null where not read (see above)
  scalar_t* grad_model_output;  // same layout as model_output
  scalar_t* grad_x_t;
  Timesteps timesteps;
  PSampleTables<table_t> tables;
  PSampleModes modes;
  int64_t batch, sample_numel;
};

// ---- CPU (csrc/cpu), instantiated for scalar_t in {float, double, Half,
// BFloat16} and table_t in {float, double}.
template <typename S, typename T>
int64_t q_sample_cpu(const QSampleParams<S, T>& p);
template <typename S, typename T>
int64_t q_sample_backward_cpu(const QSampleBackwardParams<S, T>& p);
template <typename S, typename T>
int64_t posterior_mean_variance_cpu(const PosteriorParams<S, T>& p);
template <typename S, typename T>
int64_t posterior_mean_variance_backward_cpu(
    const PosteriorBackwardParams<S, T>& p);
template <typename S, typename T>
int64_t p_sample_cpu(const PSampleParams<S, T>& p);
template <typename S, typename T>
int64_t p_sample_backward_cpu(const PSampleBackwardParams<S, T>& p);
template <typename S>
void philox_normal_cpu(const PhiloxNormalParams<S>& p);
// The CPU noise generator in use: "avx512", "avx2" or "default" (all give the
// same bits; TORCH_DDPM_CPU_CAPABILITY=avx2|default caps the choice).
const char* cpu_noise_generator();
// The clone of the CPU element loops the loader picked here: "avx512f",
// "arch=x86-64-v3" (AVX2, FMA, F16C) or "default" (SSE2).
const char* cpu_loop_clone();

// ---- CUDA (csrc/cuda): one launch on `stream` (a cudaStream_t), grid sized
// from the device's multiprocessor count. The caller checks the launch.
struct CudaLaunch {
  void* stream;
  int num_sms;
};
template <typename S, typename T>
void q_sample_cuda(const QSampleParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void q_sample_backward_cuda(const QSampleBackwardParams<S, T>& p,
                            CudaLaunch launch);
template <typename S, typename T>
void posterior_mean_variance_cuda(const PosteriorParams<S, T>& p,
                                  CudaLaunch launch);
template <typename S, typename T>
void posterior_mean_variance_backward_cuda(
    const PosteriorBackwardParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void p_sample_cuda(const PSampleParams<S, T>& p, CudaLaunch launch);
template <typename S, typename T>
void p_sample_backward_cuda(const PSampleBackwardParams<S, T>& p,
                            CudaLaunch launch);
template <typename S>
void philox_normal_cuda(const PhiloxNormalParams<S>& p, CudaLaunch launch);

}  // namespace ddpm

// Explicit instantiation over every (scalar, table) pair, for the .cpp/.cu
// files that define one of the templates above.
#define DDPM_INSTANTIATE_FOR_TYPES(MACRO) \
  MACRO(float, float)                     \
  MACRO(float, double)                    \
  MACRO(double, float)                    \
  MACRO(double, double)                   \
  MACRO(::ddpm::Half, float)              \
  MACRO(::ddpm::Half, double)             \
  MACRO(::ddpm::BFloat16, float)          \
  MACRO(::ddpm::BFloat16, double)
