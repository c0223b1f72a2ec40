/* A vector of ones on whatever device reads it: the right-hand side of the GEMVs that sum rows
 * and of the rank-1 GEMMs that broadcast a column (Reduction, Tile, MVN, ...). Written on the
 * host only when it grows, so a device keeps its copy from pass to pass. */
#ifndef CT_LAYERS_ONES_H
#define CT_LAYERS_ONES_H

#include <stddef.h>

#include "core/tensor.h"

typedef struct ct_ones {
  ct_tensor *t; /* NULL until the first fit */
  size_t n;     /* elements known to hold 1 */
} ct_ones;

/* Makes o hold at least n ones (for reshape). */
ct_status ct_ones_fit(ct_ones *o, size_t n, ct_error *err);
void ct_ones_free(ct_ones *o);

#endif
