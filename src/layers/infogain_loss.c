/* InfogainLoss (Caffe 1.0's): a softmax over infogain_loss_param.axis of the scores x (outer x
 * K x inner), then, with an information-gain matrix H (K x K),
 *   E = -1/norm sum over positions of  sum_k H[label, k] ln(max(p_k, 1e-20))
 * where norm is loss_param's normalization (VALID by default; positions labelled ignore_label
 * count for nothing). H is read from infogain_loss_param.source (a binary BlobProto, as Caffe
 * writes it) or taken from a third bottom. The gradient with respect to x is
 *   (p_k sum_j H[label, j] - H[label, k]) / norm
 * (the identity H makes it SoftmaxWithLoss); labels and H take none. An optional second top
 * receives the probabilities.
 *
 * Reading H by each position's label is host logic: the layer runs on the CPU whatever the plan
 * (ops.host), unsplit (the loss sums the batch); its softmax runs through the CPU driver. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/data_layer.h"
#include "layers/layer.h"
#include "proto/blob.h"
#include "proto/prototxt.h"

#define LOG_THRESHOLD 1e-20f /* Caffe's kLOG_THRESHOLD */

typedef struct infogain {
  bool has_ignore;
  int ignore;
  Caffe__LossParameter__NormalizationMode mode;
  float *H;        /* from source: K x K (NULL with a third bottom) */
  size_t H_count;
  size_t outer, K, inner;
  float normalizer; /* of the last forward */
  ct_tensor *prob;  /* when there is no second top */
  ct_part_scratch scratch;
} infogain;

static ct_status load_H(ct_layer *l, infogain *g, const char *source, ct_error *err) {
  char path[4096];
  ct_data_layer_resolve(l, source, path, sizeof path);
  ProtobufCMessage *m = NULL;
  if (ct_proto_read_binary(path, &caffe__blob_proto__descriptor, &m, err))
    return ct_error_prefix(err, "layer \"%s\" (InfogainLoss): infogain matrix", l->name);
  const Caffe__BlobProto *b = (const Caffe__BlobProto *)m;
  const size_t n = b->n_data ? b->n_data : b->n_double_data;
  g->H = malloc((n ? n : 1) * sizeof *g->H);
  if (!g->H) {
    protobuf_c_message_free_unpacked(m, NULL);
    return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) g->H[i] = b->n_data ? b->data[i] : (float)b->double_data[i];
  g->H_count = n;
  protobuf_c_message_free_unpacked(m, NULL);
  return CT_OK;
}

static ct_status ig_setup(ct_layer *l, ct_error *err) {
  static const Caffe__LossParameter default_loss = CAFFE__LOSS_PARAMETER__INIT;
  static const Caffe__InfogainLossParameter default_ig = CAFFE__INFOGAIN_LOSS_PARAMETER__INIT;
  const Caffe__LossParameter *lp = l->lp->loss_param ? l->lp->loss_param : &default_loss;
  const Caffe__InfogainLossParameter *ip = l->lp->infogain_loss_param ? l->lp->infogain_loss_param : &default_ig;
  infogain *g = calloc(1, sizeof *g);
  if (!g) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = g;
  g->has_ignore = lp->has_ignore_label;
  g->ignore = lp->ignore_label;
  g->mode = lp->normalization;
  if (!lp->has_normalization && lp->has_normalize)
    g->mode = lp->normalize ? CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID
                            : CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE;
  switch (g->mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE:
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__NONE: break;
    default: return ct_layer_fail(l, err, CT_EINVAL, "unknown normalization mode %d", (int)g->mode);
  }
  if (l->nbottom < 3) {
    if (!ip->source || !ip->source[0])
      return ct_layer_fail(l, err, CT_EINVAL,
                           "the infogain matrix must come from infogain_loss_param.source or a third bottom");
    CT_TRY(load_H(l, g, ip->source, err));
  } else if (ip->source && ip->source[0]) {
    return ct_layer_fail(l, err, CT_EINVAL, "the infogain matrix comes from the third bottom; give no source as well");
  }
  if (!(g->prob = ct_tensor_create())) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  return CT_OK;
}

static ct_status ig_reshape(ct_layer *l, ct_error *err) {
  infogain *g = l->priv;
  static const Caffe__InfogainLossParameter default_ig = CAFFE__INFOGAIN_LOSS_PARAMETER__INIT;
  const Caffe__InfogainLossParameter *ip = l->lp->infogain_loss_param ? l->lp->infogain_loss_param : &default_ig;
  const ct_tensor *x = l->bottom[0], *lab = l->bottom[1];
  char b0[128], b1[128];
  const int axis = ct_tensor_axis(x, ip->axis);
  if (axis < 0)
    return ct_layer_fail(l, err, CT_EINVAL, "axis %d is out of range for bottom shape %s", ip->axis,
                         ct_tensor_shape_str(x, b0, sizeof b0));
  g->outer = ct_tensor_count_range(x, 0, axis);
  g->K = (size_t)x->shape[axis];
  g->inner = ct_tensor_count_range(x, axis + 1, x->naxes);
  if (g->outer * g->inner != lab->count)
    return ct_layer_fail(l, err, CT_ESHAPE,
                         "number of labels must match number of predictions: %s with axis %d needs %zu labels, got %s",
                         ct_tensor_shape_str(x, b0, sizeof b0), axis, g->outer * g->inner,
                         ct_tensor_shape_str(lab, b1, sizeof b1));
  const size_t hc = l->nbottom > 2 ? l->bottom[2]->count : g->H_count;
  if (hc != g->K * g->K)
    return ct_layer_fail(l, err, CT_ESHAPE, "the infogain matrix holds %zu values; %zu classes need %zu x %zu", hc,
                         g->K, g->K, g->K);
  CT_TRY(ct_tensor_reshape(l->top[0], 0, NULL, err));
  CT_TRY(ct_tensor_reshape_like(l->ntop > 1 ? l->top[1] : g->prob, x, err));
  return ct_part_scratch_reserve(&g->scratch, l, (g->inner ? g->inner : 1) * sizeof(float), err);
}

static float normalizer(const infogain *g, size_t valid) {
  double n;
  switch (g->mode) {
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__FULL: n = (double)(g->outer * g->inner); break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__VALID: n = (double)valid; break;
    case CAFFE__LOSS_PARAMETER__NORMALIZATION_MODE__BATCH_SIZE: n = (double)g->outer; break;
    default: n = 1.0; break;
  }
  return (float)(n > 1.0 ? n : 1.0);
}

/* The label at position (o, i), or -1 when it is ignored; fails on a label outside [0, K). */
static ct_status label_at(const ct_layer *l, const float *lab, size_t pos, long *out, ct_error *err) {
  const infogain *g = l->priv;
  const float v = lab[pos];
  if (g->has_ignore && v == (float)g->ignore) {
    *out = -1;
    return CT_OK;
  }
  if (!(v >= 0 && v < (float)g->K) || v != floorf(v))
    return ct_layer_fail(l, err, CT_EINVAL, "label %g at position %zu is not a class in [0, %zu)", v, pos, g->K);
  *out = (long)v;
  return CT_OK;
}

static ct_status H_of(ct_layer *l, const ct_part *p, const float **H, ct_error *err) {
  infogain *g = l->priv;
  if (l->nbottom < 3) {
    *H = g->H;
    return CT_OK;
  }
  return ct_read(l, p, l->bottom[2], H, err);
}

static ct_status ig_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  infogain *g = l->priv;
  const ct_driver *d = p->d; /* the CPU (ops.host) */
  const float *x, *lab, *H;
  float *prob;
  CT_TRY(ct_read(l, p, l->bottom[0], &x, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  CT_TRY(H_of(l, p, &H, err));
  CT_TRY(ct_write(l, p, l->ntop > 1 ? l->top[1] : g->prob, &prob, err));
  if (g->K) CT_TRY(d->ops->softmax_forward(d, g->outer, g->K, g->inner, x, prob, ct_part_scratch_of(&g->scratch, p)));
  double loss = 0;
  size_t valid = 0;
  for (size_t o = 0; o < g->outer; o++)
    for (size_t i = 0; i < g->inner; i++) {
      long k;
      CT_TRY(label_at(l, lab, o * g->inner + i, &k, err));
      if (k < 0) continue;
      const float *Hk = H + (size_t)k * g->K, *po = prob + o * g->K * g->inner + i;
      for (size_t j = 0; j < g->K; j++) loss -= (double)Hk[j] * log(fmaxf(po[j * g->inner], LOG_THRESHOLD));
      valid++;
    }
  g->normalizer = normalizer(g, valid);
  return ct_layer_set_scalar(l, l->top[0], (float)(loss / g->normalizer), err);
}

static ct_status ig_backward(ct_layer *l, const ct_part *p, ct_error *err) {
  infogain *g = l->priv;
  for (int b = 1; b < l->nbottom; b++) /* labels and H take no gradient; keep their diffs defined */
    if (l->propagate_down[b]) {
      float *dl;
      CT_TRY(ct_write_diff(l, p, l->bottom[b], &dl, err));
      memset(dl, 0, l->bottom[b]->count * sizeof(float));
    }
  if (!l->propagate_down[0]) return CT_OK;
  float top_diff;
  CT_TRY(ct_layer_loss_scale(l, &top_diff, err));
  const float scale = top_diff / g->normalizer;
  const float *prob, *lab, *H;
  float *dx;
  CT_TRY(ct_read(l, p, l->ntop > 1 ? l->top[1] : g->prob, &prob, err));
  CT_TRY(ct_read(l, p, l->bottom[1], &lab, err));
  CT_TRY(H_of(l, p, &H, err));
  CT_TRY(ct_write_diff(l, p, l->bottom[0], &dx, err));
  for (size_t o = 0; o < g->outer; o++)
    for (size_t i = 0; i < g->inner; i++) {
      long k;
      CT_TRY(label_at(l, lab, o * g->inner + i, &k, err));
      const size_t base = o * g->K * g->inner + i;
      if (k < 0) {
        for (size_t j = 0; j < g->K; j++) dx[base + j * g->inner] = 0;
        continue;
      }
      const float *Hk = H + (size_t)k * g->K;
      double row = 0;
      for (size_t j = 0; j < g->K; j++) row += Hk[j];
      for (size_t j = 0; j < g->K; j++)
        dx[base + j * g->inner] = scale * (prob[base + j * g->inner] * (float)row - Hk[j]);
    }
  return CT_OK;
}

static void ig_destroy(ct_layer *l) {
  infogain *g = l->priv;
  if (!g) return;
  free(g->H);
  ct_tensor_free(g->prob);
  ct_part_scratch_free(&g->scratch);
  free(g);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_InfogainLoss = {.type = "InfogainLoss",
                                            .min_bottom = 2,
                                            .max_bottom = 3,
                                            .min_top = 1,
                                            .max_top = 2,
                                            .is_loss = true,
                                            .has_backward = true,
                                            .label_bottoms = (1u << 1) | (1u << 2),
                                            .splits = NULL,
                                            .host = true,
                                            .kind = CT_WORK_MEMORY,
                                            .setup = ig_setup,
                                            .reshape = ig_reshape,
                                            .forward = ig_forward,
                                            .backward = ig_backward,
                                            .destroy = ig_destroy};
