/* The CUDA kernels: each a grid-stride loop over its index space calling one body of
 * cuda/kern.h, and its launcher (cuda/launch.h). Nothing else lives here: the arithmetic is
 * the bodies' (checked on the host by tests/test_cuda_kernels.c), the driver's logic is
 * cuda/driver.c's. */

/* drivers/driver.h reaches core/storage.h, whose copy counters are C11 atomics, which C++
 * before C++23 lacks; the kernels never touch them, and the struct is only declared here. */
typedef unsigned long long atomic_ullong;

#include <cuda_runtime.h>

#include "drivers/cuda/launch.h"

/* Enough blocks to fill an H100 several times over; the grid-stride loop takes the rest. */
static unsigned blocks_for(size_t n) {
  const size_t b = (n + 255) / 256;
  return (unsigned)(b < 8192 ? b : 8192);
}

#define CTL_DEFINE(name, params, args, call)                                                            \
  __global__ void ctk_kernel_##name(size_t n, CT_UNPAREN params) {                                      \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)blockDim.x * gridDim.x) \
      call;                                                                                             \
  }                                                                                                     \
  extern "C" int ctl_##name(void *stream, size_t n, CT_UNPAREN params) {                               \
    if (!n) return 0;                                                                                   \
    ctk_kernel_##name<<<blocks_for(n), 256, 0, (cudaStream_t)stream>>>(n, CT_UNPAREN args);             \
    return (int)cudaGetLastError();                                                                     \
  }

CTL_KERNELS(CTL_DEFINE)
