// The CUDA backend: every operator's kernel (kernels.h) launching the CUDA
// kernels of csrc/cuda on the current stream of the data's device. A
// timestep outside [0, T) cannot be reported without a host sync: the kernels
// write NaN for its sample.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>

#include <mutex>
#include <type_traits>
#include <utility>

#include "../kernels.h"

namespace ddpm {
namespace ops {
namespace {

CudaLaunch current_cuda_launch() {
  CudaLaunch launch;
  launch.stream = static_cast<void*>(at::cuda::getCurrentCUDAStream().stream());
  launch.num_sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return launch;
}

// In-kernel noise from (seed, offset) given as numbers would be baked into a
// captured CUDA graph: every replay would draw the same noise, silently. So
// it is refused during capture; a generator's key (the .generator
// overloads) is read on the device there, anew at each replay.
void refuse_noise_in_capture(const NoiseKey& key) {
  if (key.on_device()) return;
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None,
              "ddpm: in-kernel noise from an integer (seed, offset) cannot be captured in a "
              "CUDA graph: they would be fixed in the graph and every replay would draw the "
              "same noise. Pass a torch.Generator instead (the operator's .generator "
              "overload, PhiloxStream(generator), philox=generator): its state is read on "
              "the device at each replay; or capture with explicit noise (torch.randn_like "
              "inside the graph draws anew at each replay).");
}

// PhiloxCudaState::seed_ is a plain integer in PyTorch releases from before
// late 2022 (pytorch#84967: a captured graph kept the seed it was captured
// with) and a union of a value and a device pointer since (a replay reads
// the generator's seed anew). Both are read, so the CUDA build compiles
// against either.
template <typename Seed>
uint64_t seed_value(const Seed& seed) {
  if constexpr (std::is_integral<Seed>::value) {
    return static_cast<uint64_t>(seed);
  } else {
    return static_cast<uint64_t>(seed.val);
  }
}
template <typename Seed>
void set_captured_seed(NoiseKey& key, const Seed& seed) {
  if constexpr (std::is_integral<Seed>::value) {
    key.seed = static_cast<uint64_t>(seed);
  } else {
    key.seed_on_device = seed.ptr;
  }
}
// (the older layout's branches, compiled here whatever this PyTorch has)
[[maybe_unused]] void read_seed_of_old_layout(NoiseKey& key) {
  key.seed = seed_value(uint64_t{7});
  set_captured_seed(key, uint64_t{7});
}

// draw_noise_key's CUDA half: the generator's Philox state for one call (4
// draws per subsequence), as PyTorch's own random kernels take it; under
// capture, where the graph reads its seed and offset at each replay.
NoiseKey cuda_noise_key(const char* op, const c10::optional<at::Generator>& generator,
                        const at::Device& device) {
  const at::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(index));
  TORCH_CHECK(gen->device().index() == index, op, ": expected a generator on cuda:",
              static_cast<int>(index), " like the data, got one on ", gen->device());
  at::PhiloxCudaState state;
  {
    std::lock_guard<std::mutex> lock(gen->mutex_);
    state = gen->philox_cuda_state(4);
  }
  if (state.captured_) {
    TORCH_CHECK(state.offset_intragraph_ % 4 == 0, op,
                ": the generator's offset in the graph is not a multiple of 4");
    NoiseKey key{0, static_cast<uint64_t>(state.offset_intragraph_)};
    set_captured_seed(key, state.seed_);
    key.offset_on_device = state.offset_.ptr;
    return key;
  }
  TORCH_CHECK(state.offset_.val % 4 == 0, op, ": expected the generator's offset to be a "
              "multiple of 4 (each call uses 4), got ", state.offset_.val);
  return {seed_value(state.seed_), state.offset_.val};
}

[[maybe_unused]] const bool kCudaNoiseKeyDrawerSet = (set_cuda_noise_key_drawer(&cuda_noise_key), true);

// The key of the noise a call draws in the kernel, or null: the parameters
// with a generate_noise flag (q_sample's and the steps'), and philox_normal's.
template <typename P, typename = void>
struct MayDrawNoise : std::false_type {};
template <typename P>
struct MayDrawNoise<P, std::void_t<decltype(std::declval<P>().generate_noise)>> : std::true_type {};

template <typename P>
const NoiseKey* drawn_noise_key(const P& p) {
  if constexpr (MayDrawNoise<P>::value) return p.generate_noise ? &p.noise_key : nullptr;
  return nullptr;
}
template <typename S>
const NoiseKey* drawn_noise_key(const PhiloxNormalParams<S>& p) {
  return &p.key;
}

struct CudaBackend {
  static constexpr bool kRuns = true;
  using Guard = c10::cuda::CUDAGuard;
  // Launches the kernel on the current stream and checks the launch; -1 (a
  // bad t gives its sample NaN: reporting it would need a host sync).
  // The workspace the kernels ask for (cuda_workspace_bytes) comes from
  // PyTorch's caching allocator on the current stream: freed when this
  // returns, it is reused only by work queued after these kernels (and
  // under graph capture it belongs to the graph's pool).
  template <typename P>
  static int64_t run(const P& p) {
    if (const NoiseKey* key = drawn_noise_key(p)) refuse_noise_in_capture(*key);
    CudaLaunch launch = current_cuda_launch();
    const size_t workspace_bytes = cuda_workspace_bytes(p);
    at::Tensor workspace;
    if (workspace_bytes > 0) {
      workspace = at::empty({static_cast<int64_t>(workspace_bytes)},
                            at::TensorOptions().dtype(at::kByte).device(
                                at::kCUDA, c10::cuda::current_device()));
      launch.workspace = workspace.data_ptr();
    }
    cuda_kernel(p, launch);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return -1;
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(ddpm, CUDA, m) { register_kernels<CudaBackend>(m); }

}  // namespace ops
}  // namespace ddpm
