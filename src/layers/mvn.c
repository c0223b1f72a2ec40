/* MVN (Caffe's "MVN"): mean-variance normalisation of each image's channels (or of each whole
 * image, across_channels): y = x - mean, then, with normalize_variance, y / (std + eps) where
 * std is the population standard deviation of the group (Caffe adds eps after the square root).
 * Backward follows Caffe's formula:
 *   dx = (dy - (sum(dy y) y + sum(dy)) / dim) / (std + eps)       (normalize_variance)
 *   dx = dy - mean(dy)                                              (otherwise)
 * with the sums over each group of dim elements.
 *
 * Groups: num = N x C (N across channels), dim = count / num. On the driver: GEMVs against a
 * vector of ones for the sums, rank-1 GEMMs to broadcast them back, element-wise passes. Groups
 * lie within images, so partitions split the batch. */
#include <math.h>
#include <stdlib.h>

#include "layers/layer.h"
#include "layers/ones.h"

typedef struct mvn {
  bool variance, across;
  float eps;
  size_t num, dim;  /* groups, elements per group */
  ct_ones ones;     /* dim of them */
  ct_tensor *mean;  /* N x groups per image: the means, and backward's sums */
  ct_tensor *inv;   /* N x groups per image: 1 / (std + eps), kept for backward */
  ct_tensor *tmp;   /* bottom-shaped scratch */
} mvn;

static ct_status mvn_setup(ct_layer *l, ct_error *err) {
  static const Caffe__MVNParameter dflt = CAFFE__MVNPARAMETER__INIT;
  const Caffe__MVNParameter *mp = l->lp->mvn_param ? l->lp->mvn_param : &dflt;
  if (!(mp->eps >= 0) || isinf(mp->eps))
    return ct_layer_fail(l, err, CT_EINVAL, "eps must be a finite number >= 0, got %g", mp->eps);
  mvn *m = calloc(1, sizeof *m);
  if (!m) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = m;
  m->variance = mp->normalize_variance;
  m->across = mp->across_channels;
  m->eps = mp->eps;
  if (!(m->mean = ct_tensor_create()) || !(m->inv = ct_tensor_create()) || !(m->tmp = ct_tensor_create()))
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status mvn_reshape(ct_layer *l, ct_error *err) {
  mvn *m = l->priv;
  const ct_tensor *x = l->bottom[0];
  char buf[128];
  if (x->naxes < 1 || x->shape[0] == 0)
    return ct_layer_fail(l, err, CT_ESHAPE, "bottom must have a batch axis, got shape %s",
                         ct_tensor_shape_str(x, buf, sizeof buf));
  const int N = x->shape[0], per = m->across || x->naxes < 2 ? 1 : x->shape[1];
  m->num = (size_t)N * (size_t)per;
  m->dim = x->count / m->num;
  CT_TRY(ct_tensor_reshape_like(l->top[0], x, err));
  const int gshape[2] = {N, per};
  CT_TRY(ct_tensor_reshape(m->mean, 2, gshape, err));
  CT_TRY(ct_tensor_reshape(m->inv, 2, gshape, err));
  CT_TRY(ct_tensor_reshape_like(m->tmp, x, err));
  return ct_ones_fit(&m->ones, m->dim, err);
}

/* The partition's buffers, each at its first group (or element). */
typedef struct span {
  int nr;       /* groups */
  size_t n;     /* elements */
  float *mean, *inv, *tmp;
  const float *ones;
} span;

static ct_status span_of(const ct_layer *l, const ct_part *p, span *s, size_t *first, ct_error *err) {
  mvn *m = l->priv;
  size_t g0, ng;
  ct_part_span(p, m->mean, &g0, &ng);
  ct_part_span(p, l->bottom[0], first, &s->n);
  s->nr = (int)ng;
  CT_TRY(ct_write(l, p, m->mean, &s->mean, err));
  CT_TRY(ct_part_io(l, p, m->inv, CT_DATA, CT_READWRITE, &s->inv, err));
  CT_TRY(ct_write(l, p, m->tmp, &s->tmp, err));
  CT_TRY(ct_part_all(l, p, m->ones.t, CT_DATA, CT_READ, (float **)&s->ones, err));
  s->mean += g0;
  s->inv += g0;
  s->tmp += *first;
  return CT_OK;
}

static ct_status mvn_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  mvn *m = l->priv;
  const ct_driver *d = p->d;
  const float *x;
  float *y;
  span s;
  size_t first;
  CT_TRY(span_of(l, p, &s, &first, err));
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_write(l, p, l->top[0], &y, err));
  x += first;
  y += first;
  if (s.n == 0) return CT_OK;
  const int dim = (int)m->dim;
  const float inv_dim = 1.0f / (float)m->dim;
  /* y = x - mean */
  CT_TRY(d->ops->gemv(d, false, s.nr, dim, inv_dim, x, s.ones, 0.0f, s.mean));
  CT_TRY(d->ops->copy(d, y, x, s.n * sizeof(float)));
  CT_TRY(d->ops->gemm(d, false, false, s.nr, dim, 1, -1.0f, s.mean, s.ones, 1.0f, y));
  if (!m->variance) return CT_OK;
  /* inv = 1 / (sqrt(mean(y^2)) + eps) */
  const ct_neuron root = {.kind = CT_NEURON_POWER, .power = 0.5f, .scale = 1.0f};
  const ct_neuron plus_eps = {.kind = CT_NEURON_POWER, .power = 1.0f, .scale = 1.0f, .shift = m->eps};
  const ct_neuron recip = {.kind = CT_NEURON_POWER, .power = -1.0f, .scale = 1.0f};
  CT_TRY(d->ops->mul(d, s.n, y, y, s.tmp));
  CT_TRY(d->ops->gemv(d, false, s.nr, dim, inv_dim, s.tmp, s.ones, 0.0f, s.inv));
  CT_TRY(d->ops->neuron_forward(d, &root, (size_t)s.nr, s.inv, s.inv));
  CT_TRY(d->ops->neuron_forward(d, &plus_eps, (size_t)s.nr, s.inv, s.inv));
  CT_TRY(d->ops->neuron_forward(d, &recip, (size_t)s.nr, s.inv, s.inv));
  /* y = (x - mean) inv, group by group */
  CT_TRY(d->ops->copy(d, s.tmp, y, s.n * sizeof(float)));
  return d->ops->scale_forward(d, 1, (size_t)s.nr, m->dim, s.tmp, s.inv, NULL, y);
}

static ct_status mvn_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  if (!l->propagate_down[0]) return CT_OK;
  mvn *m = l->priv;
  const ct_driver *d = p->d;
  const float *y, *dy;
  float *dx;
  span s;
  size_t first;
  CT_TRY(span_of(l, p, &s, &first, err));
  CT_TRY(ct_read(l, p, l->top[0], &y, err));
  CT_TRY(ct_read_diff(l, p, l->top[0], &dy, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  y += first;
  dy += first;
  dx += first;
  if (s.n == 0) return CT_OK;
  const int dim = (int)m->dim;
  if (!m->variance) { /* dx = dy - mean(dy) */
    CT_TRY(d->ops->gemv(d, false, s.nr, dim, 1.0f / (float)m->dim, dy, s.ones, 0.0f, s.mean));
    CT_TRY(d->ops->copy(d, dx, dy, s.n * sizeof(float)));
    return d->ops->gemm(d, false, false, s.nr, dim, 1, -1.0f, s.mean, s.ones, 1.0f, dx);
  }
  /* dx = sum(dy y) y + sum(dy), broadcast per group */
  CT_TRY(d->ops->mul(d, s.n, y, dy, dx));
  CT_TRY(d->ops->gemv(d, false, s.nr, dim, 1.0f, dx, s.ones, 0.0f, s.mean));
  CT_TRY(d->ops->gemm(d, false, false, s.nr, dim, 1, 1.0f, s.mean, s.ones, 0.0f, dx));
  CT_TRY(d->ops->mul(d, s.n, dx, y, dx));
  CT_TRY(d->ops->gemv(d, false, s.nr, dim, 1.0f, dy, s.ones, 0.0f, s.mean));
  CT_TRY(d->ops->gemm(d, false, false, s.nr, dim, 1, 1.0f, s.mean, s.ones, 1.0f, dx));
  /* tmp = dy - dx / dim, then dx = tmp inv */
  CT_TRY(d->ops->scal(d, s.n, -1.0f / (float)m->dim, dx, s.tmp));
  CT_TRY(d->ops->axpy(d, s.n, 1.0f, dy, s.tmp));
  return d->ops->scale_forward(d, 1, (size_t)s.nr, m->dim, s.tmp, s.inv, NULL, dx);
}

static void mvn_destroy(ct_layer *l) {
  mvn *m = l->priv;
  if (!m) return;
  ct_ones_free(&m->ones);
  ct_tensor_free(m->mean);
  ct_tensor_free(m->inv);
  ct_tensor_free(m->tmp);
  free(m);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_MVN = {.type = "MVN",
                                   .min_bottom = 1,
                                   .max_bottom = 1,
                                   .min_top = 1,
                                   .max_top = 1,
                                   .has_backward = true,
                                   .splits = ct_layer_splits_always,
                                   .gains = true,
                                   .kind = CT_WORK_MEMORY,
                                   .setup = mvn_setup,
                                   .reshape = mvn_reshape,
                                   .forward = mvn_forward,
                                   .backward = mvn_backward,
                                   .destroy = mvn_destroy};
