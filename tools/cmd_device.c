/* cortado device_query: Caffe's device_query, in a build without GPU support. The CUDA work
 * (its own issue) replaces this with a real query; until then a Caffe user's script gets a
 * clear answer instead of an unknown command. */
#include "cli.h"

#include <stdio.h>

int run_device_query(args *a) {
  if (a->given[F_GPU])
    fprintf(stderr, "cortado: device_query --gpu=%s: no such device: no GPU support in this build (CPU only)\n",
            a->value[F_GPU]);
  else
    fprintf(stderr, "cortado: device_query: no GPU devices: no GPU support in this build (CPU only)\n");
  return EXIT_LIB;
}
