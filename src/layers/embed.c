/* Embed (Caffe's "Embed"): a lookup table. Each value of the bottom is an integer index into
 * [0, input_dim); the top appends an axis of num_output: top[i, :] = W[index_i, :] + b, with W
 * input_dim x num_output and b num_output (bias_term). Backward accumulates dW[index_i, :] +=
 * dy[i, :] and db += sum_i dy[i, :]; the indices take no gradient (as in Caffe).
 *
 * The indices steer the copies, so each partition reads its indices on the host (a counted
 * copy when they live elsewhere) and moves rows with the driver's copy and axpy: the table and
 * the rows stay on the partition's device. Items are independent, so partitions split the
 * batch. */
#include <math.h>
#include <stdlib.h>

#include "core/filler.h"
#include "layers/layer.h"

typedef struct embed {
  int K;    /* input_dim */
  int D;    /* num_output */
  bool bias;
} embed;

static ct_status embed_setup(ct_layer *l, ct_error *err) {
  static const Caffe__EmbedParameter dflt = CAFFE__EMBED_PARAMETER__INIT;
  const Caffe__EmbedParameter *ep = l->lp->embed_param ? l->lp->embed_param : &dflt;
  if (!ep->has_num_output || ep->num_output == 0 || ep->num_output > (1u << 24))
    return ct_layer_fail(l, err, CT_EINVAL, "num_output must be specified and positive");
  if (!ep->has_input_dim || ep->input_dim == 0 || ep->input_dim > (1u << 30))
    return ct_layer_fail(l, err, CT_EINVAL, "input_dim must be specified and positive");
  embed *e = calloc(1, sizeof *e);
  if (!e) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = e;
  e->K = (int)ep->input_dim;
  e->D = (int)ep->num_output;
  e->bias = ep->bias_term;
  CT_TRY(ct_layer_alloc_blobs(l, e->bias ? 2 : 1, err));
  const int wshape[2] = {e->K, e->D};
  CT_TRY(ct_tensor_reshape(l->blobs[0], 2, wshape, err));
  if (ct_fill(ep->weight_filler, l->blobs[0], &l->rng, "weight_filler", err))
    return ct_error_prefix(err, "layer \"%s\" (Embed)", l->name);
  if (e->bias) {
    CT_TRY(ct_tensor_reshape(l->blobs[1], 1, &e->D, err));
    if (ct_fill(ep->bias_filler, l->blobs[1], &l->rng, "bias_filler", err))
      return ct_error_prefix(err, "layer \"%s\" (Embed)", l->name);
  }
  return CT_OK;
}

static ct_status embed_reshape(ct_layer *l, ct_error *err) {
  embed *e = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes >= CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_ESHAPE, "the bottom %s has too many axes to append one",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  int shape[CT_MAX_AXES];
  for (int i = 0; i < x->naxes; i++) shape[i] = x->shape[i];
  shape[x->naxes] = e->D;
  return ct_tensor_reshape(l->top[0], x->naxes + 1, shape, err);
}

/* The partition's indices on the host: [first, first + n) of the bottom, checked. */
static ct_status indices(ct_layer *l, const ct_part *p, const float **idx, size_t *first, size_t *n, ct_error *err) {
  const embed *e = l->priv;
  ct_tensor *x = l->bottom[0];
  float *h;
  ct_part_span(p, x, first, n);
  CT_TRY(ct_tensor_deref(x, CT_DATA, &ct_mem_host, CT_READ, *first, *first + *n, l->place ? &l->place->stats : NULL,
                         &h, err));
  for (size_t i = *first; i < *first + *n; i++)
    if (!(h[i] >= 0 && h[i] < (float)e->K) || h[i] != floorf(h[i]))
      return ct_layer_fail(l, err, CT_EINVAL, "index %g at position %zu is not in [0, %d) (input_dim)", h[i], i, e->K);
  *idx = h;
  return CT_OK;
}

static ct_status embed_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  embed *e = l->priv;
  const ct_driver *d = p->d;
  const float *idx, *w, *b = NULL;
  float *y;
  size_t first, n;
  CT_TRY(indices(l, p, &idx, &first, &n, err));
  CT_TRY(ct_read_param(l, p, 0, &w, err));
  if (e->bias) CT_TRY(ct_read_param(l, p, 1, &b, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  const size_t D = (size_t)e->D, row = D * sizeof(float);
  for (size_t i = first; i < first + n; i++) CT_TRY(d->ops->copy(d, y + i * D, w + (size_t)idx[i] * D, row));
  if (b && n) CT_TRY(d->ops->bias_forward(d, n, D, 1, y + first * D, b, y + first * D));
  return CT_OK;
}

static ct_status embed_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  embed *e = l->priv;
  const ct_driver *d = p->d;
  float *dw = NULL, *db = NULL;
  if (l->param_propagate_down[0]) CT_TRY(ct_part_param_grad(l, p, 0, &dw, err));
  if (e->bias && l->param_propagate_down[1]) CT_TRY(ct_part_param_grad(l, p, 1, &db, err));
  if (!dw && !db) return CT_OK;
  const float *idx, *dy;
  size_t first, n;
  CT_TRY(indices(l, p, &idx, &first, &n, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  const size_t D = (size_t)e->D;
  /* in index order: an index met twice sums in a fixed order */
  if (dw)
    for (size_t i = first; i < first + n; i++) CT_TRY(d->ops->axpy(d, D, 1.0f, dy + i * D, dw + (size_t)idx[i] * D));
  if (db && n) CT_TRY(d->ops->scale_backward(d, n, D, 1, NULL, dy + first * D, NULL, NULL, db, NULL));
  return CT_OK;
}

static void embed_destroy(ct_layer *l) {
  free(l->priv);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Embed = {.type = "Embed",
                                     .min_bottom = 1,
                                     .max_bottom = 1,
                                     .min_top = 1,
                                     .max_top = 1,
                                     .has_backward = true,
                                     .label_bottoms = 1u << 0,
                                     .splits = ct_layer_splits_always,
                                     .gains = true,
                                     .kind = CT_WORK_MEMORY,
                                     .setup = embed_setup,
                                     .reshape = embed_reshape,
                                     .forward = embed_forward,
                                     .backward = embed_backward,
                                     .destroy = embed_destroy};
