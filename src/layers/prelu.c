/* PReLU: y = max(x, 0) + a_c * min(x, 0) with a learnable slope per channel (axis 1), or one
 * slope for all channels (channel_shared). As in Caffe, the shared slope is a blob of no axes
 * (one value) and the per-channel slopes a blob of shape [C]; the default filler is constant
 * 0.25. In place, forward keeps a copy of x: both gradients need it. */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"
#include "layers/scratch.h"

typedef struct prelu {
  bool channel_shared;
  ct_scratch saved; /* x, when running in place */
} prelu;

static bool in_place(const ct_layer *l) { return l->top[0] == l->bottom[0]; }

static ct_status prelu_setup(ct_layer *l, ct_error *err) {
  static const Caffe__PReLUParameter dflt = CAFFE__PRE_LUPARAMETER__INIT;
  const Caffe__PReLUParameter *pp = l->lp->prelu_param ? l->lp->prelu_param : &dflt;
  const ct_tensor *b = l->bottom[0];
  if (b->naxes < 2) {
    char buf[128];
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have at least 2 axes (N, C, ...), got shape %s",
                         ct_tensor_shape_str(b, buf, sizeof buf));
  }
  prelu *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->channel_shared = pp->channel_shared;
  CT_TRY(ct_layer_alloc_blobs(l, 1, err));
  int C = b->shape[1];
  CT_TRY(ct_tensor_reshape(l->blobs[0], p->channel_shared ? 0 : 1, &C, err));
  Caffe__FillerParameter quarter = CAFFE__FILLER_PARAMETER__INIT;
  quarter.value = 0.25f;
  const Caffe__FillerParameter *fp = pp->filler ? pp->filler : &quarter;
  CT_TRY(ct_fill(fp, l->blobs[0], &l->rng, "PReLU slopes", err));
  return CT_OK;
}

static ct_status prelu_reshape(ct_layer *l, ct_error *err) {
  prelu *p = l->priv;
  const ct_tensor *b = l->bottom[0];
  if (b->naxes < 2 || (!p->channel_shared && (size_t)b->shape[1] != l->blobs[0]->count)) {
    char buf[128];
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom shape %s does not fit %zu slopes (one per channel, axis 1)",
                         ct_tensor_shape_str(b, buf, sizeof buf), l->blobs[0]->count);
  }
  if (in_place(l)) return ct_scratch_reserve(&p->saved, b->count, sizeof(float), l, err);
  return ct_tensor_reshape_like(l->top[0], b, err);
}

/* Geometry: x is N x C x D (D = the product of the axes after 1). */
static void geometry(const ct_layer *l, size_t *N, size_t *C, size_t *D) {
  const ct_tensor *b = l->bottom[0];
  *N = (size_t)b->shape[0];
  *C = (size_t)b->shape[1];
  *D = ct_tensor_count_range(b, 2, b->naxes);
}

static ct_status prelu_forward(ct_layer *l, ct_error *err) {
  (void)err;
  prelu *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_tensor *b = l->bottom[0];
  const float *x = b->data;
  if (in_place(l)) {
    d->ops->copy(d, p->saved.p, x, b->count * sizeof(float));
    x = p->saved.p;
  }
  size_t N, C, D;
  geometry(l, &N, &C, &D);
  d->ops->prelu_forward(d, N, C, D, p->channel_shared, x, l->blobs[0]->data, l->top[0]->data);
  return CT_OK;
}

static void prelu_backward(ct_layer *l) {
  prelu *p = l->priv;
  const ct_driver *d = ct_layer_driver(l);
  const ct_tensor *b = l->bottom[0], *t = l->top[0];
  size_t N, C, D;
  geometry(l, &N, &C, &D);
  /* the slope gradient comes first inside: in place, dx overwrites dy */
  d->ops->prelu_backward(d, N, C, D, p->channel_shared, in_place(l) ? p->saved.p : b->data, t->diff,
                         l->blobs[0]->data, l->propagate_down[0] ? b->diff : NULL,
                         l->param_propagate_down[0] ? l->blobs[0]->diff : NULL);
}

static void prelu_destroy(ct_layer *l) {
  prelu *p = l->priv;
  if (!p) return;
  ct_scratch_free(&p->saved);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_PReLU = {.type = "PReLU",
                                     .min_bottom = 1,
                                     .max_bottom = 1,
                                     .min_top = 1,
                                     .max_top = 1,
                                     .in_place = true,
                                     .has_backward = true,
                                     .setup = prelu_setup,
                                     .reshape = prelu_reshape,
                                     .forward = prelu_forward,
                                     .backward = prelu_backward,
                                     .destroy = prelu_destroy};
