/* Parameter (Caffe's "Parameter"): a learnable blob of parameter_param.shape as a top, so that
 * other layers can take it as a bottom. Forward copies the blob to the top; backward adds the
 * top's gradient to the blob's (Caffe shares the two; the sums are the same). The blob starts
 * at zero, as in Caffe (weights normally come from a .caffemodel). */
#include <stdlib.h>

#include "layers/layer.h"
#include "proto/blob.h"

static ct_status param_setup(ct_layer *l, ct_error *err) {
  const Caffe__ParameterParameter *pp = l->lp->parameter_param;
  if (!pp || !pp->shape) return ct_layer_fail(l, err, CT_EINVAL, "needs parameter_param { shape { dim: ... } }");
  const Caffe__BlobShape *bs = pp->shape;
  if (bs->n_dim > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_EUNSUPPORTED, "the shape has %zu axes; at most %d are supported", bs->n_dim,
                         CT_MAX_AXES);
  int shape[CT_MAX_AXES];
  for (size_t i = 0; i < bs->n_dim; i++) {
    if (bs->dim[i] < 0 || bs->dim[i] > (1 << 30))
      return ct_layer_fail(l, err, CT_EINVAL, "dimension %zu of the shape is %lld; it must be in [0, 2^30]", i,
                           (long long)bs->dim[i]);
    shape[i] = (int)bs->dim[i];
  }
  CT_TRY(ct_layer_alloc_blobs(l, 1, err));
  return ct_tensor_reshape(l->blobs[0], (int)bs->n_dim, shape, err);
}

static ct_status param_reshape(ct_layer *l, ct_error *err) { return ct_tensor_reshape_like(l->top[0], l->blobs[0], err); }

static ct_status param_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  const ct_driver *d = p->d;
  const float *w;
  float *y;
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->copy(d, y, w, l->blobs[0]->count * sizeof(float));
}

static ct_status param_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->param_propagate_down[0]) return CT_OK;
  const ct_driver *d = p->d;
  const float *dy;
  float *dw;
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_part_param_grad(l, p, 0, &dw, err));
  return d->ops->axpy(d, l->blobs[0]->count, 1.0f, dy, dw);
}

const ct_layer_ops ct_layer_Parameter = {.type = "Parameter",
                                         .min_bottom = 0,
                                         .max_bottom = 0,
                                         .min_top = 1,
                                         .max_top = 1,
                                         .has_backward = true,
                                         .splits = NULL,
                                         .kind = CT_WORK_MEMORY,
                                         .setup = param_setup,
                                         .reshape = param_reshape,
                                         .forward = param_forward,
                                         .backward = param_backward};
