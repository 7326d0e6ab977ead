// The fused reverse steps (every StepKind: p_sample, ddim_sample) on the CPU,
// one pass over memory.
//   model_output: [batch, 1 or 2, sample_numel] (2 for learned variances)
//   x_t, noise, sample, pred_xstart: [batch, sample_numel]
//   pred_x0 = clamp(A_t*x_t + B_t*out), mean = c1_t*pred_x0 + c2_t*x_t,
//   sample = mean + [t>0]*exp(log_var/2)*noise  (see ddpm/elementwise.h)
//   with in-kernel noise the noise is a float Philox block (noise.h) instead
//   of a tensor: still one pass, reading model_output and x_t only
//   pred_xstart null (the sample_out overloads): not written, a quarter less
//   traffic for sampling loops that drop it
//   h1, h2: the earlier steps' pred_x0 a multistep step (DPM-Solver++ of
//   order 2 or 3) adds to its mean, [batch, sample_numel], read like x_t
#include "ddpm/elementwise.h"
#include "loops.h"
#include "noise.h"

namespace ddpm {
namespace {

// N: S for a noise tensor, float for in-kernel noise (inlined into the noise
// pass, see noise.h). kWritePred false: pred_xstart is null, not written.
// x_t and sample are not __restrict: sample may be x_t (the in-place step of
// sampling loops), and so the compiler may not re-read x_t after writing
// sample; its alias check lets equal pointers take the vector loop.
template <bool kMeanIsOutput, bool kLearnedVar, bool kWritePred, int kHistory,
          typename S, typename N, typename acc>
DDPM_ALWAYS_INLINE inline void step_loop(
    StepCoef<acc> k, const S* __restrict out,
    const S* __restrict var_out, const S* x_t,
    const N* __restrict noise, const S* __restrict h1,
    const S* __restrict h2, S* sample,
    S* __restrict pred_xstart, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc v = kLearnedVar ? load(var_out + i) : acc(0);
    const StepOut<acc> r = step_elem<kMeanIsOutput, kLearnedVar, kHistory>(
        k, load(out + i), v, load(x_t + i),
        static_cast<acc>(load(noise + i)),
        kHistory >= 1 ? load(h1 + i) : acc(0),
        kHistory >= 2 ? load(h2 + i) : acc(0));
    store(sample + i, r.sample);
    if (kWritePred) store(pred_xstart + i, r.pred_xstart);
  }
}

template <bool kMeanIsOutput, bool kLearnedVar, bool kWritePred, int kHistory,
          typename S, typename acc>
DDPM_CPU_CLONES void step_run(StepCoef<acc> k,
                                  const S* __restrict out,
                                  const S* __restrict var_out,
                                  const S* x_t,
                                  const S* __restrict noise,
                                  const S* __restrict h1,
                                  const S* __restrict h2, S* sample,
                                  S* __restrict pred_xstart, int64_t n) {
  step_loop<kMeanIsOutput, kLearnedVar, kWritePred, kHistory>(
      k, out, var_out, x_t, noise, h1, h2, sample, pred_xstart, n);
}

// kHasGradSample / kHasGradPred false: that gradient is zero (its pointer
// is null) and is not read. Compile-time, so that each version vectorizes.
template <bool kMeanIsOutput, bool kLearnedVar, bool kHasGradSample,
          bool kHasGradPred, typename S, typename acc>
DDPM_ALWAYS_INLINE inline void step_backward_loop(
    StepCoef<acc> k, const S* __restrict grad_sample,
    const S* __restrict grad_pred_xstart, const S* __restrict out,
    const S* __restrict var_out, const S* __restrict x_t,
    const S* __restrict noise, S* __restrict grad_out,
    S* __restrict grad_var_out, S* __restrict grad_x_t, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const acc v = kLearnedVar ? load(var_out + i) : acc(0);
    const StepGrad<acc> g =
        step_backward_elem<kMeanIsOutput, kLearnedVar>(
            k, kHasGradSample ? load(grad_sample + i) : acc(0),
            kHasGradPred ? load(grad_pred_xstart + i) : acc(0), load(out + i),
            v, load(x_t + i),
            kLearnedVar && kHasGradSample ? load(noise + i) : acc(0));
    store(grad_out + i, g.out);
    if (kLearnedVar) store(grad_var_out + i, g.var_out);
    store(grad_x_t + i, g.x_t);
  }
}

// grad_sample or grad_pred_xstart null: a zero gradient, not read.
template <bool kMeanIsOutput, bool kLearnedVar, typename S, typename acc>
DDPM_CPU_CLONES void step_backward_run(StepCoef<acc> k,
                           const S* __restrict grad_sample,
                           const S* __restrict grad_pred_xstart,
                           const S* __restrict out, const S* __restrict var_out,
                           const S* __restrict x_t, const S* __restrict noise,
                           S* __restrict grad_out, S* __restrict grad_var_out,
                           S* __restrict grad_x_t, int64_t n) {
  const auto loop = [&](auto has_grad_sample, auto has_grad_pred)
                        DDPM_ALWAYS_INLINE {
    step_backward_loop<kMeanIsOutput, kLearnedVar,
                           decltype(has_grad_sample)::value,
                           decltype(has_grad_pred)::value>(
        k, grad_sample, grad_pred_xstart, out, var_out, x_t, noise,
        grad_out, grad_var_out, grad_x_t, n);
  };
  using F = std::false_type;
  using T = std::true_type;
  if (grad_sample != nullptr) {
    grad_pred_xstart != nullptr ? loop(T{}, T{}) : loop(T{}, F{});
  } else {
    grad_pred_xstart != nullptr ? loop(F{}, T{}) : loop(F{}, F{});
  }
  // A DDIM step ignores the variance half: its gradient is zero.
  if (!kLearnedVar && grad_var_out != nullptr) {
    for (int64_t i = 0; i < n; ++i) store(grad_var_out + i, acc(0));
  }
}

// Calls fn(std::integral_constant<bool, mean_is_output>{},
//          std::integral_constant<bool, learned_var>{}) so that the inner
// loops are compiled without mode branches.
template <typename Fn>
void dispatch_modes(const StepModes& modes, const Fn& fn) {
  using F = std::false_type;
  using T = std::true_type;
  const bool mean_is_output = step_mean_is_output(modes);
  const bool learned = reads_var_channels(modes);
  if (mean_is_output) {
    learned ? fn(T{}, T{}) : fn(T{}, F{});
  } else {
    learned ? fn(F{}, T{}) : fn(F{}, F{});
  }
}

// fn(std::true_type{}) or fn(std::false_type{}): a compile-time flag.
template <typename Fn>
void dispatch_bool(bool flag, const Fn& fn) {
  flag ? fn(std::true_type{}) : fn(std::false_type{});
}

// The forward step's modes, with how many earlier pred_x0 it reads: fn(mean
// is output, learned, history count), each an integral_constant. Only a
// multistep step reads them, and it has neither of the other two.
template <typename Fn>
void dispatch_forward_modes(const StepModes& modes, const Fn& fn) {
  using F = std::false_type;
  const int history = step_history_count(modes);
  if (history == 2) return fn(F{}, F{}, std::integral_constant<int, 2>{});
  if (history == 1) return fn(F{}, F{}, std::integral_constant<int, 1>{});
  dispatch_modes(modes, [&](auto mean_is_output, auto learned) {
    fn(mean_is_output, learned, std::integral_constant<int, 0>{});
  });
}

template <typename acc, typename P>
int64_t gather_step_coefs(const P& p, std::vector<StepCoef<acc>>& coefs) {
  return cpu::gather_coefficients(p.timesteps, p.batch, coefs, [&](int64_t b, int64_t t) {
    return sample_step_coef<acc>(p, b, t);
  });
}

}  // namespace

template <typename S, typename T>
int64_t cpu_kernel(const StepParams<S, T>& p) {
  std::vector<StepCoef<acc_t<S>>> coefs;
  if (const int64_t bad = gather_step_coefs(p, coefs); bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  const bool write_pred = p.pred_xstart != nullptr;
  dispatch_forward_modes(p.modes, [&](auto mean_is_output, auto learned, auto history) {
    dispatch_bool(write_pred, [&](auto write_pred_xstart) {
      constexpr bool kMeanIsOutput = decltype(mean_is_output)::value;
      constexpr bool kLearned = decltype(learned)::value;
      constexpr bool kWritePred = decltype(write_pred_xstart)::value;
      constexpr int kHistory = decltype(history)::value;
      const auto at_or_null = [](const S* data, int64_t off) {
        return data != nullptr ? data + off : nullptr;
      };
      const int64_t out_stride = has_var_channels(p.modes) ? 2 * n : n;
      if (p.generate_noise) {
        cpu::for_each_noise_run(
            p.batch, n, p.noise_key.resolved(),
            [&](int64_t b, int64_t i0, int64_t i1, const float* z)
                DDPM_ALWAYS_INLINE {
              const int64_t off = b * n + i0;
              const S* out = p.model_output + b * out_stride + i0;
              step_loop<kMeanIsOutput, kLearned, kWritePred, kHistory>(
                  coefs[b], out, out + n, p.x_t + off, z, at_or_null(p.history[0], off),
                  at_or_null(p.history[1], off), p.sample + off,
                  kWritePred ? p.pred_xstart + off : nullptr, i1 - i0);
            },
            [&](int64_t b, int64_t i0, int64_t i1, cpu::NoisePrefetch& next) {
              const int64_t off = b * n + i0;
              const S* out = p.model_output + b * out_stride + i0;
              const int64_t len = i1 - i0;
              next.add(out, len, false);
              if (kLearned) next.add(out + n, len, false);
              next.add(p.x_t + off, len, false);
              if (kHistory >= 1) next.add(p.history[0] + off, len, false);
              if (kHistory >= 2) next.add(p.history[1] + off, len, false);
              next.add(p.sample + off, len, true);
              if (kWritePred) next.add(p.pred_xstart + off, len, true);
            });
        return;
      }
      cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0,
                                               int64_t i1) {
        const int64_t off = b * n + i0;
        const S* out = p.model_output + b * out_stride + i0;
        step_run<kMeanIsOutput, kLearned, kWritePred, kHistory>(
            coefs[b], out, out + n, p.x_t + off, p.noise + off,
            at_or_null(p.history[0], off), at_or_null(p.history[1], off),
            p.sample + off, kWritePred ? p.pred_xstart + off : nullptr,
            i1 - i0);
      });
    });
  });
  return -1;
}

template <typename S, typename T>
int64_t cpu_kernel(const StepBackwardParams<S, T>& p) {
  using acc = acc_t<S>;
  std::vector<StepCoef<acc>> coefs;
  if (const int64_t bad = gather_step_coefs(p, coefs); bad >= 0) return bad;
  const int64_t n = p.sample_numel;
  dispatch_modes(p.modes, [&](auto mean_is_output, auto learned) {
    constexpr bool kMeanIsOutput = decltype(mean_is_output)::value;
    constexpr bool kLearned = decltype(learned)::value;
    const bool var_channels = has_var_channels(p.modes);
    const int64_t out_stride = var_channels ? 2 * n : n;
    cpu::for_each_sample_run(p.batch, n, [&](int64_t b, int64_t i0,
                                             int64_t i1) {
      const int64_t off = b * n + i0;
      const int64_t out_off = b * out_stride + i0;
      const auto at = [off](const S* data) {  // a null gradient stays null
        return data != nullptr ? data + off : nullptr;
      };
      step_backward_run<kMeanIsOutput, kLearned>(
          coefs[b], at(p.grad_sample), at(p.grad_pred_xstart),
          p.model_output + out_off, p.model_output + out_off + n,
          p.x_t + off, at(p.noise), p.grad_model_output + out_off,
          var_channels ? p.grad_model_output + out_off + n : nullptr,
          p.grad_x_t + off, i1 - i0);
    });
  });
  return -1;
}

DDPM_INSTANTIATE_CPU(cpu_kernel, StepParams)
DDPM_INSTANTIATE_CPU(cpu_kernel, StepBackwardParams)

}  // namespace ddpm
