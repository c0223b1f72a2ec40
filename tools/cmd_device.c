/* Caffe's GPU selection on the command line: cortado device_query (one line per CUDA device, or
 * the one named by --gpu; without a usable GPU, or a CUDA driver in this build, a line saying why
 * and status 1) and --gpu on train, test and time (cli_gpu_devices). */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/driver.h"

/* cuda:0,...,cuda:63 */
#define CT_MAX_GPU_LIST 512

/* Caffe's --gpu=0 / --gpu=0,1 / --gpu=all as cortado's device list (--device=cuda:0,cuda:1):
 * each GPU a partition of every layer's batch, shares automatic. Checked here, before anything
 * loads: a machine without the GPUs named gets one line and exit status 2. */
int cli_gpu_devices(const char *cn, args *a) {
  static char list[CT_MAX_GPU_LIST];
  const char *v = a->value[F_GPU];
  if (a->given[F_DEVICE])
    return usage_error(cn, "--gpu=%s and --device=%s: give one of them (--gpu=N is --device=cuda:N)", v,
                       a->value[F_DEVICE]);
  int ids[64], nids = 0;
  const bool all = !strcmp(v, "all");
  for (const char *p = v; !all;) {
    char *end;
    errno = 0;
    long id = strtol(p, &end, 10);
    if (end == p || !isdigit((unsigned char)*p) || errno || id > 63 || (*end && *end != ','))
      return usage_error(cn, "--gpu=%s: expected device numbers (0, or 0,1) or \"all\"", v);
    for (int k = 0; k < nids; k++)
      if (ids[k] == id) return usage_error(cn, "--gpu=%s: GPU %ld is named twice", v, id);
    if (nids == 64) return usage_error(cn, "--gpu=%s: at most 64 GPUs", v);
    ids[nids++] = (int)id;
    if (!*end) break;
    p = end + 1;
  }
  char why[300] = "";
  const int count = ct_driver_cuda_devices(why, sizeof why);
  if (count == 0) {
    fprintf(stderr, "cortado: --gpu=%s: no GPU to run on: %s; run without --gpu\n", v, why);
    return EXIT_USAGE;
  }
  if (all)
    for (nids = 0; nids < count && nids < 64; nids++) ids[nids] = nids;
  size_t at = 0;
  list[0] = 0;
  for (int k = 0; k < nids; k++) {
    if (ids[k] >= count) {
      fprintf(stderr, "cortado: --gpu=%s: there is no GPU %d: this machine has %d (0 to %d)\n", v, ids[k], count,
              count - 1);
      return EXIT_USAGE;
    }
    at += (size_t)snprintf(list + at, sizeof list - at, "%scuda:%d", k ? "," : "", ids[k]);
  }
  a->value[F_DEVICE] = list;
  a->given[F_DEVICE] = 1;
  return 0;
}

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
