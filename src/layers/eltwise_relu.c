/* The hidden layer that runs Eltwise SUM -> in-place ReLU as one pass (eltwise_relu.h).
 *
 * Forward reads the bottoms and writes y = relu(sum) once (the pair: the bottoms, then y written,
 * read and written again). Backward reads y and dy and writes each bottom's diff (and, where
 * somebody reads it afterwards, the top's diff: the ReLU's input gradient the in-place ReLU
 * leaves there), instead of the ReLU's read-read-write and the Eltwise's read and writes. The
 * ReLU's rule reads y, as the in-place ReLU does: for a slope >= 0 its sign is the sum's.
 * Nothing is kept between the passes: y is the top, which the ReLU's backward reads anyway, so
 * the memory plan keeps it live up to the pair's backward (the two backward steps are adjacent,
 * and nothing on the data side is first written during a backward). */
#include <stddef.h>
#include <stdlib.h>

#include "layers/eltwise_relu.h"

typedef struct pair_priv {
  float slope;
  bool relu_down;    /* the ReLU propagates (its gradient is what the Eltwise passes on) */
  bool top_grad;     /* the top's diff gets the ReLU's input gradient (set_top_grad) */
  ct_tensor *coeff;  /* nbottom values, or NULL for all 1 (read on each partition's driver) */
  const float **x;   /* per partition, nbottom pointers (the array on the host, what they point
                        to on the partition's driver); partitions run at once: a row each */
  float **dx;        /* the same for the bottoms' diffs */
} pair_priv;

static const Caffe__EltwiseParameter default_eltwise = CAFFE__ELTWISE_PARAMETER__INIT;
static const Caffe__ReLUParameter default_relu = CAFFE__RE_LUPARAMETER__INIT;

bool ct_eltwise_relu_fits(const ct_layer *eltwise, const ct_layer *relu) {
  const Caffe__EltwiseParameter *ep = eltwise->lp->eltwise_param ? eltwise->lp->eltwise_param : &default_eltwise;
  const Caffe__ReLUParameter *rp = relu->lp->relu_param ? relu->lp->relu_param : &default_relu;
  if (ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM || eltwise->nbottom < 2) return false;
  if (ep->n_coeff && ep->n_coeff != (size_t)eltwise->nbottom) return false;
  return rp->negative_slope >= 0.0f;
}

bool ct_eltwise_relu_runs(const ct_layer *l) {
  return ct_layer_drivers_have(l, offsetof(ct_driver_ops, eltwise_relu_forward)) &&
         ct_layer_drivers_have(l, offsetof(ct_driver_ops, eltwise_relu_backward));
}

static ct_status pair_reshape(ct_layer *l, ct_error *err) {
  const ct_tensor *b0 = l->bottom[0];
  char s0[128], sk[128];
  for (int k = 1; k < l->nbottom; k++)
    if (!ct_tensor_same_shape(l->bottom[k], b0))
      return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d has shape %s, bottom 0 has %s; all must agree", k,
                           ct_tensor_shape_str(l->bottom[k], sk, sizeof sk), ct_tensor_shape_str(b0, s0, sizeof s0));
  return ct_tensor_reshape_like(l->top[0], b0, err);
}

static ct_status read_coeff(ct_layer *l, const ct_part *p, const float **coeff, ct_error *err) {
  pair_priv *pp = l->priv;
  *coeff = NULL;
  if (!pp->coeff) return CT_OK;
  float *c;
  CT_TRY(ct_part_all(l, p, pp->coeff, CT_DATA, CT_READ, &c, err));
  *coeff = c;
  return CT_OK;
}

static ct_status pair_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  pair_priv *pp = l->priv;
  const ct_driver *d = p->d;
  const float **x = pp->x + (size_t)p->index * l->nbottom, *coeff;
  float *y;
  size_t first, n;
  ct_part_span(p, l->top[0], &first, &n);
  for (int k = 0; k < l->nbottom; k++) {
    CT_TRY(ct_read(l, p, l->bottom[k], &x[k], err));
    x[k] += first;
  }
  CT_TRY(read_coeff(l, p, &coeff, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->eltwise_relu_forward(d, n, l->nbottom, x, coeff, pp->slope, y + first);
}

static ct_status pair_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  pair_priv *pp = l->priv;
  const ct_driver *d = p->d;
  if (!pp->relu_down) return CT_OK; /* fuse.c fuses such a pair only when nothing propagates */
  const bool top = pp->top_grad;
  bool any = top;
  for (int k = 0; k < l->nbottom; k++) any |= l->propagate_down[k];
  if (!any) return CT_OK;
  size_t first, n;
  ct_part_span(p, l->top[0], &first, &n);
  const float *y, *dy, *coeff;
  float *dz = NULL, **dx = pp->dx + (size_t)p->index * l->nbottom;
  CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(read_coeff(l, p, &coeff, err));
  if (top) { /* in place over dy, as the ReLU writes it */
    CT_TRY(ct_part_io(l, p, l->top[0], CT_DIFF, CT_READWRITE, &dz, err));
    dy = dz;
    dz += first;
  } else {
    CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  }
  for (int k = 0; k < l->nbottom; k++) { /* overwritten, as Eltwise does; none for a bottom that
                                            does not propagate */
    dx[k] = NULL;
    if (!l->propagate_down[k]) continue;
    CT_TRY(ct_write_diff(l, p, l->bottom[k], &dx[k], err));
    dx[k] += first;
  }
  return d->ops->eltwise_relu_backward(d, n, l->nbottom, coeff, pp->slope, y + first, dy + first, dx, dz);
}

static void pair_destroy(ct_layer *l) {
  pair_priv *pp = l->priv;
  if (pp) {
    ct_tensor_free(pp->coeff);
    free(pp->x);
    free(pp->dx);
  }
  free(pp);
  l->priv = NULL;
}

static const ct_layer_ops pair_ops = {
    .type = "Eltwise+ReLU",
    .min_bottom = 2,
    .max_bottom = -1,
    .min_top = 1,
    .max_top = 1,
    .has_backward = true,
    .splits = ct_layer_splits_always,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .reshape = pair_reshape,
    .forward = pair_forward,
    .backward = pair_backward,
    .destroy = pair_destroy,
};

void ct_eltwise_relu_set_top_grad(ct_layer *l, bool wanted) { ((pair_priv *)l->priv)->top_grad = wanted; }

void ct_eltwise_relu_free(ct_layer *l) {
  if (!l) return;
  if (l->ops && l->ops->destroy) l->ops->destroy(l);
  free(l->bottom);
  free(l->top);
  free(l->propagate_down);
  free(l);
}

ct_status ct_eltwise_relu_create(ct_layer *eltwise, ct_layer *relu, ct_layer **out, ct_error *err) {
  *out = NULL;
  const int nb = eltwise->nbottom;
  ct_layer *l = calloc(1, sizeof *l);
  pair_priv *pp = calloc(1, sizeof *pp);
  if (!l || !pp) {
    free(l);
    free(pp);
    return ct_layer_fail(eltwise, err, CT_ENOMEM, "out of memory");
  }
  l->ops = &pair_ops;
  l->priv = pp;
  l->lp = eltwise->lp;
  l->name = eltwise->name;
  l->index = eltwise->index;
  l->phase = eltwise->phase;
  l->dir = eltwise->dir;
  l->place = eltwise->place;
  l->spec = eltwise->spec;
  l->rng = eltwise->rng;
  l->nbottom = nb;
  l->ntop = 1;
  l->bottom = calloc((size_t)nb, sizeof *l->bottom);
  l->top = calloc(1, sizeof *l->top);
  l->propagate_down = calloc((size_t)nb, sizeof *l->propagate_down);
  pp->x = calloc((size_t)nb * CT_MAX_PARTITIONS, sizeof *pp->x);
  pp->dx = calloc((size_t)nb * CT_MAX_PARTITIONS, sizeof *pp->dx);
  if (!l->bottom || !l->top || !l->propagate_down || !pp->x || !pp->dx) {
    ct_eltwise_relu_free(l);
    return ct_layer_fail(eltwise, err, CT_ENOMEM, "out of memory");
  }
  for (int k = 0; k < nb; k++) {
    l->bottom[k] = eltwise->bottom[k];
    l->propagate_down[k] = eltwise->propagate_down[k];
  }
  l->top[0] = relu->top[0];
  const Caffe__EltwiseParameter *ep = eltwise->lp->eltwise_param ? eltwise->lp->eltwise_param : &default_eltwise;
  pp->slope = (relu->lp->relu_param ? relu->lp->relu_param : &default_relu)->negative_slope;
  pp->relu_down = relu->propagate_down[0];
  pp->top_grad = true;
  if (ep->n_coeff) {
    float *c;
    ct_status st = CT_OK;
    if (!(pp->coeff = ct_tensor_create())) st = ct_layer_fail(eltwise, err, CT_ENOMEM, "out of memory");
    if (!st) st = ct_tensor_reshape(pp->coeff, 1, &nb, err);
    if (!st) st = ct_tensor_host(pp->coeff, CT_DATA, CT_WRITE, &c, err);
    if (st) {
      ct_eltwise_relu_free(l);
      return st;
    }
    for (int k = 0; k < nb; k++) c[k] = ep->coeff[k];
  }
  *out = l;
  return CT_OK;
}
