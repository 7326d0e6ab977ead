// Argument checks and dtype dispatch shared by every operator and backend.
// Every failure is a RuntimeError (c10::Error) whose message starts with the
// operator's name and names the argument and what was expected.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <string>
#include <utility>

#include "call_args.h"
#include "ddpm/kernels.h"

namespace ddpm {
namespace ops {

using NamedTensor = std::pair<const char*, const at::Tensor*>;

// x: a tensor of float32, float64, float16 or bfloat16 (any shape).
void check_float_dtype(const char* op, const char* name, const at::Tensor& x);

// data: float32, float64, float16 or bfloat16, at least 1-D (dim 0 = batch).
void check_data_tensor(const char* op, const char* name, const at::Tensor& x);

// `other` has the same shape, dtype and device as `ref`.
void check_like(const char* op, const NamedTensor& other, const NamedTensor& ref);

// t: int64, shape [batch], on x's device.
void check_timesteps(const char* op, const at::Tensor& t, const at::Tensor& x);

// Schedule tables: 1-D, one length T >= 1, one dtype (float32 or float64),
// on x's device. Returns T.
int64_t check_tables(const char* op, c10::ArrayRef<NamedTensor> tables,
                     const at::Tensor& x);

// (seed, offset) of in-kernel noise: any 64-bit seed (a negative int64 is
// its two's complement), offset >= 0 and a multiple of 4 (it counts 32-bit
// draws per Philox subsequence; see ddpm/philox.h).
NoiseKey check_noise_key(const char* op, int64_t seed, int64_t offset);

// The (seed, offset) of one call from a generator (None: the default one of
// device), as torch_ddpm.noise.philox_seed_offset takes it: a CPU generator
// gives one int64 draw (torch.randint's) and offset 0; a CUDA generator its
// seed and offset, advanced by 4 (under CUDA graph capture: the pointers
// the kernel reads them through at each replay). Meta: (0, 0), nothing drawn.
NoiseKey draw_noise_key(const char* op, const c10::IValue& generator, const at::Device& device);
// The CUDA half of draw_noise_key, set by the CUDA backend when it loads.
using CudaNoiseKeyDrawer = NoiseKey (*)(const char* op, const c10::optional<at::Generator>&,
                                        const at::Device&);
void set_cuda_noise_key_drawer(CudaNoiseKeyDrawer drawer);

// noise_offset (offset noise): null (None), or [B, C] of x's dtype on x's
// device, x being at least 2-D ([B, C, ...]).
void check_noise_offset(const char* op, const at::Tensor* noise_offset, const at::Tensor& x);

MeanType parse_mean_type(const char* op, const std::string& name);
VarType parse_var_type(const char* op, const std::string& name);
// DPM-Solver++'s second-order form ("midpoint" or "heun": whether heun) and
// algorithm ("dpmsolver++" or "sde-dpmsolver++": whether sde).
bool parse_solver_type_is_heun(const char* op, const std::string& name);
bool parse_algorithm_type_is_sde(const char* op, const std::string& name);
// diffusion_mse's target: 'epsilon', 'start_x' or 'v' (any case).
LossTarget parse_loss_target(const char* op, const std::string& name);

// Raises the error for a timestep outside [0, T) reported by a CPU kernel.
void fail_bad_timestep(const char* op, const at::Tensor& t, int64_t index,
                       int64_t num_timesteps);

// The output at position `out` of the call (an out= or sample= argument), or
// a new contiguous tensor like ref where out is -1 (a functional call). A
// given one is checked to have ref's shape, dtype and device, to be
// contiguous, and to share no memory with any other argument of the call,
// tables, t and clip bounds included, but `in_place_with` (-1: none), which
// it may be itself (the same memory, laid out alike): the in-place forms the
// kernels are written for (their CPU loops leave that pair of pointers
// unrestricted).
at::Tensor output_like(const char* op, const CallArgs& args, int out, const at::Tensor& ref,
                       int in_place_with);

// Every t in [0, T), checked on the host where t is on the CPU (the kernels
// check it as they read it; this is for what must not happen before the
// check, such as drawing a generator's key). On a GPU the kernels write NaN
// for a bad timestep instead (no host sync).
void check_timestep_values(const char* op, const at::Tensor& t, int64_t num_timesteps);

// Where an operator's in-kernel noise key comes from: (seed, offset), a
// generator, or a key tensor (-1 where the schema has none).
struct NoiseKeyArgs {
  int seed, offset, generator, key;
  explicit NoiseKeyArgs(const c10::FunctionSchema& s)
      : seed(optional_arg(s, "seed")),
        offset(optional_arg(s, "offset")),
        generator(optional_arg(s, "generator")),
        key(optional_arg(s, "key")) {}
};

// The key of a key tensor (int64 [2]: seed, offset): its values, checked,
// where it is on the CPU; where it is on the data's CUDA device, pointers to
// them, read when the kernel runs (the offset is then not checked: a multiple
// of 4 is the caller's to keep). Meta reads none.
NoiseKey tensor_noise_key(const char* op, const at::Tensor& key, const at::Tensor& data,
                          bool runs);

// The key of a call: its (seed, offset), checked, or (a .generator call) the
// key drawn from its generator, after the device guard, once the call is
// known good: t (where given, with its table length T) is checked on the host
// first where it is on the CPU. Meta draws none.
template <typename Backend>
NoiseKey call_noise_key(const char* op, const CallArgs& args, const NoiseKeyArgs& at,
                        const at::Tensor& data, const at::Tensor* t, int64_t T) {
  if (at.key >= 0) return tensor_noise_key(op, args.tensor(at.key), data, Backend::kRuns);
  if (at.generator < 0) return check_noise_key(op, args.integer(at.seed), args.integer(at.offset));
  if (!Backend::kRuns) return {0, 0};
  if (t != nullptr) check_timestep_values(op, *t, T);
  return draw_noise_key(op, args.value(at.generator), data.device());
}

// Elements per sample: numel / batch (0 for an empty batch).
inline int64_t sample_numel(const at::Tensor& x) {
  return x.size(0) == 0 ? 0 : x.numel() / x.size(0);
}

// Shape [B, 1, ..., 1] with x's rank: per-sample values broadcast over x.
std::vector<c10::SymInt> per_sample_shape(const at::Tensor& x);

// Calls fn(S{}, T{}) with S the kernel's storage type for the data dtype and
// T the table type (float or double).
template <typename Fn>
void dispatch_types(at::ScalarType data, at::ScalarType table, const Fn& fn) {
  auto with_table = [&](auto s) {
    if (table == at::kDouble) {
      fn(s, double{});
    } else {
      fn(s, float{});
    }
  };
  switch (data) {
    case at::kFloat: return with_table(float{});
    case at::kDouble: return with_table(double{});
    case at::kHalf: return with_table(Half{});
    case at::kBFloat16: return with_table(BFloat16{});
    default: TORCH_CHECK(false, "ddpm: unsupported data dtype ", data);
  }
}

// The kernels' view of a checked noise offset (contiguous, or undefined).
template <typename S>
NoiseOffset<S> noise_offset_of(const at::Tensor& offset, const at::Tensor& x) {
  NoiseOffset<S> o;
  if (!offset.defined()) return o;
  o.offset = reinterpret_cast<const S*>(offset.data_ptr());
  o.channels = x.size(1);
  o.channel_numel = o.channels == 0 ? 0 : sample_numel(x) / o.channels;
  return o;
}

// Pointers into a tensor whose dtype matches the kernel's storage type S.
template <typename S>
const S* data_of(const at::Tensor& x) {
  return reinterpret_cast<const S*>(x.data_ptr());
}
template <typename S>
S* mutable_data_of(at::Tensor& x) {
  return reinterpret_cast<S*>(x.data_ptr());
}

}  // namespace ops
}  // namespace ddpm
