/* The CUDA driver (src/drivers/cuda/), built only when CMake finds nvcc (CT_HAVE_CUDA); code
 * outside reaches it through drivers/driver.h (ct_driver_create("cuda:N"), and
 * ct_driver_cuda_devices / ct_driver_cuda_describe for device_query), never through this
 * header, which only drivers/driver.c includes. */
#ifndef CT_DRIVERS_CUDA_H
#define CT_DRIVERS_CUDA_H

#include "drivers/driver.h"

/* The driver for cuda:index: CT_EUNSUPPORTED with a message saying why when this machine has no
 * such device (no GPU, no NVIDIA driver, an index past the last). */
ct_status ct_cuda_create(int index, ct_driver **out, ct_error *err);
/* The devices the runtime sees (0 with a reason in why when none). */
int ct_cuda_devices(char *why, size_t n);
/* One line about device index (name, compute capability, memory); false when it is not there. */
bool ct_cuda_describe(int index, char *buf, size_t n);

/* The index of the first entry of ct_driver_ops the CUDA driver does not implement (one added to
 * driver.h after it), or -1: ct_cuda_create refuses the device while one is missing. */
int ct_cuda_ops_missing(void);

#endif
