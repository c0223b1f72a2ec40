/* Clip (from Caffe's master after 1.0): y = min(max(x, min), max), the gradient passing where
 * min <= x <= max. Runs in place (keeping a copy of x for backward). */
#include <math.h>

#include "layers/neuron.h"

static ct_status Clip_setup(ct_layer *l, ct_error *err) {
  const Caffe__ClipParameter *cp = l->lp->clip_param;
  /* both bounds are required fields in Caffe's schema */
  if (!cp) return ct_layer_fail(l, err, CT_EINVAL, "clip_param { min max } is required");
  if (isnan(cp->min) || isnan(cp->max))
    return ct_layer_fail(l, err, CT_EINVAL, "min and max must be numbers, got %g and %g", cp->min, cp->max);
  if (cp->min > cp->max)
    return ct_layer_fail(l, err, CT_EINVAL, "min (%g) must not exceed max (%g)", cp->min, cp->max);
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_CLIP, &p, err));
  p->f.lo = cp->min;
  p->f.hi = cp->max;
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(Clip);
