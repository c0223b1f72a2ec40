/* Parameter initialisation by FillerParameter, as Caffe defines the seven fillers. */
#ifndef CT_FILLER_H
#define CT_FILLER_H

#include "core/rng.h"
#include "core/tensor.h"
#include "cortado.pb-c.h"

/* Fills t's data (on the host). fp may be NULL (constant 0). Unknown types and shapes a filler cannot serve
 * (bilinear on a non-4-D blob, ...) are errors. `what` names the blob in messages. */
ct_status ct_fill(const Caffe__FillerParameter *fp, ct_tensor *t, ct_rng *rng, const char *what,
                  ct_error *err);

#endif
