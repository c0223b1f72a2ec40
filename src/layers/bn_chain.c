/* The hidden layer that runs BatchNorm -> Scale (-> ReLU) as one chain (bn_chain.h).
 *
 * Forward: the statistics (and, in TRAIN, the running sums, exactly as BatchNorm updates them),
 * then one pass writing xnorm (only when a backward will read it) and the chain's output. With
 * the stored statistics and nothing kept, BatchNorm and Scale are one affine per channel.
 * Backward from the chain's output and its gradient: the Scale gradients and the sums that
 * BatchNorm's gradient needs in one pass, dx in a second (one pass in all with the stored
 * statistics), taking the ReLU's mask from xnorm s + b rather than reading y too (driver.h's
 * mask_from_z). Scale's input, BatchNorm's output, is xnorm itself, so nothing else is kept; and
 * where the chain's input is still there at its backward (x_kept, set by net/fuse.c: DenseNet's
 * chains on a Concat's output), not even xnorm: the backward recomputes it from x, which saves
 * the forward a third of its memory traffic and the net a bottom-sized tensor per chain. A chain whose
 * output is still there (y_kept) and which has no ReLU (ResNet's before the Eltwise) or runs on
 * the stored statistics (ct_bn_chain_z_from_y_applies) recomputes xnorm as (y - b) / s instead,
 * in the channels where that loses little (ct_bn_chain_y_recovers); its forward writes xnorm in
 * the others only.
 *
 * Blobs: [0..2] BatchNorm's running sums (never learned), [3] Scale's factor, [4] its bias when
 * it has one; they are the member layers' own tensors, which this layer does not own. */
#include <stddef.h>
#include <stdlib.h>

#include "layers/bn_chain.h"

typedef struct chain_priv {
  ct_bn_chain k; /* N and S are filled per partition */
  int C;
  size_t spatial;
  bool bias;
  bool x_kept;          /* the bottom is unchanged from the forward to the backward (fuse.c) */
  bool y_kept;          /* ... and the top */
  bool top_grad;        /* an own top's diff gets BatchNorm's output gradient (set_top_grad) */
  ct_part_scratch stats; /* per partition: mean then std (C each) */
  ct_tensor *xnorm;      /* BatchNorm's output, Scale's input, bottom-shaped */
  /* the Eltwise SUM -> ReLU the chain may feed (ct_bn_chain_set_feed): its other bottom, its
   * top, the coefficients of the chain's output and of that bottom, the ReLU's slope */
  ct_tensor *feed_add, *feed_out;
  float feed_cs, feed_ca, feed_slope;
  bool feed_on; /* the next forward feeds (ct_bn_chain_feed) */
  bool fed;     /* the last forward fed: the bottom still holds x, the chain's own output was not written */
} chain_priv;

static const Caffe__BatchNormParameter default_bn = CAFFE__BATCH_NORM_PARAMETER__INIT;
static const Caffe__ScaleParameter default_scale = CAFFE__SCALE_PARAMETER__INIT;
static const Caffe__ReLUParameter default_relu = CAFFE__RE_LUPARAMETER__INIT;

static const Caffe__BatchNormParameter *bn_param(const ct_layer *bn) {
  return bn->lp->batch_norm_param ? bn->lp->batch_norm_param : &default_bn;
}

bool ct_bn_chain_fits(const ct_layer *bn, const ct_layer *scale, const ct_layer *relu) {
  const ct_tensor *x = bn->bottom[0];
  if (x->naxes < 2 || scale->nbottom != 1 || scale->nblobs < 1) return false;
  const Caffe__ScaleParameter *sp = scale->lp->scale_param ? scale->lp->scale_param : &default_scale;
  const ct_tensor *s = scale->blobs[0];
  if (ct_tensor_axis(x, sp->axis) != 1 || s->naxes != 1 || s->shape[0] != x->shape[1]) return false;
  if (scale->nblobs > 2 || (scale->nblobs == 2 && !ct_tensor_same_shape(scale->blobs[1], s))) return false;
  if (relu) {
    const Caffe__ReLUParameter *rp = relu->lp->relu_param ? relu->lp->relu_param : &default_relu;
    if (!(rp->negative_slope >= 0.0f)) return false;
  }
  return true;
}

/* xnorm is read by Scale's factor gradient and by BatchNorm's gradient with batch statistics. */
static bool needs_xnorm(const ct_layer *l) {
  const chain_priv *cp = l->priv;
  return l->param_propagate_down[3] || (l->propagate_down[0] && !cp->k.bn.global);
}

/* ... recomputed from x: x_kept, and every driver the chain runs on can */
static bool xnorm_from_x(const ct_layer *l) {
  const chain_priv *cp = l->priv;
  return cp->x_kept && needs_xnorm(l) && ct_layer_drivers_have(l, offsetof(ct_driver_ops, bn_chain_backward_x));
}

/* ... or from y, where it can (ct_bn_chain_z_from_y_applies: no ReLU, or one on the stored
 * statistics; channels whose Scale cannot recover it keep xnorm) */
static bool xnorm_from_y(const ct_layer *l) {
  const chain_priv *cp = l->priv;
  if (!cp->y_kept || !ct_bn_chain_z_from_y_applies(&cp->k) || !needs_xnorm(l) || xnorm_from_x(l)) return false;
  return ct_layer_drivers_have(l, offsetof(ct_driver_ops, bn_chain_backward_y));
}

static bool keeps_xnorm(const ct_layer *l) { return needs_xnorm(l) && !xnorm_from_x(l); }

bool ct_bn_chain_can_feed(const ct_layer *l) {
  const chain_priv *cp = l->priv;
  /* with the stored statistics the forward may fold the chain into one affine, which a backward
   * reading xnorm would have to replay: fed only where the backward reads none */
  if (!cp->feed_out || cp->k.relu || (cp->k.bn.global && needs_xnorm(l))) return false;
  return ct_layer_drivers_have(l, offsetof(ct_driver_ops, bn_chain_forward_add)) &&
         (!needs_xnorm(l) || ct_layer_drivers_have(l, offsetof(ct_driver_ops, bn_chain_backward_x)));
}

static bool chain_splits(const ct_layer *l) { return ((const chain_priv *)l->priv)->k.bn.global; }

static ct_status chain_reshape(ct_layer *l, ct_error *err) {
  chain_priv *cp = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 2 || x->shape[1] != cp->C)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom shape %s does not have the %d channels set up",
                         ct_tensor_shape_str(x, buf, sizeof buf), cp->C);
  const size_t num = (size_t)x->shape[0];
  cp->spatial = num ? x->count / (num * (size_t)cp->C) : 0;
  if (l->top[0] != x) CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  if (keeps_xnorm(l)) {
    if (!cp->xnorm && !(cp->xnorm = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
    CT_TRY(ct_tensor_reshape_like(cp->xnorm, x, err));
  }
  return ct_part_scratch_reserve(&cp->stats, l, 2 * (size_t)cp->C * sizeof(float), err);
}

static ct_bn_chain geometry(const chain_priv *cp, const ct_layer *l, const ct_part *p, size_t *first) {
  int img0, nimg;
  size_t n;
  ct_part_images(p, l->bottom[0], &img0, &nimg);
  ct_part_span(p, l->bottom[0], first, &n);
  ct_bn_chain k = cp->k;
  k.bn.N = (size_t)nimg;
  k.bn.C = (size_t)cp->C;
  k.bn.S = cp->spatial;
  return k;
}

static ct_status chain_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  chain_priv *cp = l->priv;
  const ct_driver *d = p->d;
  size_t first;
  ct_bn_chain k = geometry(cp, l, p, &first);
  k.z_from_y = xnorm_from_y(l);
  float *mean = ct_part_scratch_of(&cp->stats, p), *std = mean + cp->C;
  const ct_access run = k.bn.global ? CT_READ : CT_READWRITE;
  const float *x, *s, *b = NULL;
  float *y, *xnorm = NULL, *run_mean, *run_var, *run_factor;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_part_all(l, p, l->blobs[0], CT_DATA, run, &run_mean, err));
  CT_TRY(ct_part_all(l, p, l->blobs[1], CT_DATA, run, &run_var, err));
  CT_TRY(ct_part_all(l, p, l->blobs[2], CT_DATA, run, &run_factor, err));
  CT_TRY(ct_read_param(l, p, 3, &s, err));
  if (cp->bias) CT_TRY(ct_read_param(l, p, 4, &b, err));
  cp->fed = cp->feed_on;
  if (cp->fed) { /* the Eltwise pair's output instead of the chain's: the bottom keeps x */
    const float *add;
    float *out;
    CT_TRY(ct_read(l, p, cp->feed_add, &add, err));
    CT_TRY(ct_write(l, p, cp->feed_out, &out, err));
    return d->ops->bn_chain_forward_add(d, &k, x + first, add + first, cp->feed_cs, cp->feed_ca, cp->feed_slope,
                                        out + first, mean, std, run_mean, run_var, run_factor, s, b);
  }
  if (keeps_xnorm(l)) {
    CT_TRY(ct_write(l, p, cp->xnorm, &xnorm, err));
    xnorm += first;
  }
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  return d->ops->bn_chain_forward(d, &k, x + first, y + first, xnorm, mean, std, run_mean, run_var, run_factor, s, b);
}

static ct_status chain_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  chain_priv *cp = l->priv;
  const ct_driver *d = p->d;
  float *ds = NULL, *db = NULL, *dx = NULL;
  if (l->param_propagate_down[3]) CT_TRY(ct_part_param_grad(l, p, 3, &ds, err));
  if (cp->bias && l->param_propagate_down[4]) CT_TRY(ct_part_param_grad(l, p, 4, &db, err));
  if (!ds && !db && !l->propagate_down[0]) return CT_OK;
  size_t first;
  ct_bn_chain k = geometry(cp, l, p, &first);
  const float *mean = ct_part_scratch_of(&cp->stats, p), *std = mean + cp->C;
  const float *s, *b = NULL, *y = NULL, *dy, *xnorm = NULL;
  /* after a fed forward x is still there: xnorm from it, through y where the unfed chain takes
   * it from y (k.z_via_y), so that the gradients are the same either way */
  const bool from_x = xnorm_from_x(l) || (cp->fed && needs_xnorm(l)), from_y = !cp->fed && xnorm_from_y(l);
  k.z_via_y = cp->fed && xnorm_from_y(l);
  CT_TRY(ct_read_param(l, p, 3, &s, err));
  if ((from_y || k.relu || k.z_via_y) && cp->bias) CT_TRY(ct_read_param(l, p, 4, &b, err));
  k.y_b = k.z_via_y ? b : NULL;
  /* the ReLU's mask from xnorm s + b where xnorm is read anyway (driver.h); from y where xnorm
   * comes from y */
  k.mask_from_z = k.relu && !from_y;
  k.mask_b = k.mask_from_z ? b : NULL;
  if (k.relu || from_y) {
    CT_TRY(ct_read(l, p, l->top[0], &y, err));
    y += first;
  }
  if (needs_xnorm(l)) { /* kept, or x to recompute it from */
    CT_TRY(ct_read(l, p, from_x ? l->bottom[0] : cp->xnorm, &xnorm, err));
    xnorm += first;
  }
  /* BatchNorm with a top of its own (Scale in place on it): Caffe's layers leave the gradient
   * of BatchNorm's output in that top's diff, so the chain writes it there too (over dy) */
  const bool own_top = l->top[0] != l->bottom[0] && l->propagate_down[0] && cp->top_grad;
  float *dz = NULL;
  if (own_top) {
    CT_TRY(ct_part_io(l, p, l->top[0], CT_DIFF, CT_READWRITE, &dz, err));
    dz += first;
    dy = dz - first;
  } else {
    CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  }
  if (l->propagate_down[0]) {
    CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
    dx += first;
  }
  /* in place, dx is dy; dz is dy. The kernel reads each element before it writes it */
  if (from_x) return d->ops->bn_chain_backward_x(d, &k, y, dy + first, xnorm, mean, std, s, ds, db, dx, dz);
  if (from_y) return d->ops->bn_chain_backward_y(d, &k, y, dy + first, xnorm, std, s, b, ds, db, dx, dz);
  return d->ops->bn_chain_backward(d, &k, y, dy + first, xnorm, std, s, ds, db, dx, dz);
}

static void chain_destroy(ct_layer *l) {
  chain_priv *cp = l->priv;
  if (cp) {
    ct_part_scratch_free(&cp->stats);
    ct_tensor_free(cp->xnorm);
  }
  free(cp);
  l->priv = NULL;
}

static const ct_layer_ops chain_ops = {
    .type = "BatchNorm+Scale",
    .min_bottom = 1,
    .max_bottom = 1,
    .min_top = 1,
    .max_top = 1,
    .in_place = true,
    .has_backward = true,
    .splits = chain_splits,
    .gains = true,
    .kind = CT_WORK_MEMORY,
    .reshape = chain_reshape,
    .forward = chain_forward,
    .backward = chain_backward,
    .destroy = chain_destroy,
};

void ct_bn_chain_set_top_grad(ct_layer *chain, bool wanted) { ((chain_priv *)chain->priv)->top_grad = wanted; }

void ct_bn_chain_set_feed(ct_layer *chain, ct_tensor *add, ct_tensor *out, float c_self, float c_add, float slope) {
  chain_priv *cp = chain->priv;
  cp->feed_add = add, cp->feed_out = out;
  cp->feed_cs = c_self, cp->feed_ca = c_add, cp->feed_slope = slope;
}

void ct_bn_chain_feed(ct_layer *chain, bool on) { ((chain_priv *)chain->priv)->feed_on = on; }

void ct_bn_chain_free(ct_layer *l) {
  if (!l) return;
  if (l->ops && l->ops->destroy) l->ops->destroy(l);
  ct_layer_free_part_grads(l);
  free(l->bottom);
  free(l->top);
  free(l->propagate_down);
  free(l->blobs);
  free(l->param_propagate_down);
  free(l);
}

ct_status ct_bn_chain_create(ct_layer *bn, ct_layer *scale, ct_layer *relu, bool x_kept, bool y_kept,
                             ct_layer **out, ct_error *err) {
  *out = NULL;
  ct_layer *l = calloc(1, sizeof *l);
  chain_priv *cp = calloc(1, sizeof *cp);
  if (!l || !cp) {
    free(l);
    free(cp);
    return ct_layer_fail(bn, err, CT_ENOMEM, "out of memory");
  }
  l->ops = &chain_ops;
  l->priv = cp;
  l->lp = bn->lp;
  l->name = bn->name;
  l->index = bn->index;
  l->phase = bn->phase;
  l->dir = bn->dir;
  l->place = bn->place;
  l->spec = bn->spec;
  l->rng = bn->rng;
  l->nbottom = l->ntop = 1;
  l->nblobs = 3 + scale->nblobs;
  l->bottom = calloc(2, sizeof *l->bottom);
  l->top = calloc(2, sizeof *l->top);
  l->propagate_down = calloc(2, sizeof *l->propagate_down);
  l->blobs = calloc((size_t)l->nblobs, sizeof *l->blobs);
  l->param_propagate_down = calloc((size_t)l->nblobs, sizeof *l->param_propagate_down);
  if (!l->bottom || !l->top || !l->propagate_down || !l->blobs || !l->param_propagate_down) {
    ct_bn_chain_free(l);
    return ct_layer_fail(bn, err, CT_ENOMEM, "out of memory");
  }
  l->bottom[0] = bn->bottom[0];
  l->top[0] = (relu ? relu : scale)->top[0];
  l->propagate_down[0] = bn->propagate_down[0];
  for (int j = 0; j < 3; j++) l->blobs[j] = bn->blobs[j]; /* state, never learned */
  for (int j = 0; j < scale->nblobs; j++) {
    l->blobs[3 + j] = scale->blobs[j];
    l->param_propagate_down[3 + j] = scale->param_propagate_down[j];
  }
  const Caffe__BatchNormParameter *p = bn_param(bn);
  cp->C = bn->bottom[0]->shape[1];
  cp->bias = scale->nblobs == 2;
  cp->x_kept = x_kept;
  cp->y_kept = y_kept;
  cp->top_grad = true;
  cp->k.bn.global = p->has_use_global_stats ? p->use_global_stats : bn->phase == CAFFE__PHASE__TEST;
  cp->k.bn.maf = p->moving_average_fraction;
  cp->k.bn.eps = p->eps;
  cp->k.relu = relu != NULL;
  if (relu) cp->k.slope = (relu->lp->relu_param ? relu->lp->relu_param : &default_relu)->negative_slope;
  *out = l;
  return CT_OK;
}
