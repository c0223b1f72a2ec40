/* PReLU: y = max(x, 0) + a_c * min(x, 0) with a learnable slope per channel (axis 1), or one
 * slope for all channels (channel_shared). As in Caffe, the shared slope is a blob of no axes
 * (one value) and the per-channel slopes a blob of shape [C]; the default filler is constant
 * 0.25. In place, forward keeps a copy of x: both gradients need it. */
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"

typedef struct prelu {
  bool channel_shared;
  ct_tensor *saved; /* x, when running in place (bottom-shaped: each partition keeps its images) */
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
  if (in_place(l)) {
    if (!p->saved && !(p->saved = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    return ct_tensor_reshape_like(p->saved, b, err);
  }
  return ct_tensor_reshape_like(l->top[0], b, err);
}

/* Partition p's geometry: its images' x is N x C x D (D = the product of the axes after 1),
 * from element `first`. */
static void geometry(const ct_layer *l, const ct_part *p, size_t *first, size_t *N, size_t *C, size_t *D) {
  const ct_tensor *b = l->bottom[0];
  int img0, nimg;
  size_t n;
  ct_part_images(p, b, &img0, &nimg);
  ct_part_span(p, b, first, &n);
  *N = (size_t)nimg;
  *C = (size_t)b->shape[1];
  *D = ct_tensor_count_range(b, 2, b->naxes);
}

/* Images are independent; the slope gradient of a partition's images goes to its own buffer. */
static ct_status prelu_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  prelu *pr = l->priv;
  const ct_driver *d = p->d;
  size_t first, N, C, D;
  geometry(l, p, &first, &N, &C, &D);
  const float *x, *a;
  float *y;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  if (in_place(l)) {
    float *s;
    CT_TRY(ct_write(l, p, pr->saved, &s, err));
    CT_TRY(d->ops->copy(d, s + first, x + first, N * C * D * sizeof(float)));
    x = s;
  }
  CT_TRY(ct_read_param(l, p, 0, &a, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->prelu_forward(d, N, C, D, pr->channel_shared, x + first, a, y + first);
}

static ct_status prelu_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  prelu *pr = l->priv;
  const ct_driver *d = p->d;
  size_t first, N, C, D;
  geometry(l, p, &first, &N, &C, &D);
  const float *x, *dy, *a;
  float *dx = NULL, *da = NULL;
  CT_TRY(ct_read(l, p, in_place(l) ? pr->saved : l->bottom[0], &x, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_read_param(l, p, 0, &a, err));
  if (l->propagate_down[0]) {
    CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
    dx += first;
  }
  if (l->param_propagate_down[0]) CT_TRY(ct_part_param_grad(l, p, 0, &da, err));
  /* the slope gradient comes first inside: in place, dx overwrites dy */
  return d->ops->prelu_backward(d, N, C, D, pr->channel_shared, x + first, dy + first, a, dx, da);
}

static void prelu_destroy(ct_layer *l) {
  prelu *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->saved);
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
                                     .splits = ct_layer_splits_always,
                                     .gains = true,
                                     .kind = CT_WORK_MEMORY,
                                     .setup = prelu_setup,
                                     .reshape = prelu_reshape,
                                     .forward = prelu_forward,
                                     .backward = prelu_backward,
                                     .destroy = prelu_destroy};
