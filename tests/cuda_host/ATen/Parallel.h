// A stand-in for ATen's parallel_for, so that the CPU kernels of csrc/cpu
// build into the torch-free host-emulation binary beside the CUDA kernels
// they are compared with. The range is cut into grain_size pieces run one
// after another: the kernels see chunk boundaries as in a parallel run.
#pragma once

#include <algorithm>
#include <cstdint>

namespace at {

template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain_size, const F& f) {
  const int64_t step = std::max<int64_t>(grain_size, 1);
  for (int64_t lo = begin; lo < end; lo += step) f(lo, std::min(end, lo + step));
}

}  // namespace at
