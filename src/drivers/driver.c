/* Driver creation by device name: "cpu", "emu:N" (the CPU kernels behind a memory arena of
 * their own, src/drivers/emu/), and "cuda:N" where the CUDA driver is built (src/drivers/cuda/). */
#include "drivers/driver.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "drivers/cpu.h"
#include "drivers/emu.h"
#ifdef CT_HAVE_CUDA
#include "drivers/cuda.h" /* the hook: built with src/drivers/cuda/ (cmake/cuda.cmake) */
#endif

#define NO_CUDA_BUILD "this build has no CUDA driver (configured without nvcc, or with -DCT_CUDA=OFF)"

bool ct_driver_parse_name(const char *device, char *canon, size_t n) {
  if (!device || !strcmp(device, "cpu")) {
    snprintf(canon, n, "cpu");
    return true;
  }
  static const char *const kinds[] = {"emu", "cuda"};
  for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
    size_t len = strlen(kinds[k]);
    if (strncmp(device, kinds[k], len)) continue;
    const char *r = device + len;
    if (!*r) {
      snprintf(canon, n, "%s:0", kinds[k]);
      return true;
    }
    if (*r != ':' || !isdigit((unsigned char)r[1])) return false;
    char *end;
    long idx = strtol(r + 1, &end, 10);
    if (*end || idx < 0 || idx > 63) return false;
    snprintf(canon, n, "%s:%ld", kinds[k], idx);
    return true;
  }
  return false;
}

ct_status ct_driver_create(const char *device, struct ct_pool *pool, ct_driver **out, ct_error *err) {
  *out = NULL;
  char canon[24];
  if (!ct_driver_parse_name(device, canon, sizeof canon))
    return ct_fail(err, CT_EINVAL, "unknown device \"%s\"; expected \"cpu\", \"emu:N\" or \"cuda:N\"", device);
  if (!strncmp(canon, "emu:", 4)) return ct_emu_create(atoi(canon + 4), out, err);
  if (!strncmp(canon, "cuda:", 5)) {
#ifdef CT_HAVE_CUDA
    return ct_cuda_create(atoi(canon + 5), out, err);
#else
    return ct_fail(err, CT_EUNSUPPORTED, "device \"%s\": %s; use \"cpu\" or \"emu:N\"", canon, NO_CUDA_BUILD);
#endif
  }
  ct_driver *d = calloc(1, sizeof *d);
  if (!d) return ct_fail(err, CT_ENOMEM, "out of memory creating the cpu driver");
  d->ops = ct_driver_cpu_ops();
  d->device = "cpu";
  d->index = 0;
  snprintf(d->name, sizeof d->name, "cpu");
  d->mem = &ct_mem_host;
  ct_cpu_driver_set_pool(d, pool);
  *out = d;
  return CT_OK;
}

void ct_driver_free(ct_driver *d) {
  if (!d) return;
  if (d->ops && d->ops->destroy) d->ops->destroy(d);
  free(d);
}

void ct_driver_error(const ct_driver *d, ct_error *err, ct_status s, const char *what) {
  char why[800] = "";
  if (d->ops->error_message) d->ops->error_message(d, why, sizeof why);
  ct_fail(err, s, "%s on %s: %s", what, d->name, why[0] ? why : ct_status_name(s));
}

bool ct_driver_cuda_built(void) {
#ifdef CT_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int ct_driver_cuda_devices(char *why, size_t n) {
#ifdef CT_HAVE_CUDA
  return ct_cuda_devices(why, n);
#else
  snprintf(why, n, "%s", NO_CUDA_BUILD);
  return 0;
#endif
}

bool ct_driver_cuda_describe(int index, char *buf, size_t n) {
#ifdef CT_HAVE_CUDA
  return ct_cuda_describe(index, buf, n);
#else
  (void)index;
  snprintf(buf, n, "%s", NO_CUDA_BUILD);
  return false;
#endif
}
