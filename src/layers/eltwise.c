/* Eltwise: combines bottoms of one shape element by element.
 *  - SUM: y = sum_k coeff_k x_k (coeff: none, or one per bottom; default 1)
 *  - PROD: y = prod_k x_k; the gradient is the product of the other bottoms (stable_prod_grad,
 *    the default) or y / x_k
 *  - MAX: y = max_k x_k; the winner of each element (the later bottom on ties between the
 *    first two, the earlier one after that, as in Caffe) gets the whole gradient. */
#include <stdlib.h>

#include "layers/layer.h"

/* winner is kept as ints in a float tensor of the same element count */
_Static_assert(sizeof(int) == sizeof(float), "winner ints live in a float tensor");

typedef struct eltwise {
  ct_eltwise_op op;
  bool stable_prod_grad;
  ct_tensor *coeff;  /* nbottom values for SUM, or NULL for all 1 (read on each partition's driver) */
  ct_tensor *winner; /* MAX: int per element, the bottom that won (top-shaped, so each partition
                        keeps its images' part on its driver) */
  const float **x;   /* per partition, nbottom pointers: the bottoms' data gathered for the
                        driver (the array on the host, what it points to on the driver);
                        partitions run at once, so each has its own row */
} eltwise;

static const char *op_name(Caffe__EltwiseParameter__EltwiseOp op) {
  switch (op) {
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD:
      return "PROD";
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM:
      return "SUM";
    case CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX:
      return "MAX";
    default:
      return "?";
  }
}

static ct_status eltwise_setup(ct_layer *l, ct_error *err) {
  static const Caffe__EltwiseParameter dflt = CAFFE__ELTWISE_PARAMETER__INIT;
  const Caffe__EltwiseParameter *ep = l->lp->eltwise_param ? l->lp->eltwise_param : &dflt;
  if (ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD &&
      ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM &&
      ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__MAX)
    return ct_layer_fail(l, err, CT_EINVAL, "unknown operation %d", (int)ep->operation);
  if (ep->n_coeff && ep->operation != CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM)
    return ct_layer_fail(l, err, CT_EINVAL, "coeff applies to SUM only, not to %s", op_name(ep->operation));
  if (ep->n_coeff && ep->n_coeff != (size_t)l->nbottom)
    return ct_layer_fail(l, err, CT_EINVAL, "takes one coeff per bottom: %zu coeff for %d bottoms", ep->n_coeff,
                         l->nbottom);
  eltwise *p = calloc(1, sizeof *p);
  if (!p) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = p;
  p->op = ep->operation == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__PROD  ? CT_ELTWISE_PROD
          : ep->operation == CAFFE__ELTWISE_PARAMETER__ELTWISE_OP__SUM ? CT_ELTWISE_SUM
                                                                       : CT_ELTWISE_MAX;
  p->stable_prod_grad = ep->stable_prod_grad;
  p->x = calloc((size_t)l->nbottom * CT_MAX_PARTITIONS, sizeof *p->x);
  if (!p->x) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  if (ep->n_coeff) {
    int n = l->nbottom;
    float *c;
    if (!(p->coeff = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    CT_TRY(ct_tensor_reshape(p->coeff, 1, &n, err));
    CT_TRY(ct_tensor_host(p->coeff, CT_DATA, CT_WRITE, &c, err));
    for (int k = 0; k < n; k++) c[k] = ep->coeff[k];
  }
  return CT_OK;
}

static ct_status eltwise_reshape(ct_layer *l, ct_error *err) {
  eltwise *p = l->priv;
  const ct_tensor *b0 = l->bottom[0];
  char s0[128], sk[128];
  for (int k = 1; k < l->nbottom; k++)
    if (!ct_tensor_same_shape(l->bottom[k], b0))
      return ct_layer_fail(l, err, CT_ESHAPE, "bottom %d has shape %s, bottom 0 has %s; all must agree", k,
                           ct_tensor_shape_str(l->bottom[k], sk, sizeof sk), ct_tensor_shape_str(b0, s0, sizeof s0));
  for (int k = 0; k < l->nbottom; k++)
    if (l->top[0] == l->bottom[k]) return ct_layer_fail(l, err, CT_EINVAL, "Eltwise cannot run in place");
  CT_TRY(ct_tensor_reshape_like(l->top[0], b0, err));
  if (p->op != CT_ELTWISE_MAX) return CT_OK;
  if (!p->winner && !(p->winner = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return ct_tensor_reshape_like(p->winner, b0, err);
}

/* Partition p's row of bottom pointers, each at p's first element (or NULL where `need` is false:
 * backward fetches no bottom the kernel does not read), and the coefficients on p's driver. */
static ct_status gather(ct_layer *l, const ct_part *p, bool need, size_t first, const float ***xs, const float **coeff,
                        ct_error *err) {
  eltwise *e = l->priv;
  const float **x = e->x + (size_t)p->index * l->nbottom;
  for (int k = 0; k < l->nbottom; k++) {
    x[k] = NULL;
    if (!need) continue;
    CT_TRY(ct_read(l, p, l->bottom[k], &x[k], err));
    x[k] += first;
  }
  *xs = x;
  *coeff = NULL;
  if (e->coeff) {
    float *c;
    CT_TRY(ct_part_all(l, p, e->coeff, CT_DATA, CT_READ, &c, err));
    *coeff = c;
  }
  return CT_OK;
}

/* Elements are independent: a partition combines its images' elements on its driver. */
static ct_status eltwise_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  eltwise *e = l->priv;
  const ct_driver *d = p->d;
  const float **x, *coeff;
  float *y, *w = NULL;
  size_t first, n;
  ct_part_span(p, l->top[0], &first, &n);
  CT_TRY(gather(l, p, true, first, &x, &coeff, err));
  if (e->op == CT_ELTWISE_MAX) CT_TRY(ct_write(l, p, e->winner, &w, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->eltwise_forward(d, e->op, n, l->nbottom, x, coeff, y + first, w ? (int *)(w + first) : NULL);
}

/* The kernel reads the bottoms for PROD only, y for PROD's unstable form, winner for MAX. */
static ct_status eltwise_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  eltwise *e = l->priv;
  const ct_driver *d = p->d;
  const bool prod = e->op == CT_ELTWISE_PROD, max = e->op == CT_ELTWISE_MAX;
  const float **x, *coeff, *y = NULL, *dy, *w = NULL;
  size_t first, n;
  ct_part_span(p, l->top[0], &first, &n);
  CT_TRY(gather(l, p, prod, first, &x, &coeff, err));
  if (max) CT_TRY(ct_read(l, p, e->winner, &w, err));
  if (prod && !e->stable_prod_grad) CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  for (int k = 0; k < l->nbottom; k++) {
    if (!l->propagate_down[k]) continue;
    float *dx;
    CT_TRY(ct_write_diff(l, p, l->bottom[k], &dx, err));
    CT_TRY(d->ops->eltwise_backward(d, e->op, n, l->nbottom, x, k, coeff, e->stable_prod_grad, y ? y + first : NULL,
                                    dy + first, w ? (const int *)(w + first) : NULL, dx + first));
  }
  return CT_OK;
}

static void eltwise_destroy(ct_layer *l) {
  eltwise *p = l->priv;
  if (!p) return;
  ct_tensor_free(p->winner);
  ct_tensor_free(p->coeff);
  free(p->x);
  free(p);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_Eltwise = {.type = "Eltwise",
                                       .min_bottom = 2,
                                       .max_bottom = -1,
                                       .min_top = 1,
                                       .max_top = 1,
                                       .has_backward = true,
                                       .splits = ct_layer_splits_always,
                                       .gains = true,
                                       .kind = CT_WORK_MEMORY,
                                       .setup = eltwise_setup,
                                       .reshape = eltwise_reshape,
                                       .forward = eltwise_forward,
                                       .backward = eltwise_backward,
                                       .destroy = eltwise_destroy};
