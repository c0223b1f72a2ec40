/* State shared by the CUDA driver's C files: the device (one per process and index: its place
 * in the storage layer) and one driver's context (its stream, cuBLAS handle and scratch). */
#ifndef CT_DRIVERS_CUDA_INTERNAL_H
#define CT_DRIVERS_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>
#include <pthread.h>

#include "drivers/cuda.h"
#include "drivers/cuda/cublas_dl.h"

#define CT_CUDA_MAX_DEVICES 64

typedef struct cuda_dev {
  ct_mem mem; /* its place; mem.ctx is this device */
  int index;
  char name[24];
  pthread_mutex_t mu; /* guards error and the calibration */
  char error[256];    /* the last failure of a storage copy */
  double gflops, gbytes;
  signed char peer[CT_CUDA_MAX_DEVICES]; /* by device index: 1 copies straight from it, -1 not, 0 not yet asked (mu) */
} cuda_dev;

typedef struct cuda_ctx {
  cuda_dev *dev;
  cudaStream_t stream; /* every entry's work, in order */
  const ct_cublas_api *bl; /* cuBLAS (loaded on the first driver) */
  cublasHandle_t blas;      /* bound to stream */
  pthread_mutex_t mu;  /* recursive: one entry at a time per driver (the handle and the scratch) */
  void *scratch;       /* device scratch for reductions (grown on first need, then reused) */
  size_t scratch_bytes;
  void *host; /* pinned host staging for results read back and for staged entries */
  size_t host_bytes;
  char error[320];
} cuda_ctx;

/* device.c: the device registry and storage's view of device memory */
ct_status ct_cuda_dev_get(int index, cuda_dev **out, ct_error *err);
/* Records "what: the CUDA error" as ctx's last failure; CT_ENOMEM for an allocation failure,
 * else CT_EDEVICE. */
ct_status ct_cuda_fail(cuda_ctx *c, cudaError_t e, const char *what);
ct_status ct_cuda_blas_fail(cuda_ctx *c, cublasStatus_t e, const char *what);
/* Scratch of at least `bytes` (device or pinned host), grown after the stream has drained. */
ct_status ct_cuda_scratch(cuda_ctx *c, size_t bytes, void **out);
ct_status ct_cuda_host(cuda_ctx *c, size_t bytes, void **out);
/* The measured rates of one device (a large SGEMM and a device copy), once per process. */
void ct_cuda_calibrate(cuda_ctx *c, double *gflops, double *gbytes);

/* driver.c fills the memory, BLAS, element-wise and normalisation entries; driver_nn.c the
 * layer entries, and keeps the table */
void ct_cuda_core_ops(ct_driver_ops *o);
const ct_driver_ops *ct_cuda_ops(void);

/* staged.c: the entries that run the CPU kernel on host copies (lowering types 2, 3 and
 * WINOGRAD): correct, and slow by the copies; the cost model's type 1 is the GPU's path. */
ct_status ct_cuda_staged_conv(cuda_ctx *c, int step, const ct_conv_geom *g, ct_lowering t, int nb, const float *in0,
                              const float *in1, float *ws, float *out0, float *out1);
enum { CT_CUDA_LOWER, CT_CUDA_LIFT, CT_CUDA_LIFT_GRAD, CT_CUDA_LOWER_GRAD };
/* driver_red.c: the entries built on two-stage reductions (BatchNorm, the fused chain, the Scale
 * and PReLU gradients, DIRECT convolution) */
void ct_cuda_red_ops(ct_driver_ops *o);
/* Queues out[c] += the sum of channel c of x (N x C x S) on c's stream, as two stages. */
ct_status ct_cuda_channel_sums_add(cuda_ctx *c, size_t N, size_t C, size_t S, const float *x, float *out);

#endif
