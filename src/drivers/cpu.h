/* The CPU side of the machine: OpenBLAS threading and a one-time calibration of the GEMM rate
 * and memory bandwidth that the lowering cost model uses (the CPU driver's calibration entry).
 * The CPU driver itself is src/drivers/cpu/; code reaches it through drivers/driver.h. */
#ifndef CT_DRIVERS_CPU_H
#define CT_DRIVERS_CPU_H

#include "drivers/driver.h"

/* The CPU driver's table (for ct_driver_create; everything else uses a ct_driver). */
const ct_driver_ops *ct_driver_cpu_ops(void);
/* The pool a CPU driver splits GEMMs over (its ctx; NULL: none), and changing it (the net's
 * placement does when its pool is replaced). */
struct ct_pool *ct_cpu_driver_pool(const ct_driver *d);
void ct_cpu_driver_set_pool(ct_driver *d, struct ct_pool *pool);
/* The threads the partition running on this thread may use (enter's argument; 1 outside). */
int ct_cpu_driver_threads(void);

/* The fused BatchNorm chain's backward takes the ReLU's mask from xnorm (ct_bn_chain's
 * mask_from_z) only where a channel has at least this many elements (N x S): a smaller channel's
 * y comes from cache, cheaper to read than the mask is to recompute. */
#define CT_CPU_BN_MASK_Z_MIN ((size_t)1 << 17)

/* The rates of ct_cpu_calibration_taken (cortado.h), taken at the first call: read from the
 * calibration cache (cpu/calib_cache.c says why it exists) or measured (a single-threaded SGEMM
 * and a large copy, about 0.1 s). */
void ct_cpu_calibration(double *gflops, double *gbytes);
/* cpu/calib_cache.c: this host's name in the cache (CPU name, family, model, stepping, CPUs
 * online, OpenBLAS core); the cache's path as the environment sets it (false: none); and the
 * rates from path's line for this host (CT_CALIB_READ), or measure's, written there
 * (CT_CALIB_WRITTEN) or not (CT_CALIB_MEASURED: the file could not be written, or measure
 * failed and left the rates as they were). */
typedef enum ct_calib_source { CT_CALIB_MEASURED, CT_CALIB_WRITTEN, CT_CALIB_READ } ct_calib_source;
void ct_cpu_calibration_host(char *buf, size_t n);
bool ct_cpu_calibration_path(char *buf, size_t n);
ct_calib_source ct_cpu_calibration_cached(const char *path, double *gflops, double *gbytes,
                                          bool (*measure)(double *gflops, double *gbytes));
int ct_blas_threads(void);
void ct_blas_set_threads(int n);
/* OpenBLAS single-threaded between begin and end, on the calling thread's say: nested pairs
 * (the CPU's and a device's region around one layer pass) restore it once, at the outermost
 * end. */
void ct_blas_single_begin(void);
void ct_blas_single_end(void);
/* OpenBLAS's name for the kernel core it runs (e.g. "Haswell"). */
const char *ct_blas_core_name(void);

/* When OpenBLAS fell back to generic kernels (it does not know this CPU), the OPENBLAS_CORETYPE
 * that would serve the CPU's vector units (SkylakeX for AVX-512, Haswell for AVX2); else NULL. */
const char *ct_blas_core_advice(void);

#endif
