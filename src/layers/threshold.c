/* Threshold (Caffe's "Threshold"): y = 1 where x > threshold, else 0. A step function: its
 * backward writes the derivative it has almost everywhere, 0 (Caffe has no backward at all, and
 * aborts when asked for one). Runs in place. */
#include <math.h>

#include "layers/neuron.h"

static ct_status Threshold_setup(ct_layer *l, ct_error *err) {
  static const Caffe__ThresholdParameter dflt = CAFFE__THRESHOLD_PARAMETER__INIT;
  const Caffe__ThresholdParameter *tp = l->lp->threshold_param ? l->lp->threshold_param : &dflt;
  if (isnan(tp->threshold)) return ct_layer_fail(l, err, CT_EINVAL, "threshold must be a number, got nan");
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_THRESHOLD, &p, err));
  p->f.threshold = tp->threshold;
  return CT_OK;
}
NEURON_OPS(Threshold);
