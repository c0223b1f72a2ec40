/* CcT's batch partitions: a layer's mini-batch of N images split into contiguous shares, one
 * per worker, each run with a single-threaded BLAS. The count comes from the net (default: the
 * cores) or from the layer's `partition { device: "cpu" share: s }` entries. */
#ifndef CT_PARTITION_H
#define CT_PARTITION_H

#include "layers/layer.h"

#define CT_MAX_PARTITIONS 64

typedef struct ct_partition {
  int n;
  int start[CT_MAX_PARTITIONS], size[CT_MAX_PARTITIONS];
} ct_partition;

/* Splits N images for layer l (never more partitions than images; shares by the largest
 * remainder, equal by default). Devices other than "cpu" are an error in this build. */
ct_status ct_partition_plan(const ct_layer *l, int N, ct_partition *p, ct_error *err);
int ct_partition_max(const ct_partition *p);
/* Runs fn(ctx, i) for every partition on l's pool, the BLAS single-threaded inside the region
 * when there is more than one partition. */
void ct_partition_run(ct_layer *l, const ct_partition *p, void (*fn)(void *ctx, int i), void *ctx);

/* Splits [0, n) into l's partitions (contiguous, sizes differing by at most `align`) and runs
 * fn(ctx, part, begin, end) for each on l's pool: for layers whose work is independent per
 * element, plane or image (pooling, LRN, element-wise), which need no BLAS. */
void ct_parallel_for(ct_layer *l, size_t n, size_t align, void (*fn)(void *ctx, int part, size_t begin, size_t end),
                     void *ctx);
/* The number of partitions ct_parallel_for uses for l (for per-partition scratch buffers). */
int ct_parallel_parts(const ct_layer *l);

#endif
