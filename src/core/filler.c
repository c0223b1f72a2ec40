#include "core/filler.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

static const Caffe__FillerParameter default_filler = CAFFE__FILLER_PARAMETER__INIT;

static float fan_scale_n(const Caffe__FillerParameter *fp, const ct_tensor *t) {
  size_t fan_in = t->naxes > 0 ? t->count / (size_t)t->shape[0] : t->count;
  size_t fan_out = t->naxes > 1 ? t->count / (size_t)t->shape[1] : t->count;
  switch (fp->variance_norm) {
    case CAFFE__FILLER_PARAMETER__VARIANCE_NORM__FAN_OUT: return (float)fan_out;
    case CAFFE__FILLER_PARAMETER__VARIANCE_NORM__AVERAGE: return (float)(fan_in + fan_out) / 2.0f;
    default: return (float)fan_in;
  }
}

ct_status ct_fill(const Caffe__FillerParameter *fp, ct_tensor *t, ct_rng *rng, const char *what,
                  ct_error *err) {
  if (!fp) fp = &default_filler;
  const char *type = fp->type ? fp->type : "constant";
  float *x;
  CT_TRY(ct_tensor_host(t, CT_DATA, CT_WRITE, &x, err));
  size_t n = t->count;
  if (!strcmp(type, "constant")) {
    for (size_t i = 0; i < n; i++) x[i] = fp->value;
  } else if (!strcmp(type, "uniform")) {
    if (!(fp->max >= fp->min))
      return ct_fail(err, CT_EINVAL, "%s: uniform filler needs min <= max (got min %g, max %g)", what,
                     fp->min, fp->max);
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(rng, fp->min, fp->max);
  } else if (!strcmp(type, "gaussian")) {
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_gaussian(rng, fp->mean, fp->std);
    if (fp->sparse >= 0) {
      /* Keep each weight with probability sparse / num_outputs (Caffe's sparse Gaussian). */
      if (t->naxes < 1 || t->shape[0] == 0)
        return ct_fail(err, CT_EINVAL, "%s: sparse gaussian filler needs a blob with outputs", what);
      double p = (double)fp->sparse / (double)t->shape[0];
      for (size_t i = 0; i < n; i++)
        if (ct_rng_uniform01(rng) >= p) x[i] = 0;
    }
  } else if (!strcmp(type, "positive_unitball")) {
    if (t->naxes < 1 || t->shape[0] == 0)
      return ct_fail(err, CT_EINVAL, "%s: positive_unitball filler needs a non-empty first axis", what);
    size_t num = (size_t)t->shape[0], dim = n / num;
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(rng, 0, 1);
    for (size_t r = 0; r < num; r++) {
      double s = 0;
      for (size_t j = 0; j < dim; j++) s += x[r * dim + j];
      for (size_t j = 0; j < dim; j++) x[r * dim + j] = (float)(x[r * dim + j] / s);
    }
  } else if (!strcmp(type, "xavier")) {
    float scale = sqrtf(3.0f / fan_scale_n(fp, t));
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_uniform(rng, -scale, scale);
  } else if (!strcmp(type, "msra")) {
    float std = sqrtf(2.0f / fan_scale_n(fp, t));
    for (size_t i = 0; i < n; i++) x[i] = ct_rng_gaussian(rng, 0, std);
  } else if (!strcmp(type, "bilinear")) {
    if (t->naxes != 4 || t->shape[2] != t->shape[3])
      return ct_fail(err, CT_EINVAL, "%s: bilinear filler needs a 4-D blob with square kernels", what);
    int w = t->shape[3], h = t->shape[2];
    float f = ceilf((float)w / 2.0f);
    float c = (2.0f * f - 1.0f - fmodf(f, 2.0f)) / (2.0f * f);
    for (size_t i = 0; i < n; i++) {
      float xx = (float)(i % (size_t)w), yy = (float)((i / (size_t)w) % (size_t)h);
      x[i] = (1 - fabsf(xx / f - c)) * (1 - fabsf(yy / f - c));
    }
  } else {
    return ct_fail(err, CT_EINVAL,
                   "%s: unknown filler type \"%s\" (expected constant, uniform, gaussian, "
                   "positive_unitball, xavier, msra or bilinear)",
                   what, type);
  }
  return CT_OK;
}
