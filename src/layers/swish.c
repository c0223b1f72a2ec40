/* Swish (from Caffe's master after 1.0): y = x sigmoid(beta x). Backward needs x as well as y,
 * so in place it keeps a copy of x. */
#include <math.h>

#include "layers/neuron.h"

static ct_status Swish_setup(ct_layer *l, ct_error *err) {
  static const Caffe__SwishParameter dflt = CAFFE__SWISH_PARAMETER__INIT;
  const Caffe__SwishParameter *sp = l->lp->swish_param ? l->lp->swish_param : &dflt;
  if (!isfinite(sp->beta)) return ct_layer_fail(l, err, CT_EINVAL, "beta must be a finite number, got %g", sp->beta);
  neuron *p = NULL;
  CT_TRY(ct_neuron_layer_alloc(l, CT_NEURON_SWISH, &p, err));
  p->f.beta = sp->beta;
  p->keep_input = true;
  return CT_OK;
}
NEURON_OPS(Swish);
