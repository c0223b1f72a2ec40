/* cortado device_query: Caffe's device_query. One line per CUDA device, or the one named by
 * --gpu; without a usable GPU (or a CUDA driver in this build) a line saying why, status 1. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "drivers/driver.h"

int run_device_query(args *a) {
  char why[300] = "", line[300];
  const int count = ct_driver_cuda_devices(why, sizeof why);
  if (count == 0) {
    if (a->given[F_GPU])
      fprintf(stderr, "cortado: device_query --gpu=%s: no such device: no GPU devices: %s\n", a->value[F_GPU], why);
    else
      fprintf(stderr, "cortado: device_query: no GPU devices: %s\n", why);
    return EXIT_LIB;
  }
  int first = 0, last = count - 1;
  if (a->given[F_GPU]) {
    char *end;
    long id = strtol(a->value[F_GPU], &end, 10);
    if (end == a->value[F_GPU] || *end || id < 0 || id >= count) {
      fprintf(stderr, "cortado: device_query --gpu=%s: no such device: this machine has %d (0 to %d)\n",
              a->value[F_GPU], count, count - 1);
      return EXIT_LIB;
    }
    first = last = (int)id;
  }
  for (int i = first; i <= last; i++) {
    if (!ct_driver_cuda_describe(i, line, sizeof line)) {
      fprintf(stderr, "cortado: device_query: cuda:%d cannot be described\n", i);
      return EXIT_LIB;
    }
    printf("%s\n", line);
  }
  return EXIT_OK;
}
