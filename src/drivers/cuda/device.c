/* The CUDA devices: one record per process and index (created on first use, kept for the
 * process, since storages anywhere may hold copies in its memory), storage's view of its memory
 * (ct_mem: cudaMalloc'd buffers, copies to and from the host counted by the storage layer), the
 * driver's failures as messages, and the per-driver scratch. Nothing here runs before a
 * "cuda:N" device is asked for, so a CUDA build without a GPU behaves as a CPU-only build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "drivers/cuda/cuda_internal.h"
#include "drivers/cuda/launch.h"

#define CUDA_MAX CT_CUDA_MAX_DEVICES

static pthread_mutex_t devs_mu = PTHREAD_MUTEX_INITIALIZER;
static cuda_dev *devs[CUDA_MAX];

/* ---------------------------------------------------------------- messages */

ct_status ct_cuda_fail(cuda_ctx *c, cudaError_t e, const char *what) {
  snprintf(c->error, sizeof c->error, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  return e == cudaErrorMemoryAllocation ? CT_ENOMEM : CT_EDEVICE;
}

ct_status ct_cuda_blas_fail(cuda_ctx *c, cublasStatus_t e, const char *what) {
  snprintf(c->error, sizeof c->error, "%s: cuBLAS %s", what, c->bl->status_string(e));
  return e == CUBLAS_STATUS_ALLOC_FAILED ? CT_ENOMEM : CT_EDEVICE;
}

static ct_status mem_fail(cuda_dev *d, cudaError_t e, const char *what, ct_error *err) {
  pthread_mutex_lock(&d->mu);
  snprintf(d->error, sizeof d->error, "%s: %s", what, cudaGetErrorString(e));
  pthread_mutex_unlock(&d->mu);
  return ct_fail(err, e == cudaErrorMemoryAllocation ? CT_ENOMEM : CT_EDEVICE, "%s: %s failed: %s", d->name, what,
                 cudaGetErrorString(e));
}

/* ---------------------------------------------------------------- the place */

/* Storage's copies go through the legacy default stream, which waits for the work queued on
 * every driver's (blocking) stream and is waited for by it: a download sees every kernel queued
 * before it, and a kernel queued after an upload sees its data. */
static void *mem_alloc(const ct_mem *m, size_t bytes) {
  cuda_dev *d = m->ctx;
  void *p = NULL;
  if (cudaSetDevice(d->index) != cudaSuccess) return NULL;
  if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
    (void)cudaGetLastError(); /* not sticky: clear it for the next call */
    return NULL;
  }
  return p;
}

static void mem_free(const ct_mem *m, void *p) {
  cuda_dev *d = m->ctx;
  if (!p) return;
  (void)cudaSetDevice(d->index);
  (void)cudaFree(p);
}

static ct_status mem_copy(const ct_mem *m, void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                          const char *what, ct_error *err) {
  cuda_dev *d = m->ctx;
  cudaError_t e = cudaSetDevice(d->index);
  if (e == cudaSuccess && bytes) e = cudaMemcpy(dst, src, bytes, kind);
  return e == cudaSuccess ? CT_OK : mem_fail(d, e, what, err);
}

static ct_status mem_upload(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  return mem_copy(m, dst, src, bytes, cudaMemcpyHostToDevice, "upload", err);
}

static ct_status mem_download(const ct_mem *m, void *dst, const void *src, size_t bytes, ct_error *err) {
  return mem_copy(m, dst, src, bytes, cudaMemcpyDeviceToHost, "download", err);
}

static ct_status mem_zero(const ct_mem *m, void *dst, size_t bytes, ct_error *err) {
  cuda_dev *d = m->ctx;
  cudaError_t e = cudaSetDevice(d->index);
  if (e == cudaSuccess && bytes) e = cudaMemset(dst, 0, bytes);
  return e == cudaSuccess ? CT_OK : mem_fail(d, e, "zero", err);
}

/* Two CUDA devices with peer access copy straight from one to the other (storage's
 * device-to-device copies, counted [from][to]); without it, storage stages the copy through the
 * host. Peer access is asked for once per ordered pair and kept for the process. */
static bool mem_reaches(const ct_mem *m, const ct_mem *from) {
  if (from->alloc != mem_alloc) return false; /* not a CUDA device */
  cuda_dev *to = m->ctx, *src = from->ctx;
  if (to == src) return false;
  pthread_mutex_lock(&to->mu);
  signed char *known = &to->peer[src->index];
  if (!*known) {
    int can = 0;
    cudaError_t e = cudaDeviceCanAccessPeer(&can, to->index, src->index);
    if (e == cudaSuccess && can && (e = cudaSetDevice(to->index)) == cudaSuccess) {
      e = cudaDeviceEnablePeerAccess(src->index, 0);
      if (e == cudaErrorPeerAccessAlreadyEnabled) e = cudaSuccess;
    }
    if (e != cudaSuccess) (void)cudaGetLastError(); /* not sticky: clear it for the next call */
    *known = e == cudaSuccess && can ? 1 : -1;
  }
  const bool yes = *known > 0;
  pthread_mutex_unlock(&to->mu);
  return yes;
}

/* On the legacy default stream, like the other storage copies: it waits for the work queued on
 * both devices' driver streams, and their later work waits for it. */
static ct_status mem_copy_from(const ct_mem *m, void *dst, const ct_mem *from, const void *src, size_t bytes,
                               ct_error *err) {
  cuda_dev *to = m->ctx, *sd = from->ctx;
  cudaError_t e = cudaSetDevice(to->index);
  if (e == cudaSuccess && bytes) e = cudaMemcpyPeer(dst, to->index, src, sd->index, bytes);
  return e == cudaSuccess ? CT_OK : mem_fail(to, e, "device-to-device copy", err);
}

/* ---------------------------------------------------------------- the registry */

int ct_cuda_devices(char *why, size_t n) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    snprintf(why, n, "no CUDA device is usable: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return 0;
  }
  if (count == 0) snprintf(why, n, "the CUDA runtime sees no device");
  return count;
}

bool ct_cuda_describe(int index, char *buf, size_t n) {
  struct cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  snprintf(buf, n, "cuda:%d: %s, compute capability %d.%d, %.1f GiB, %d multiprocessors", index, p.name, p.major,
           p.minor, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), p.multiProcessorCount);
  return true;
}

ct_status ct_cuda_dev_get(int index, cuda_dev **out, ct_error *err) {
  *out = NULL;
  if (index < 0 || index >= CUDA_MAX)
    return ct_fail(err, CT_EINVAL, "cuda:%d: devices are cuda:0 to cuda:%d", index, CUDA_MAX - 1);
  pthread_mutex_lock(&devs_mu);
  ct_status st = CT_OK;
  cuda_dev *d = devs[index];
  if (!d) {
    char why[200] = "";
    int count = ct_cuda_devices(why, sizeof why);
    if (count == 0) {
      st = ct_fail(err, CT_EUNSUPPORTED, "device \"cuda:%d\": %s; use \"cpu\" (or leave --gpu out)", index, why);
      goto done;
    }
    if (index >= count) {
      st = ct_fail(err, CT_EUNSUPPORTED, "device \"cuda:%d\": this machine has %d CUDA device%s (cuda:0 to cuda:%d)",
                   index, count, count == 1 ? "" : "s", count - 1);
      goto done;
    }
    cudaError_t e = cudaSetDevice(index);
    if (e == cudaSuccess) e = cudaFree(NULL); /* creates the context now, so its failure is reported here */
    if (e != cudaSuccess) {
      st = ct_fail(err, CT_EUNSUPPORTED, "device \"cuda:%d\" cannot be used: %s", index, cudaGetErrorString(e));
      goto done;
    }
    d = calloc(1, sizeof *d);
    if (!d) {
      st = ct_fail(err, CT_ENOMEM, "out of memory");
      goto done;
    }
    d->index = index;
    snprintf(d->name, sizeof d->name, "cuda:%d", index);
    pthread_mutex_init(&d->mu, NULL);
    d->mem = (ct_mem){.name = d->name,
                      .alloc = mem_alloc,
                      .free = mem_free,
                      .upload = mem_upload,
                      .download = mem_download,
                      .zero = mem_zero,
                      .ctx = d,
                      .reaches = mem_reaches,
                      .copy_from = mem_copy_from};
    if (!ct_mem_register(&d->mem)) {
      st = ct_fail(err, CT_EINVAL, "cuda:%d: too many devices in one process", index);
      free(d);
      d = NULL;
      goto done;
    }
    devs[index] = d;
  }
done:
  pthread_mutex_unlock(&devs_mu);
  *out = d;
  return st;
}

/* ---------------------------------------------------------------- scratch */

ct_status ct_cuda_scratch(cuda_ctx *c, size_t bytes, void **out) {
  if (bytes > c->scratch_bytes) {
    cudaError_t e = cudaStreamSynchronize(c->stream); /* queued kernels may still use the old one */
    if (e != cudaSuccess) return ct_cuda_fail(c, e, "scratch");
    (void)cudaFree(c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
    size_t want = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes + bytes / 2;
    if ((e = cudaMalloc(&c->scratch, want)) != cudaSuccess) return ct_cuda_fail(c, e, "scratch allocation");
    c->scratch_bytes = want;
  }
  *out = c->scratch;
  return CT_OK;
}

ct_status ct_cuda_host(cuda_ctx *c, size_t bytes, void **out) {
  if (bytes > c->host_bytes) {
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) return ct_cuda_fail(c, e, "host staging");
    (void)cudaFreeHost(c->host);
    c->host = NULL;
    c->host_bytes = 0;
    size_t want = bytes < ((size_t)1 << 20) ? (size_t)1 << 20 : bytes + bytes / 2;
    if ((e = cudaMallocHost(&c->host, want)) != cudaSuccess) return ct_cuda_fail(c, e, "pinned host allocation");
    c->host_bytes = want;
  }
  *out = c->host;
  return CT_OK;
}

/* ---------------------------------------------------------------- calibration */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A 2048^3 SGEMM and a 256 MB device copy, best of three after a warm-up; a failure leaves
 * an H100-like guess (the cost model only needs the ratio). */
void ct_cuda_calibrate(cuda_ctx *c, double *gflops, double *gbytes) {
  cuda_dev *d = c->dev;
  pthread_mutex_lock(&d->mu);
  if (d->gflops <= 0) {
    d->gflops = 20000;
    d->gbytes = 1500;
    const int n = 2048;
    const size_t words = (size_t)64 << 20;
    float *a = NULL, *src = NULL, *dst = NULL;
    if (cudaMalloc((void **)&a, (size_t)n * n * 3 * sizeof(float)) == cudaSuccess &&
        cudaMalloc((void **)&src, words * sizeof(float)) == cudaSuccess &&
        cudaMalloc((void **)&dst, words * sizeof(float)) == cudaSuccess &&
        cudaMemset(a, 0, (size_t)n * n * 3 * sizeof(float)) == cudaSuccess &&
        cudaMemset(src, 0, words * sizeof(float)) == cudaSuccess) {
      float *b = a + (size_t)n * n, *cc = b + (size_t)n * n;
      const float one = 1.0f, zero = 0.0f;
      double best = 1e9, bestc = 1e9;
      bool ok = true;
      for (int r = 0; ok && r < 4; r++) {
        double t0 = now_s();
        ok = c->bl->sgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, cc, n) ==
                 CUBLAS_STATUS_SUCCESS &&
             cudaStreamSynchronize(c->stream) == cudaSuccess;
        double t = now_s() - t0;
        if (r && t < best) best = t;
        t0 = now_s();
        ok = ok && cudaMemcpyAsync(dst, src, words * sizeof(float), cudaMemcpyDeviceToDevice, c->stream) ==
                       cudaSuccess &&
             cudaStreamSynchronize(c->stream) == cudaSuccess;
        t = now_s() - t0;
        if (r && t < bestc) bestc = t;
      }
      if (ok && best > 0) d->gflops = 2.0 * n * n * (double)n / best / 1e9;
      if (ok && bestc > 0) d->gbytes = 2.0 * (double)words * sizeof(float) / bestc / 1e9;
    }
    (void)cudaFree(a);
    (void)cudaFree(src);
    (void)cudaFree(dst);
    (void)cudaGetLastError();
  }
  *gflops = d->gflops;
  *gbytes = d->gbytes;
  pthread_mutex_unlock(&d->mu);
}

/* ---------------------------------------------------------------- the driver */

ct_status ct_cuda_create(int index, ct_driver **out, ct_error *err) {
  *out = NULL;
  cuda_dev *dev = NULL;
  const int missing = ct_cuda_ops_missing();
  if (missing >= 0)
    return ct_fail(err, CT_EINTERNAL,
                   "cuda:%d: the CUDA driver lacks entry %d of ct_driver_ops (added to drivers/driver.h after it); "
                   "give it a CUDA version in src/drivers/cuda/",
                   index, missing);
  CT_TRY(ct_cuda_dev_get(index, &dev, err));
  ct_driver *d = calloc(1, sizeof *d);
  cuda_ctx *c = calloc(1, sizeof *c);
  if (!d || !c) {
    free(d);
    free(c);
    return ct_fail(err, CT_ENOMEM, "out of memory");
  }
  c->dev = dev;
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&c->mu, &a);
  pthread_mutexattr_destroy(&a);
  cudaError_t e = cudaSetDevice(index);
  if (e == cudaSuccess) e = cudaStreamCreate(&c->stream);
  if (e != cudaSuccess) {
    free(d);
    free(c);
    return ct_fail(err, CT_EDEVICE, "cuda:%d: cannot create a stream: %s", index, cudaGetErrorString(e));
  }
  char why[300] = "";
  c->bl = ct_cublas(why, sizeof why);
  if (!c->bl) {
    (void)cudaStreamDestroy(c->stream);
    free(d);
    free(c);
    return ct_fail(err, CT_EUNSUPPORTED, "device \"cuda:%d\": %s", index, why);
  }
  cublasStatus_t bs = c->bl->create(&c->blas);
  if (bs == CUBLAS_STATUS_SUCCESS) bs = c->bl->set_stream(c->blas, c->stream);
  if (bs == CUBLAS_STATUS_SUCCESS) bs = c->bl->set_pointer_mode(c->blas, CUBLAS_POINTER_MODE_HOST);
  if (bs != CUBLAS_STATUS_SUCCESS) {
    ct_fail(err, CT_EDEVICE, "cuda:%d: cannot start cuBLAS: %s", index, c->bl->status_string(bs));
    if (c->blas) c->bl->destroy(c->blas);
    (void)cudaStreamDestroy(c->stream);
    free(d);
    free(c);
    return CT_EDEVICE;
  }
  d->ops = ct_cuda_ops();
  d->device = "cuda";
  d->index = index;
  snprintf(d->name, sizeof d->name, "%s", dev->name);
  d->mem = &dev->mem;
  d->ctx = c;
  *out = d;
  return CT_OK;
}
