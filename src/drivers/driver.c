/* Driver creation by device name. This build has the CPU driver only; the CUDA driver
 * (src/drivers/cuda/, built when CUDA is found) adds its "cuda" / "cuda:N" case here. */
#include "drivers/driver.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "drivers/cpu.h"

ct_status ct_driver_create(const char *device, ct_driver **out, ct_error *err) {
  *out = NULL;
  if (device && strcmp(device, "cpu") != 0)
    return ct_fail(err, CT_EUNSUPPORTED, "device \"%s\": this build drives only \"cpu\"", device);
  ct_driver *d = calloc(1, sizeof *d);
  if (!d) return ct_fail(err, CT_ENOMEM, "out of memory creating the cpu driver");
  d->ops = ct_driver_cpu_ops();
  d->device = "cpu";
  d->index = 0;
  d->ctx = NULL;
  *out = d;
  return CT_OK;
}

void ct_driver_free(ct_driver *d) {
  if (!d) return;
  if (d->ops && d->ops->destroy) d->ops->destroy(d);
  free(d);
}
