// Philox normals on CUDA (philox_normal): the noise every in-kernel-noise
// operator draws, written out on its own.
//   out: [numel], out[e] = the normal of element e for (seed, offset)
#include "elementwise.cuh"

namespace ddpm {
namespace {

template <typename S>
struct NormalOp {
  struct Coef {};  // nothing depends on a timestep
  // Register budget (see elementwise.cuh): 8 blocks of 256 threads per SM.
  static constexpr int kMinBlocksPerSm = 8;
  PhiloxNormalParams<S> p;
  __device__ Coef coef(int64_t) const { return {}; }
  __device__ void apply_noise(const Coef&, int64_t, int64_t i, float z) const {
    store(p.out + i, static_cast<acc_t<S>>(z));
  }
};

}  // namespace

template <typename S>
void cuda_kernel(const PhiloxNormalParams<S>& p, CudaLaunch launch) {
  cuda::launch_noise(NormalOp<S>{p}, 1, p.numel, p.key, launch);
}

template void cuda_kernel<float>(const PhiloxNormalParams<float>&, CudaLaunch);
template void cuda_kernel<double>(const PhiloxNormalParams<double>&, CudaLaunch);
template void cuda_kernel<Half>(const PhiloxNormalParams<Half>&, CudaLaunch);
template void cuda_kernel<BFloat16>(const PhiloxNormalParams<BFloat16>&, CudaLaunch);

}  // namespace ddpm
