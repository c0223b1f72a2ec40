/* Input and DummyData: tops whose shapes come from the prototxt. Both are host layers (the user
 * and the fillers write their tops on the host); neither has a bottom, so neither splits. */
#include <stdlib.h>
#include <string.h>

#include "core/filler.h"
#include "layers/layer.h"

static ct_status shape_from_proto(const ct_layer *l, const Caffe__BlobShape *bs, int *naxes, int *shape,
                                  ct_error *err) {
  if (bs->n_dim > CT_MAX_AXES)
    return ct_layer_fail(l, err, CT_ESHAPE, "a shape has %zu axes; at most %d are supported", bs->n_dim, CT_MAX_AXES);
  for (size_t k = 0; k < bs->n_dim; k++) {
    if (bs->dim[k] < 0 || bs->dim[k] > INT32_MAX)
      return ct_layer_fail(l, err, CT_ESHAPE, "shape dimension %zu is %lld; expected 0 to 2^31-1", k,
                           (long long)bs->dim[k]);
    shape[k] = (int)bs->dim[k];
  }
  *naxes = (int)bs->n_dim;
  return CT_OK;
}

/* ---- Input: shapes from input_param; the user fills the data. */

static ct_status input_setup(ct_layer *l, ct_error *err) {
  const Caffe__InputParameter *p = l->lp->input_param;
  size_t n = p ? p->n_shape : 0;
  if (n != 1 && n != (size_t)l->ntop)
    return ct_layer_fail(l, err, CT_EINVAL, "input_param needs one shape, or one per top (%d); got %zu", l->ntop, n);
  for (int t = 0; t < l->ntop; t++) {
    int naxes, shape[CT_MAX_AXES];
    CT_TRY(shape_from_proto(l, p->shape[n == 1 ? 0 : (size_t)t], &naxes, shape, err));
    CT_TRY(ct_tensor_reshape(l->top[t], naxes, shape, err));
  }
  return CT_OK;
}

static ct_status keep_shape(ct_layer *l, ct_error *err) {
  (void)l;
  (void)err;
  return CT_OK; /* tops keep the shape set at setup or by the user */
}

static ct_status input_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)l;
  (void)p;
  (void)err;
  return CT_OK; /* the user wrote the tops */
}

const ct_layer_ops ct_layer_Input = {
    .type = "Input", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = -1,
    .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = input_setup, .reshape = keep_shape, .forward = input_forward,
};

/* ---- DummyData: shapes and fillers from dummy_data_param; constant fillers fill once, others
 * refill at every forward (Caffe's behaviour). */

typedef struct dummy_priv {
  bool *refill;
} dummy_priv;

static const Caffe__FillerParameter *dummy_filler(const Caffe__DummyDataParameter *p, int t) {
  if (!p->n_data_filler) return NULL;
  return p->data_filler[p->n_data_filler == 1 ? 0 : (size_t)t];
}

static ct_status dummy_setup(ct_layer *l, ct_error *err) {
  const Caffe__DummyDataParameter *p = l->lp->dummy_data_param;
  if (!p) return ct_layer_fail(l, err, CT_EINVAL, "needs dummy_data_param with shape { dim: ... } entries");
  size_t nt = (size_t)l->ntop;
  if (p->n_data_filler > 1 && p->n_data_filler != nt)
    return ct_layer_fail(l, err, CT_EINVAL, "%zu data_filler entries for %zu tops; give 0, 1 or one per top",
                         p->n_data_filler, nt);
  bool legacy = p->n_num || p->n_channels || p->n_height || p->n_width;
  if (legacy && p->n_shape)
    return ct_layer_fail(l, err, CT_EINVAL, "give either shape or num/channels/height/width, not both");
  dummy_priv *d = calloc(1, sizeof *d);
  if (!d) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  l->priv = d;
  d->refill = calloc(nt + 1, sizeof(bool));
  if (!d->refill) return ct_layer_fail(l, err, CT_ENOMEM, "out of memory");
  for (size_t t = 0; t < nt; t++) {
    int naxes, shape[CT_MAX_AXES];
    if (legacy) {
      const size_t ns[4] = {p->n_num, p->n_channels, p->n_height, p->n_width};
      const uint32_t *vs[4] = {p->num, p->channels, p->height, p->width};
      for (int k = 0; k < 4; k++) {
        if (ns[k] != 1 && ns[k] != nt)
          return ct_layer_fail(l, err, CT_EINVAL, "num/channels/height/width need one value or one per top");
        shape[k] = (int)vs[k][ns[k] == 1 ? 0 : t];
      }
      naxes = 4;
    } else {
      if (p->n_shape != 1 && p->n_shape != nt)
        return ct_layer_fail(l, err, CT_EINVAL, "%zu shape entries for %zu tops; give one or one per top", p->n_shape,
                             nt);
      CT_TRY(shape_from_proto(l, p->shape[p->n_shape == 1 ? 0 : t], &naxes, shape, err));
    }
    CT_TRY(ct_tensor_reshape(l->top[t], naxes, shape, err));
    const Caffe__FillerParameter *f = dummy_filler(p, (int)t);
    d->refill[t] = f && f->type && strcmp(f->type, "constant") != 0;
    CT_TRY(ct_fill(f, l->top[t], &l->rng, l->name, err));
  }
  return CT_OK;
}

/* ct_fill writes the whole top on the host itself, whatever p is. */
static ct_status dummy_forward(ct_layer *l, const ct_part *p, ct_error *err) {
  (void)p;
  dummy_priv *d = l->priv;
  for (int t = 0; t < l->ntop; t++)
    if (d->refill[t]) CT_TRY(ct_fill(dummy_filler(l->lp->dummy_data_param, t), l->top[t], &l->rng, l->name, err));
  return CT_OK;
}

static void dummy_destroy(ct_layer *l) {
  dummy_priv *d = l->priv;
  if (d) free(d->refill);
  free(d);
  l->priv = NULL;
}

const ct_layer_ops ct_layer_DummyData = {
    .type = "DummyData", .min_bottom = 0, .max_bottom = 0, .min_top = 1, .max_top = -1,
    .splits = NULL, .gains = false, .kind = CT_WORK_MEMORY, .host = true,
    .setup = dummy_setup, .reshape = keep_shape, .forward = dummy_forward, .destroy = dummy_destroy,
};
