/* cuBLAS, loaded when the first CUDA driver is created (dlopen), not linked: libcublas and
 * libcublasLt add seconds and hundreds of megabytes to every process's start, which a CUDA build
 * run on the CPU (every test, every CLI call) must not pay. */
#ifndef CT_DRIVERS_CUDA_CUBLAS_DL_H
#define CT_DRIVERS_CUDA_CUBLAS_DL_H

#include <cublas_v2.h>
#include <stddef.h>

typedef struct ct_cublas_api {
  __typeof__(cublasCreate_v2) *create;
  __typeof__(cublasDestroy_v2) *destroy;
  __typeof__(cublasSetStream_v2) *set_stream;
  __typeof__(cublasSetPointerMode_v2) *set_pointer_mode;
  __typeof__(cublasSgemm_v2) *sgemm;
  __typeof__(cublasSgemv_v2) *sgemv;
  __typeof__(cublasSdot_v2) *sdot;
  __typeof__(cublasSasum_v2) *sasum;
  __typeof__(cublasGetStatusString) *status_string;
} ct_cublas_api;

/* The API, loaded once per process; NULL (why says what failed) when the library or one of its
 * functions cannot be found. */
const ct_cublas_api *ct_cublas(char *why, size_t n);

#endif
