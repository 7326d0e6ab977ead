// Philox normals on CUDA (philox_normal): the noise every in-kernel-noise
// operator draws, written out on its own.
//   out: [numel], out[e] = the normal of element e for (seed, offset)
#include "elementwise.cuh"

namespace ddpm {
namespace {

template <typename S>
struct NormalOp {
  struct Coef {};  // nothing depends on a timestep
  PhiloxNormalParams<S> p;
  __device__ Coef coef(int64_t) const { return {}; }
  __device__ void apply_noise(const Coef&, int64_t, int64_t i, float z) const {
    store(p.out + i, static_cast<acc_t<S>>(z));
  }
};

}  // namespace

template <typename S>
void philox_normal_cuda(const PhiloxNormalParams<S>& p, CudaLaunch launch) {
  cuda::launch_noise(NormalOp<S>{p}, 1, p.numel, p.key, launch);
}

template void philox_normal_cuda<float>(const PhiloxNormalParams<float>&, CudaLaunch);
template void philox_normal_cuda<double>(const PhiloxNormalParams<double>&, CudaLaunch);
template void philox_normal_cuda<Half>(const PhiloxNormalParams<Half>&, CudaLaunch);
template void philox_normal_cuda<BFloat16>(const PhiloxNormalParams<BFloat16>&, CudaLaunch);

}  // namespace ddpm
