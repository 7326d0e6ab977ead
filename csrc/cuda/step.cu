// The fused reverse steps (every StepKind) and their backward on CUDA: one
// pass over memory, the mode branches compiled away (see ddpm/elementwise.h).
//   model_output: [batch, 1 or 2, sample_numel] (2 for learned variances)
//   x_t, noise, sample, pred_xstart: [batch, sample_numel]
//   with in-kernel noise (noise_kernel) the noise is drawn, not read
//   a null pred_xstart is not written (a uniform branch, no extra instance)
//   kHistory earlier pred_x0 (history[0], [1]) added to the mean: DPM-Solver++
#include "ddpm/elementwise.h"
#include "elementwise.cuh"

namespace ddpm {
namespace {

// The coefficients come from the prologue (coefs, [batch]): a step's are
// logs, exponentials and square roots in double, formed once per sample per
// call rather than in every block that touches the sample.
template <typename S, typename T, typename P>
struct StepOpBase {
  static constexpr bool kBackward = std::is_same<P, StepBackwardParams<S, T>>::value;
  using acc = acc_t<S>;
  using Coef = StepCoef<acc>;
  // Register budget (see elementwise.cuh), in blocks of 256 threads per SM:
  // 16-bit data take 8 elements per load, so more registers.
  static constexpr int kMinBlocksPerSm = kBackward ? (sizeof(S) == 2 ? 3 : 4)
                                                   : (sizeof(S) == 4 ? 5 : 4);
  P p;
  const Coef* coefs;

  __device__ Coef form_coef(int64_t b) const {
    const int64_t t = cuda::checked_timestep(p.timesteps, b);
    return t < 0 ? nan_coef<acc, Coef>() : sample_step_coef<acc>(p, b, t);
  }
  __device__ Coef coef(int64_t b) const { return coefs[b]; }
  // Elements per sample of the model output: 2*sample_numel with a variance half.
  __device__ int64_t out_stride() const {
    return has_var_channels(p.modes) ? 2 * p.sample_numel : p.sample_numel;
  }
};

template <typename S, typename T, bool kMeanIsOutput, bool kLearned, int kHistory>
struct StepOp : StepOpBase<S, T, StepParams<S, T>> {
  using Base = StepOpBase<S, T, StepParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const int64_t out_off = b * this->out_stride() + i;
    return cuda::aligned16(p.model_output + out_off) &&
           (!kLearned || cuda::aligned16(p.model_output + out_off + p.sample_numel)) &&
           cuda::aligned16(p.x_t + off) && cuda::aligned16(p.noise + off) &&
           (kHistory < 1 || cuda::aligned16(p.history[0] + off)) &&
           (kHistory < 2 || cuda::aligned16(p.history[1] + off)) &&
           cuda::aligned16(p.sample + off) && cuda::aligned16_or_null(p.pred_xstart, off);
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    acc z[V];
    cuda::load_pack<V>(this->p.noise + b * this->p.sample_numel + i, z);
    step<V>(b, i, k, z);
  }
  // In-kernel noise: one element, its normal drawn by noise_kernel.
  __device__ void apply_noise(const Coef& k, int64_t b, int64_t i, float z) const {
    const acc noise[1] = {static_cast<acc>(z)};
    step<1>(b, i, k, noise);
  }
  // V elements from (b, i) given their noise: the rest is loaded and stored here.
  template <int V>
  __device__ void step(int64_t b, int64_t i, const Coef& k, const acc (&z)[V]) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const int64_t out_off = b * this->out_stride() + i;
    acc out[V], var_out[V], x[V], h1[V], h2[V], sample[V], pred[V];
    cuda::load_pack<V>(p.model_output + out_off, out);
    if (kLearned) {
      cuda::load_pack<V>(p.model_output + out_off + p.sample_numel, var_out);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) var_out[j] = acc(0);
    }
    cuda::load_pack<V>(p.x_t + off, x);
#pragma unroll
    for (int j = 0; j < V; ++j) h1[j] = h2[j] = acc(0);
    if (kHistory >= 1) cuda::load_pack<V>(p.history[0] + off, h1);
    if (kHistory >= 2) cuda::load_pack<V>(p.history[1] + off, h2);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const StepOut<acc> r = step_elem<kMeanIsOutput, kLearned, kHistory>(
          k, out[j], var_out[j], x[j], z[j], h1[j], h2[j]);
      sample[j] = r.sample;
      pred[j] = r.pred_xstart;
    }
    cuda::store_pack<V>(p.sample + off, sample);
    if (p.pred_xstart != nullptr) cuda::store_pack<V>(p.pred_xstart + off, pred);
  }
};

template <typename S, typename T, bool kMeanIsOutput, bool kLearned>
struct StepBackwardOp : StepOpBase<S, T, StepBackwardParams<S, T>> {
  using Base = StepOpBase<S, T, StepBackwardParams<S, T>>;
  using typename Base::acc;
  using typename Base::Coef;

  __device__ bool aligned(int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const int64_t out_off = b * this->out_stride() + i;
    const int64_t var_off = out_off + (has_var_channels(p.modes) ? p.sample_numel : 0);
    return cuda::aligned16_or_null(p.grad_sample, off) &&
           cuda::aligned16_or_null(p.grad_pred_xstart, off) &&
           cuda::aligned16(p.model_output + out_off) &&
           cuda::aligned16(p.model_output + var_off) &&
           cuda::aligned16(p.grad_model_output + out_off) &&
           cuda::aligned16(p.grad_model_output + var_off) &&
           cuda::aligned16(p.x_t + off) &&
           (!reads_noise() || cuda::aligned16(p.noise + off)) &&
           cuda::aligned16(p.grad_x_t + off);
  }
  // The noise enters only the learned variance's gradient, through grad_sample.
  __device__ bool reads_noise() const {
    return kLearned && this->p.grad_sample != nullptr;
  }
  template <int V>
  __device__ void apply(const Coef& k, int64_t b, int64_t i) const {
    const auto& p = this->p;
    const int64_t off = b * p.sample_numel + i;
    const int64_t out_off = b * this->out_stride() + i;
    acc gs[V], gp[V], out[V], var_out[V], x[V], z[V], g_out[V], g_var[V], g_x[V];
    // absent gradients (null) are zeros
    cuda::load_pack_or_zero<V>(p.grad_sample, off, gs);
    cuda::load_pack_or_zero<V>(p.grad_pred_xstart, off, gp);
    cuda::load_pack<V>(p.model_output + out_off, out);
    if (kLearned) {
      cuda::load_pack<V>(p.model_output + out_off + p.sample_numel, var_out);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) var_out[j] = acc(0);
    }
    cuda::load_pack<V>(p.x_t + off, x);
    cuda::load_pack_or_zero<V>(reads_noise() ? p.noise : nullptr, off, z);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const StepGrad<acc> g = step_backward_elem<kMeanIsOutput, kLearned>(
          k, gs[j], gp[j], out[j], var_out[j], x[j], z[j]);
      g_out[j] = g.out;
      g_var[j] = g.var_out;
      g_x[j] = g.x_t;
    }
    cuda::store_pack<V>(p.grad_model_output + out_off, g_out);
    if (has_var_channels(p.modes)) {  // zero for a DDIM step, which ignores it
      cuda::store_pack<V>(p.grad_model_output + out_off + p.sample_numel, g_var);
    }
    cuda::store_pack<V>(p.grad_x_t + off, g_x);
  }
};

// The forward step draws its noise in the kernel when asked to.
template <typename S, typename Op, typename T>
void launch_op(const Op& op, const StepParams<S, T>& p, CudaLaunch launch) {
  if (p.generate_noise) {
    cuda::launch_noise(op, p.batch, p.sample_numel, p.noise_key, launch);
  } else {
    cuda::launch_elementwise<S>(op, p.batch, p.sample_numel, launch);
  }
}
template <typename S, typename Op, typename T>
void launch_op(const Op& op, const StepBackwardParams<S, T>& p, CudaLaunch launch) {
  cuda::launch_elementwise<S>(op, p.batch, p.sample_numel, launch);
}

// The forward step's Op with its earlier pred_x0 (history) read, kHistory
// fixed; its other modes as the backward's.
template <int kHistory>
struct StepOpWithHistory {
  template <typename S, typename T, bool kMeanIsOutput, bool kLearned>
  using Op = StepOp<S, T, kMeanIsOutput, kLearned, kHistory>;
};

// Launches Op<S, T, mean_is_output, learned> for the runtime modes.
template <template <typename, typename, bool, bool> class Op, typename S,
          typename T, typename P>
void launch_for_modes(const P& p, CudaLaunch launch) {
  if (p.batch == 0 || p.sample_numel == 0) return;
  // the prologue into the workspace, then the kernel that reads it
  auto* coefs = static_cast<StepCoef<acc_t<S>>*>(launch.workspace);
  const auto run = [&](auto op) {
    cuda::launch_coef_prologue(op, p.batch, coefs, launch);
    op.coefs = coefs;
    launch_op<S>(op, p, launch);
  };
  // a multistep step (the only one that reads earlier pred_x0) has neither
  // an output mean nor a learned variance
  if constexpr (!StepOpBase<S, T, P>::kBackward) {
    const int history = step_history_count(p.modes);
    if (history == 2) return run(StepOp<S, T, false, false, 2>{{p, nullptr}});
    if (history == 1) return run(StepOp<S, T, false, false, 1>{{p, nullptr}});
  }
  const bool mean_is_output = step_mean_is_output(p.modes);
  const bool learned = reads_var_channels(p.modes);
  if (mean_is_output && learned) {
    run(Op<S, T, true, true>{{p, nullptr}});
  } else if (mean_is_output) {
    run(Op<S, T, true, false>{{p, nullptr}});
  } else if (learned) {
    run(Op<S, T, false, true>{{p, nullptr}});
  } else {
    run(Op<S, T, false, false>{{p, nullptr}});
  }
}

}  // namespace

template <typename S, typename T>
void cuda_kernel(const StepParams<S, T>& p, CudaLaunch launch) {
  launch_for_modes<StepOpWithHistory<0>::Op, S, T>(p, launch);
}

template <typename S, typename T>
void cuda_kernel(const StepBackwardParams<S, T>& p,
                            CudaLaunch launch) {
  launch_for_modes<StepBackwardOp, S, T>(p, launch);
}

DDPM_INSTANTIATE_CUDA(cuda_kernel, StepParams)
DDPM_INSTANTIATE_CUDA(cuda_kernel, StepBackwardParams)

}  // namespace ddpm
