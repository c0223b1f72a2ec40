/* The frame every CUDA driver entry shares (cuda/driver.c, cuda/driver_nn.c): the driver's
 * lock, its device made current on the calling thread, the first failure as the result, and
 * the checks that turn CUDA and cuBLAS errors into it. */
#ifndef CT_DRIVERS_CUDA_ENTRY_H
#define CT_DRIVERS_CUDA_ENTRY_H

#include "core/status.h"
#include "drivers/cuda/cuda_internal.h"
#include "drivers/cuda/launch.h"

/* An entry's frame: the driver's lock, its device made current on this thread, and the first
 * failure as the result. */
#define BEGIN(what)                                  \
  cuda_ctx *c = d->ctx;                              \
  const char *what_ = what;                          \
  ct_status st_ = CT_OK;                             \
  pthread_mutex_lock(&c->mu);                        \
  {                                                  \
    cudaError_t e_ = cudaSetDevice(c->dev->index);   \
    if (e_ != cudaSuccess) {                         \
      st_ = ct_cuda_fail(c, e_, what_);              \
      goto out;                                      \
    }                                                \
  }
#define END          \
  out:               \
  (void)what_;       \
  pthread_mutex_unlock(&c->mu); \
  return st_;
#define CHECK_CUDA(call)                        \
  do {                                          \
    cudaError_t e_ = (call);                    \
    if (e_ != cudaSuccess) {                    \
      st_ = ct_cuda_fail(c, e_, what_);         \
      goto out;                                 \
    }                                           \
  } while (0)
#define CHECK_BLAS(call)                        \
  do {                                          \
    cublasStatus_t b_ = (call);                 \
    if (b_ != CUBLAS_STATUS_SUCCESS) {          \
      st_ = ct_cuda_blas_fail(c, b_, what_);    \
      goto out;                                 \
    }                                           \
  } while (0)
#define CHECK_CT(call)              \
  do {                              \
    if ((st_ = (call)) != CT_OK) goto out; \
  } while (0)
#define LAUNCH(name, n, ...) CHECK_CUDA((cudaError_t)ctl_##name(c->stream, (n), __VA_ARGS__))
#define SYNC() CHECK_CUDA(cudaStreamSynchronize(c->stream))

#endif
