/* The CPU driver's losses and evaluation: SoftmaxWithLoss, SigmoidCrossEntropyLoss, Accuracy,
 * ArgMax. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "drivers/cpu/kernels.h"

/* ---------------------------------------------------------------- SoftmaxWithLoss */

/* The loss over the labels in order; the position of the first invalid label stops it (the
 * caller reports it; loss and valid are then left alone), else -1. */
static ptrdiff_t softmax_loss(size_t outer, size_t C, size_t inner, const float *prob, const float *labels,
                              bool has_ignore, int ignore, double *loss_out, size_t *valid_out) {
  double loss = 0.0;
  size_t valid = 0;
  for (size_t o = 0; o < outer; o++)
    for (size_t i = 0; i < inner; i++) {
      const float v = labels[o * inner + i];
      if (!(v > -2147483648.0f && v < 2147483648.0f)) return (ptrdiff_t)(o * inner + i);
      const int lab = (int)v;
      if (has_ignore && lab == ignore) continue;
      if (lab < 0 || (size_t)lab >= C) return (ptrdiff_t)(o * inner + i);
      const float pr = prob[(o * C + (size_t)lab) * inner + i];
      loss -= log(pr > FLT_MIN ? pr : FLT_MIN);
      valid++;
    }
  *loss_out = loss;
  *valid_out = valid;
  return -1;
}

ct_status ct_cpu_softmax_loss_forward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                      const float *labels, bool has_ignore, int ignore, double *loss, size_t *valid,
                                      ptrdiff_t *bad) {
  (void)d;
  *bad = softmax_loss(outer, C, inner, prob, labels, has_ignore, ignore, loss, valid);
  return CT_OK;
}

ct_status ct_cpu_softmax_loss_backward(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *prob,
                                       const float *labels, bool has_ignore, int ignore, float scale, float *dx) {
  (void)d;
  for (size_t o = 0; o < outer; o++) {
    const float *restrict po = prob + o * C * inner;
    float *restrict dd = dx + o * C * inner;
    for (size_t k = 0; k < C * inner; k++) dd[k] = po[k] * scale;
    for (size_t i = 0; i < inner; i++) {
      const int lab = (int)labels[o * inner + i];
      if (has_ignore && lab == ignore) {
        for (size_t c = 0; c < C; c++) dd[c * inner + i] = 0.0f;
      } else {
        dd[(size_t)lab * inner + i] -= scale;
      }
    }
  }
  return CT_OK;
}

/* ---------------------------------------------------------------- SigmoidCrossEntropyLoss */

/* The loss in the form that cannot overflow: -(x (t - [x >= 0]) - log(1 + e^(x - 2 x [x >= 0]))). */
ct_status ct_cpu_sigmoid_xent_forward(const ct_driver *d, size_t n, const float *x, const float *t, bool has_ignore,
                                      int ignore, float *s, double *loss_out, size_t *valid_out) {
  (void)d;
  double loss = 0;
  size_t valid = 0;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    float e = expf(-fabsf(v));
    s[i] = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    if (has_ignore && (int)t[i] == ignore) continue;
    float pos = v >= 0 ? 1.0f : 0.0f;
    loss -= (double)v * (t[i] - pos) - log1p((double)e);
    valid++;
  }
  *loss_out = loss;
  *valid_out = valid;
  return CT_OK;
}

ct_status ct_cpu_sigmoid_xent_backward(const ct_driver *d, size_t n, const float *s, const float *t, bool has_ignore,
                                       int ignore, float w, float *dx) {
  (void)d;
  for (size_t i = 0; i < n; i++) dx[i] = has_ignore && (int)t[i] == ignore ? 0.0f : w * (s[i] - t[i]);
  return CT_OK;
}

/* ---------------------------------------------------------------- Accuracy */

/* Like softmax_loss: the first invalid label stops the count and is returned, else -1. */
static ptrdiff_t accuracy(size_t outer, size_t Cs, size_t inner, const float *score, const float *label, int top_k,
                          bool has_ignore, int ignore, float *per_class, size_t *class_count, size_t *hits_out,
                          size_t *counted_out) {
  const int C = (int)Cs;
  if (per_class)
    for (int c = 0; c < C; c++) {
      per_class[c] = 0;
      class_count[c] = 0;
    }
  size_t hits = 0, counted = 0;
  for (size_t o = 0; o < outer; o++)
    for (size_t j = 0; j < inner; j++) {
      float lv = label[o * inner + j];
      int y = (int)lv;
      if (has_ignore && y == ignore) continue;
      if (!(lv >= 0 && lv < (float)C)) return (ptrdiff_t)(o * inner + j);
      const float *row = score + o * (size_t)C * inner + j;
      float truth = row[(size_t)y * inner];
      /* classes scoring at least the true class's score, itself excluded; a NaN score ranks
       * above (a NaN true score below everything), so NaN logits never count as right */
      int ranked_above = 0;
      for (int c = 0; c < C; c++) ranked_above += c != y && !(row[(size_t)c * inner] < truth);
      if (per_class) class_count[y]++;
      if (ranked_above < top_k && truth == truth) {
        hits++;
        if (per_class) per_class[y] += 1;
      }
      counted++;
    }
  if (per_class)
    for (int c = 0; c < C; c++) per_class[c] = class_count[c] ? per_class[c] / (float)class_count[c] : 0.0f;
  *hits_out = hits;
  *counted_out = counted;
  return -1;
}

ct_status ct_cpu_accuracy(const ct_driver *d, size_t outer, size_t C, size_t inner, const float *score,
                          const float *labels, int top_k, bool has_ignore, int ignore, float *per_class,
                          size_t *class_count, size_t *hits, size_t *counted, ptrdiff_t *bad) {
  (void)d;
  *bad = accuracy(outer, C, inner, score, labels, top_k, has_ignore, ignore, per_class, class_count, hits, counted);
  return CT_OK;
}

/* ---------------------------------------------------------------- ArgMax */

/* A total order (NaN ranks last), so that qsort is well defined on any input. */
static int by_rank(const void *pa, const void *pb) {
  const ct_rank_entry *a = pa, *b = pb;
  if (isnan(a->value) != isnan(b->value)) return isnan(a->value) ? 1 : -1;
  if (a->value != b->value && !isnan(a->value)) return a->value > b->value ? -1 : 1;
  return a->index > b->index ? -1 : a->index < b->index;
}

ct_status ct_cpu_argmax(const ct_driver *d, size_t outer, size_t dim, size_t stride, int top_k, bool out_max_val,
                        bool has_axis, const float *x, float *y, ct_rank_entry *e) {
  (void)d;
  const size_t K = (size_t)top_k;
  for (size_t o = 0; o < outer; o++)
    for (size_t s = 0; s < stride; s++) {
      for (size_t j = 0; j < dim; j++) {
        e[j].value = x[(o * dim + j) * stride + s];
        e[j].index = (int)j;
      }
      if (K == 1) { /* the common case: one pass, keeping the later index on ties */
        for (size_t j = 1; j < dim; j++)
          if (by_rank(&e[j], &e[0]) < 0) e[0] = e[j];
      } else {
        qsort(e, dim, sizeof *e, by_rank);
      }
      for (size_t j = 0; j < K; j++) {
        if (has_axis) {
          y[(o * K + j) * stride + s] = out_max_val ? e[j].value : (float)e[j].index;
        } else if (out_max_val) {
          y[o * 2 * K + j] = (float)e[j].index;
          y[o * 2 * K + K + j] = e[j].value;
        } else {
          y[o * K + j] = (float)e[j].index;
        }
      }
    }
  return CT_OK;
}
